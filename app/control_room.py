"""`strife` with no command: the control room over a real, supervised stack."""

from __future__ import annotations

import argparse
import atexit
import sys
from dataclasses import replace

from app.cli.stack_db import StackDatabase, StackDbError
from app.cli.up import stack_config
from app.live_source import LiveSource


def main(args: argparse.Namespace) -> None:
    from app.app import StrifeApp

    # a presenter's stack: slow motion works, and each process serves Prometheus metrics (its Logs line says where)
    cfg = replace(stack_config(args), demo=True, metrics=True)
    try:
        database = StackDatabase(args.db, cfg.data_dir)  # a bad value: one line, before any screen
    except StackDbError as exc:
        print(f"strife: {exc}", file=sys.stderr)
        sys.exit(1)
    source = LiveSource(cfg, database=database, lb=args.lb)
    # Whatever happens to the app, no child outlives it: the children also watch
    # their stdin, and this kills them when the interpreter exits.
    atexit.register(source.kill_now)
    app = StrifeApp(source)
    try:
        app.run()
    finally:
        source.kill_now()
    sys.exit(app.return_code or 0)
