"""The embedded PostgreSQL server (backend/common/embedded_pg.py), real and on 127.0.0.1 only."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from backend.common.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError

psycopg = pytest.importorskip("psycopg")

OWNER_SCRIPT = """
import sys, time
from pathlib import Path
from backend.common.embedded_pg import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[1]))
server.start()
print(server.pid, flush=True)
time.sleep(120)
"""


@pytest.fixture
def pg_dir():
    # Under /tmp itself, not pytest's 0700 tmp_path: as root the server runs as another user,
    # which needs to traverse the parents (and pytest puts its own folder back to 0700).
    path = Path(tempfile.mkdtemp(prefix="strife-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server(pg_dir):
    pg = EmbeddedPostgres(pg_dir)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def alive(pid: int) -> bool:
    """Running or stopped; a zombie has exited (it only waits for its parent to read its status)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def postgres_of(pgdata: Path) -> str:
    return subprocess.run(["pgrep", "-af", str(pgdata)], capture_output=True, text=True).stdout.strip()


def wait_gone(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def test_uri_is_loopback_tcp_with_a_password(server):
    uri = server.uri("postgres")
    assert uri.startswith("postgresql://postgres:")
    assert "@127.0.0.1:" in uri
    with psycopg.connect(uri) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        assert conn.execute("SHOW unix_socket_directories").fetchone()[0] == ""
        assert conn.execute("SELECT inet_server_addr()::text").fetchone()[0] == "127.0.0.1/32"
    wrong = uri.replace("postgres:", "postgres:not-the-password", 1)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_durability_settings_are_on(server):
    with psycopg.connect(server.uri("postgres")) as conn:
        for name in ("fsync", "synchronous_commit", "full_page_writes", "data_checksums"):
            assert conn.execute(f"SHOW {name}").fetchone()[0] == "on", name


def test_a_committed_row_survives_a_sigkill_of_the_server(server):
    uris = [server.create_database("bank_a"), server.create_database("strife_gw")]
    assert server.create_database("bank_a") == uris[0]  # idempotent
    for uri in uris:
        with psycopg.connect(uri) as conn:
            conn.execute("CREATE TABLE journal (txn TEXT PRIMARY KEY, amount_cents BIGINT NOT NULL)")
            conn.execute("INSERT INTO journal VALUES (%s, %s)", (uri.rsplit("/", 1)[1], 1234))
        # leaving the block committed: that is the acknowledgement the kill must not undo

    old_pid = server.pid
    old_children = children_of(old_pid)
    assert old_children, "a running postmaster has its background processes"
    server.kill()
    assert server.pid is None
    assert wait_gone([old_pid, *old_children]) == []

    server.start()
    assert server.pid not in (None, old_pid)
    for uri in uris:
        with psycopg.connect(uri) as conn:
            rows = conn.execute("SELECT txn, amount_cents FROM journal").fetchall()
        assert rows == [(uri.rsplit("/", 1)[1], 1234)]


def test_stop_leaves_no_postgres_process(server):
    pid = server.pid
    family = [pid, *children_of(pid)]
    assert postgres_of(server.pgdata)
    server.stop()
    assert server.pid is None
    assert wait_gone(family) == []
    assert postgres_of(server.pgdata) == ""


def test_the_server_dies_with_its_sigkilled_owner(pg_dir):
    owner = subprocess.Popen([sys.executable, "-c", OWNER_SCRIPT, str(pg_dir)], stdout=subprocess.PIPE, text=True)
    family: list[int] = []
    try:
        assert owner.stdout is not None
        postmaster = int(owner.stdout.readline())
        family = [postmaster, *children_of(postmaster)]
        assert len(family) > 1
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        assert wait_gone(family) == [], "postgres outlived its owner"
        assert postgres_of(pg_dir / "pgdata") == ""
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for pid in family:  # if the test failed: leave no server behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    again = EmbeddedPostgres(pg_dir)  # the same files start again
    again.start()
    try:
        with psycopg.connect(again.uri("postgres")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        again.stop()


def test_one_owner_per_data_dir_others_read_the_uri(server):
    other = EmbeddedPostgres(server.data_dir)
    assert other.uri("bank_a") == server.uri("bank_a")
    with pytest.raises(EmbeddedPostgresError, match="already runs"):
        other.start()
    assert other.pid is None


@pytest.mark.parametrize(
    "name", ["", "Bank_A", "bank-a", "bank a", 'x"; DROP DATABASE postgres; --', "bänk", "a" * 64, "x\x00"]
)
def test_bad_database_names_are_refused(server, name):
    with pytest.raises(ValueError, match="bad database name"):
        server.create_database(name)
    with pytest.raises(ValueError, match="bad database name"):
        server.uri(name)


def test_without_pgserver_one_clear_line(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pgserver" else real(name, *a))
    with pytest.raises(EmbeddedPostgresError, match=r"pgserver is not installed: pip install -e '\.\[postgres\]'"):
        EmbeddedPostgres(tmp_path / "pg").start()


def test_uri_before_any_start_says_so(tmp_path):
    with pytest.raises(EmbeddedPostgresError, match="start it first"):
        EmbeddedPostgres(tmp_path / "nothing").uri("postgres")
