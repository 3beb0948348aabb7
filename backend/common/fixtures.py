"""Read the fixture files that seed banks and demo users on first start."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BANKS = ROOT / "fixtures" / "banks.json"
DEFAULT_USERS = ROOT / "fixtures" / "users.json"


def bank_names(path: Path = DEFAULT_BANKS) -> list[str]:
    return [b["name"] for b in json.loads(Path(path).read_text())["banks"]]


def bank_accounts(path: Path, name: str) -> list[dict]:
    for bank in json.loads(Path(path).read_text())["banks"]:
        if bank["name"] == name:
            return bank["accounts"]
    raise SystemExit(f"bank {name!r} is not in {path}; banks there: {', '.join(bank_names(path))}")


def users(path: Path = DEFAULT_USERS) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return json.loads(path.read_text())["users"]
