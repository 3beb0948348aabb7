"""The login limiter on its own, with a fake clock."""

import pytest

from backend.gateway import login_limiter
from backend.gateway.login_limiter import LoginLimiter

pytestmark = pytest.mark.usefixtures("both_engines")  # each test on SQLite and on PostgreSQL

PEER_LIMIT = login_limiter.MAX_FAILURES * 4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_lockouts_end_and_old_failures_are_forgotten():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(login_limiter.MAX_FAILURES):
        limiter.failed("bob", "ipv4:10.0.0.1:5000")
    assert limiter.blocked_for("bob", "ipv4:10.0.0.9:1") == pytest.approx(login_limiter.LOCKOUT_S)  # any peer
    assert limiter.blocked_for("alice", "ipv4:10.0.0.1:6000") <= 0  # that peer, another user
    clock.now += login_limiter.LOCKOUT_S + 0.1
    assert limiter.blocked_for("bob", "ipv4:10.0.0.1:5000") <= 0  # "for a while": it ends
    # failures spread wider than the window never add up to a lockout
    for _ in range(login_limiter.MAX_FAILURES * 3):
        limiter.failed("carol", "ipv4:10.0.0.2:1")
        clock.now += login_limiter.WINDOW_S / (login_limiter.MAX_FAILURES - 1) + 0.1
        assert limiter.blocked_for("carol", "ipv4:10.0.0.3:1") <= 0


def test_the_peer_lockout_ignores_the_source_port_and_ends():
    clock = Clock()
    limiter = LoginLimiter(clock)
    for i in range(PEER_LIMIT):
        limiter.failed(f"user{i}", f"ipv4:10.0.0.7:{40000 + i}")  # a new connection each time
    assert limiter.blocked_for("someone", "ipv4:10.0.0.7:50000") > 0
    assert limiter.blocked_for("someone", "ipv6:[::1]:50000") <= 0
    clock.now += login_limiter.LOCKOUT_S + 0.1
    assert limiter.blocked_for("someone", "ipv4:10.0.0.7:50000") <= 0


def test_login_limiter_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(login_limiter, "MAX_TRACKED", 100)
    limiter = LoginLimiter(Clock())
    for i in range(1000):
        limiter.failed(f"user{i}", f"ipv4:10.1.{i // 250}.{i % 250}:1")
    assert len(limiter._failures) <= 100
    assert len(limiter._locked_until) <= 100
