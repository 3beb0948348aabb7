"""`strife`: the control room with no arguments; subcommands for each part."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _certs(args: argparse.Namespace) -> None:
    from backend.common import certs, fixtures

    servers = ["gateway", *fixtures.bank_names(args.fixtures)]
    out = certs.ensure_certs(args.dir, servers)
    print(f"certificates in {out}/: CA, servers {', '.join(servers)}, roles {', '.join(certs.ROLES)}")


def build_parser() -> argparse.ArgumentParser:
    from backend.common import fixtures

    parser = argparse.ArgumentParser(
        prog="strife", description="Strife payment gateway. With no command, opens the control room."
    )
    from app import up
    up.add_stack_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("certs", help="make the CA and the certificates every process needs (keeps existing ones)")
    p.add_argument("--dir", type=Path, default=Path("certs"), help="certificate directory (default certs/)")
    p.add_argument("--fixtures", type=Path, default=fixtures.DEFAULT_BANKS, help="bank fixture file: one server certificate per bank")
    p.set_defaults(run=_certs)

    from backend.bank import main as bank_main
    p = sub.add_parser("bank", help="run one bank server")
    bank_main.add_arguments(p)
    p.set_defaults(run=bank_main.main)

    from backend.gateway import main as gateway_main
    p = sub.add_parser("gateway", help="run the payment gateway")
    gateway_main.add_arguments(p)
    p.set_defaults(run=gateway_main.main)

    p = sub.add_parser("up", help="run the gateway and the banks headless until Ctrl-C")
    up.add_arguments(p)
    p.set_defaults(run=up.main)

    from app import bench
    p = sub.add_parser("bench", help="measure committed payments/s, latency and the mTLS echo ceiling on a throwaway stack")
    bench.add_arguments(p)
    p.set_defaults(run=bench.main)

    from app import chaos
    p = sub.add_parser("chaos", help="fault campaign: kill/freeze/restart banks, gateway and clients, then check the invariants")
    chaos.add_arguments(p)
    p.set_defaults(run=chaos.main)

    from app import client_cli
    p = sub.add_parser("client", help="the command-line client: login, balance, pay, offline queue")
    client_cli.add_arguments(p)
    p.set_defaults(run=client_cli.main)

    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from app import control_room
        control_room.main(args)
        return
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
