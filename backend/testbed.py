"""Throwaway stacks on loopback, for `strife bench`, `strife chaos` and the tests.

A throwaway stack lives in one directory: its certificates (unless shared), its
data, and, when asked for, generated fixtures (M banks, one account per generated
user, users the gateway seeds on first start so no registration round trips are
needed). Ports are free loopback ports picked at start.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.common import certs, fixtures
from backend.supervisor import StackConfig

MAX_BANKS = 64
MAX_USERS = 4096
MAX_FIRST_ERRORS = 5


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free on 127.0.0.1 now."""
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def stable_ports(count: int) -> list[int]:
    """Free ports below the kernel's ephemeral range, so a killed server's port is not
    taken by some outgoing connection before it restarts (falls back to free_ports)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return free_ports(count)
    rng = random.SystemRandom()
    ports: list[int] = []
    for _ in range(200):
        if len(ports) == count or low <= 11000:
            break
        port = rng.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports if len(ports) == count else free_ports(count)


def free_port_run(count: int) -> int:
    """A port free now with the count - 1 after it (`strife up --port P`: the banks take
    P+1, P+2, ...), below the kernel's ephemeral range as stable_ports: a random port's
    neighbours are ephemeral ports another connection may hold."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(10000, max(10001, low - count))
        held = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    return free_ports(1)[0]


@dataclass(frozen=True)
class GeneratedUser:
    username: str
    password: str
    bank: str
    account_id: str


def bank_names(count: int) -> list[str]:
    return [f"Bank{i + 1:02d}" for i in range(count)]


def write_fixtures(
    directory: Path, banks: int, users: int, balance_cents: int
) -> tuple[Path, Path, list[GeneratedUser]]:
    """banks.json and users.json for `banks` banks and `users` users, one account each, round-robin."""
    assert 2 <= banks <= MAX_BANKS and 1 <= users <= MAX_USERS, (banks, users)
    names = bank_names(banks)
    people = [
        GeneratedUser(f"bench{i:04d}", f"bench-pw-{i:04d}", names[i % banks], f"{names[i % banks]}-{i:06d}")
        for i in range(users)
    ]
    banks_doc = {
        "banks": [
            {
                "name": name,
                "accounts": [
                    {"id": u.account_id, "owner": u.username, "balance_cents": balance_cents}
                    for u in people
                    if u.bank == name
                ],
            }
            for name in names
        ]
    }
    users_doc = {
        "users": [
            {"username": u.username, "password": u.password, "accounts": [[u.bank, u.account_id]]} for u in people
        ]
    }
    directory.mkdir(parents=True, exist_ok=True)
    banks_path, users_path = directory / "banks.json", directory / "users.json"
    banks_path.write_text(json.dumps(banks_doc))
    users_path.write_text(json.dumps(users_doc))
    return banks_path, users_path, people


def stack_config(
    root: Path,
    *,
    certs_dir: Path | None = None,
    bank_fixtures: Path = fixtures.DEFAULT_BANKS,
    pick_ports: Callable[[int], list[int]] = free_ports,
    gateways: int = 1,
    **overrides,
) -> StackConfig:
    """A stack of `gateways` gateway replicas and every bank of `bank_fixtures`, its data
    under root/data, on ports from `pick_ports`; certificates in `certs_dir` (default
    root/certs), made if missing. `overrides` set other StackConfig fields."""
    names = fixtures.bank_names(bank_fixtures)
    certs_dir = certs.ensure_certs(certs_dir or root / "certs", ["gateway", *names])
    ports = pick_ports(gateways + len(names))
    return StackConfig(
        data_dir=root / "data",
        certs_dir=certs_dir,
        gateway_port=ports[0],
        more_gateway_ports=ports[1:gateways],
        bank_ports=dict(zip(names, ports[gateways:], strict=True)),
        bank_fixtures=bank_fixtures,
        **overrides,
    )


@dataclass
class StackLog:
    """What the stack's processes said: counted, and the first errors kept (bounded)."""

    lines: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)

    def __call__(self, record: dict) -> None:
        self.lines += 1
        if record.get("level") == "error":
            self.errors += 1
            if len(self.first_errors) < MAX_FIRST_ERRORS:
                self.first_errors.append(f"{record.get('process')}: {record.get('msg') or record.get('event')}"[:300])
