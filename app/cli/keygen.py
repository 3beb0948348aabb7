"""`strife keygen FILE`: a new key for encryption at rest (--encryption-key-file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.common import encryption


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, metavar="FILE", help="where to write the key (a new file; never overwritten)")


def main(args: argparse.Namespace) -> None:
    try:
        encryption.write_new_key(args.file)
    except FileExistsError:
        print(
            f"strife keygen: {args.file} exists: a key is never overwritten (its data would be lost)", file=sys.stderr
        )
        raise SystemExit(1) from None
    except OSError as exc:
        print(f"strife keygen: cannot write {args.file}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(1) from None
    print(
        f"a new 256-bit key in {args.file} (readable by you only; keep it out of git and back it up: "
        f"without it the data cannot be read). Use: --encryption-key-file {args.file}"
    )
