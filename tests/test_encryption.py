"""Encryption at rest: SQLite files encrypted as a whole with SQLCipher. Unreadable without
the key (the sqlite3 module cannot open them), readable with it, and a wrong or missing key
is one clear error that changes nothing, in the store and in a real server process."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from backend.api import strife_pb2 as pb
from backend.common import encryption
from backend.common.db import CannotOpen, Database, SqliteEngine
from backend.gateway import store
from tests.stack import pay_request, start_stack

ROOT = Path(__file__).resolve().parents[1]


def new_key(path: Path) -> Path:
    encryption.write_new_key(path)
    return path


async def test_an_encrypted_store_is_unreadable_without_its_key_and_readable_with_it(tmp_path):
    key_file = new_key(tmp_path / "key")
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    path = tmp_path / "gateway.sqlite"
    db = Database(SqliteEngine(path, encryption.read_key(key_file)), store.MIGRATIONS)
    await db.write(lambda c: store.add_user(c, "alice", "a-password-hash", [("BankA", "A-1001")]))
    db.close()
    raw = path.read_bytes()
    assert b"alice" not in raw and b"SQLite format 3" not in raw  # the whole file, header included
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(path).execute("SELECT * FROM users").fetchall()
    with pytest.raises(CannotOpen, match="encrypted: give its --encryption-key-file"):
        Database(path, store.MIGRATIONS)
    with pytest.raises(CannotOpen, match="wrong encryption key"):
        Database(SqliteEngine(path, encryption.read_key(new_key(tmp_path / "other"))), store.MIGRATIONS)
    assert path.read_bytes()[:4096] == raw[:4096]  # neither wrong try wrote anything
    again = Database(SqliteEngine(path, encryption.read_key(key_file)), store.MIGRATIONS)
    try:
        assert await again.read(lambda c: store.links_of(c, "alice")) == [("BankA", "A-1001")]
    finally:
        again.close()


async def test_a_plain_database_is_not_opened_as_an_encrypted_one(tmp_path):
    path = tmp_path / "plain.sqlite"
    Database(path, store.MIGRATIONS).close()
    with pytest.raises(CannotOpen, match="not encrypted"):
        Database(SqliteEngine(path, encryption.read_key(new_key(tmp_path / "key"))), store.MIGRATIONS)


@pytest.mark.parametrize("content", ["", "abc", "z" * 64, "00" * 31])
def test_a_bad_key_file_is_refused_without_showing_it(tmp_path, content):
    (tmp_path / "key").write_text(content)
    with pytest.raises(CannotOpen, match="64 hex digits") as err:
        encryption.read_key(tmp_path / "key")
    assert not content or content not in str(err.value)
    with pytest.raises(CannotOpen, match="cannot read"):
        encryption.read_key(tmp_path / "missing")


async def test_a_stack_runs_on_encrypted_files_and_a_wrong_key_stops_a_bank_with_one_line(tmp_path, certs_dir):
    key_file = new_key(tmp_path / "stack.key")
    stack = await start_stack(tmp_path, certs_dir, encryption_key_file=key_file)
    try:
        gw, alice = await stack.login("alice")
        paid = await gw.Pay(
            pay_request("BankB", "B-2001", 700, from_bank="BankA", from_account="A-1001"), metadata=alice, timeout=10
        )
        assert paid.status == pb.SUCCEEDED
    finally:
        await stack.close()
    ledger = stack.cfg.data_dir / "bank-BankA.sqlite"
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(ledger).execute("SELECT * FROM accounts").fetchall()
    before = hashlib.sha256(ledger.read_bytes()).hexdigest()
    wrong = new_key(tmp_path / "wrong.key")
    bank = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.bank",
            "--name",
            "BankA",
            "--port",
            str(stack.cfg.bank_ports["BankA"]),
            "--data-dir",
            str(stack.cfg.data_dir),
            "--certs",
            str(certs_dir),
            "--encryption-key-file",
            str(wrong),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bank.returncode == 1
    [line] = bank.stderr.strip().splitlines()  # one line for a person, no traceback
    assert line.startswith(f"BankA: {ledger}: ")
    assert "wrong encryption key" in bank.stderr and "Traceback" not in bank.stderr
    assert wrong.read_text().strip() not in bank.stderr + bank.stdout
    assert hashlib.sha256(ledger.read_bytes()).hexdigest() == before


def test_strife_keygen_writes_a_private_key_once(tmp_path):
    key = tmp_path / "key"
    made = subprocess.run(
        [sys.executable, "-m", "app.cli", "keygen", str(key)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0 and str(key) in made.stdout
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    first = encryption.read_key(key)
    assert len(first) == 32
    again = subprocess.run(
        [sys.executable, "-m", "app.cli", "keygen", str(key)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and "never overwritten" in again.stderr
    assert encryption.read_key(key) == first  # the key a database may be encrypted under is kept
