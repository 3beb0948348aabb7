"""`python -m backend.bank`: one bank server on its own (what supervisors start)."""

import argparse

from backend.bank import main

parser = argparse.ArgumentParser(prog="python -m backend.bank", description="Run one bank server.")
main.add_arguments(parser)
main.main(parser.parse_args())
