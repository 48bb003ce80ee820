from shared.service import run

from .main import main

run("vault", main)
