from shared.service import run

from .service import main

run("transcode", main)
