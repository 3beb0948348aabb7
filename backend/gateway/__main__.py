"""`python -m backend.gateway`: the gateway server on its own (what supervisors start)."""

import argparse

from backend.gateway import main

parser = argparse.ArgumentParser(prog="python -m backend.gateway", description="Run the payment gateway.")
main.add_arguments(parser)
main.main(parser.parse_args())
