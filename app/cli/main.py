"""`strife`: the control room with no arguments; subcommands for each part."""

from __future__ import annotations

import argparse
import importlib
import sys

# name, module (with add_arguments(parser) and main(args)), help
SUBCOMMANDS = (
    ("certs", "app.cli.certs", "make the CA and the certificates every process needs (keeps existing ones)"),
    ("bank", "backend.bank.main", "run one bank server"),
    ("gateway", "backend.gateway.main", "run the payment gateway"),
    ("up", "app.cli.up", "run the gateway and the banks headless until Ctrl-C"),
    ("bench", "app.bench.main", "measure committed payments/s, latency and the mTLS echo ceiling on a throwaway stack"),
    (
        "chaos",
        "app.chaos.main",
        "fault campaign: kill/freeze/restart banks, gateway and clients, then check the invariants",
    ),
    ("client", "app.cli.client", "the command-line client: login, balance, pay, offline queue"),
    ("keygen", "app.cli.keygen", "write a new key for encrypting SQLite files at rest (--encryption-key-file)"),
)
# The control room's load balancing over the gateway tier (backend.client.balancer.POLICIES; listed
# here so `strife` does not import the client to build its parser).
LB_POLICIES = ("pick_first", "round_robin", "least_load")
DEFAULT_LB = "round_robin"  # calls spread over every replica: the control room shows each one's share


def add_control_room_arguments(p: argparse.ArgumentParser) -> None:
    """The control room's own flags (not shared with `strife up`)."""
    p.add_argument(
        "--lb",
        choices=LB_POLICIES,
        default=DEFAULT_LB,
        help=f"how the control room's client pane and traffic pick a gateway replica (default {DEFAULT_LB})",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand is listed; only the module of `command` (the one being run)
    is imported to add its flags, so `strife client ...` does not load the bench."""
    from app.cli import up, web

    parser = argparse.ArgumentParser(
        prog="strife", description="Strife payment gateway. With no command, opens the control room."
    )
    up.add_stack_arguments(parser)
    add_control_room_arguments(parser)
    web.add_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(run=module.main)
            _share_flags(parser, p)
    return parser


def _share_flags(top: argparse.ArgumentParser, command: argparse.ArgumentParser) -> None:
    """A flag the command shares with the top level (--data-dir, --db, --banks, ...) may come
    before the command or after it; given at neither, it takes the command's default (which
    may differ from the control room's). Neither parser fills it in: parse() does."""
    ours = {a.dest: a for a in top._actions if a.dest != "help"}
    shared = {}
    for action in command._actions:
        if action.dest in ours:
            shared[action.dest] = action.default
            action.default = ours[action.dest].default = argparse.SUPPRESS
    top.set_defaults(_shared_defaults=shared)


def parse(argv: list[str]) -> argparse.Namespace:
    args = build_parser(command_of(argv)).parse_args(argv)
    for dest, default in vars(args).pop("_shared_defaults", {}).items():
        if not hasattr(args, dest):
            setattr(args, dest, default)
    return args


class _NotYet(Exception):
    """The command line does not parse before its command's flags are known."""


class _CommandFinder(argparse.ArgumentParser):
    def error(self, message: str):  # stay quiet: the real parser says it
        raise _NotYet(message)


def command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line, after any of the top-level flags
    (`strife --data-dir D certs ...`); None for the control room."""
    from app.cli import up, web

    finder = _CommandFinder(add_help=False)
    up.add_stack_arguments(finder)
    add_control_room_arguments(finder)
    web.add_arguments(finder)
    sub = finder.add_subparsers(dest="command")
    for name, _, _ in SUBCOMMANDS:
        sub.add_parser(name, add_help=False)
    try:
        known, _ = finder.parse_known_args(argv)
    except _NotYet:
        return None
    return known.command


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_of(argv))
    args = parse(argv)
    from app.cli import web

    if args.web is not None:
        if args.command is not None:
            parser.error(f"--web serves the control room; it does not run `strife {args.command}`")
        web.main(args, argv)
        return
    if args.command is None:
        from app import control_room

        web.exit_with_server()  # a no-op unless this control room is a `strife --web` browser session
        control_room.main(args)
        return
    args.run(args)
