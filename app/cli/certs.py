"""`strife certs`: make the CA and every certificate the processes need."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.common import certs, fixtures


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--certs",
        "--dir",
        dest="certs",
        type=Path,
        default=Path("certs"),
        help="certificate directory (default certs/); --dir is the old name",
    )
    p.add_argument(
        "--fixtures",
        type=Path,
        default=fixtures.DEFAULT_BANKS,
        help="bank fixture file: one server certificate per bank",
    )


def main(args: argparse.Namespace) -> None:
    servers = ["gateway", *fixtures.bank_names(args.fixtures)]
    out = certs.ensure_certs(args.certs, servers)
    print(f"certificates in {out}/: CA, servers {', '.join(servers)}, roles {', '.join(certs.ROLES)}")
