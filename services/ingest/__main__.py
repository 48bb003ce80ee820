from shared.service import run

from .service import main

run("ingest", main)
