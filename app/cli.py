"""`strife`: the control room with no arguments; subcommands for each part."""

from __future__ import annotations

import argparse
import importlib
import sys

# name, module (with add_arguments(parser) and main(args)), help
SUBCOMMANDS = (
    ("certs", "app.certs_cmd", "make the CA and the certificates every process needs (keeps existing ones)"),
    ("bank", "backend.bank.main", "run one bank server"),
    ("gateway", "backend.gateway.main", "run the payment gateway"),
    ("up", "app.up", "run the gateway and the banks headless until Ctrl-C"),
    ("bench", "app.bench", "measure committed payments/s, latency and the mTLS echo ceiling on a throwaway stack"),
    ("chaos", "app.chaos", "fault campaign: kill/freeze/restart banks, gateway and clients, then check the invariants"),
    ("client", "app.client_cli", "the command-line client: login, balance, pay, offline queue"),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or with `only` just that subcommand: a bank or gateway process
    then does not import the bench, chaos and client modules at every start."""
    from app import up

    parser = argparse.ArgumentParser(
        prog="strife", description="Strife payment gateway. With no command, opens the control room."
    )
    up.add_stack_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in SUBCOMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(run=module.main)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    named = {name for name, _, _ in SUBCOMMANDS}
    parser = build_parser(only=argv[0] if argv and argv[0] in named else None)
    args = parser.parse_args(argv)
    if args.command is None:
        from app import control_room
        control_room.main(args)
        return
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
