"""`strife certs`: make the CA and every certificate the processes need."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.common import certs, fixtures


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, default=Path("certs"), help="certificate directory (default certs/)")
    p.add_argument("--fixtures", type=Path, default=fixtures.DEFAULT_BANKS,
                   help="bank fixture file: one server certificate per bank")


def main(args: argparse.Namespace) -> None:
    servers = ["gateway", *fixtures.bank_names(args.fixtures)]
    out = certs.ensure_certs(args.dir, servers)
    print(f"certificates in {out}/: CA, servers {', '.join(servers)}, roles {', '.join(certs.ROLES)}")
