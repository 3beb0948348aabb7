"""Encryption at rest for a SQLite store: the whole file encrypted with SQLCipher (the
maintained sqlcipher3 binding), under a 256-bit key read from a key file.

The key file holds 64 hex digits (make one with `strife keygen FILE`; keep it out of
git and readable by its owner only). A wrong key, a missing key for an encrypted file
or a key for a plain one is one clear error (CannotOpen), never a damaged file: SQLCipher
checks each page's HMAC, so nothing is written through a wrong key. The key never
appears in a log line or a message.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from backend.common.db import BUSY_TIMEOUT_S, CannotOpen

KEY_HEX_DIGITS = 64


def read_key(path: Path) -> bytes:
    """The 32-byte key in `path`; CannotOpen (naming the file, never its content) otherwise."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise CannotOpen(f"cannot read the encryption key file {path}: {reason}") from None
    if len(text) != KEY_HEX_DIGITS or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise CannotOpen(
            f"the encryption key file {path} must hold {KEY_HEX_DIGITS} hex digits (a 256-bit key): "
            "make one with `strife keygen FILE`"
        )
    return bytes.fromhex(text)


def write_new_key(path: Path) -> None:
    """A fresh random key in a new file readable by its owner only (refuses to overwrite)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(KEY_HEX_DIGITS // 2) + "\n")


def connect(path: Path, key: bytes):
    """An open SQLCipher connection to `path` (made if new), keyed and checked."""
    try:
        from sqlcipher3 import dbapi2 as sqlcipher
    except ImportError:
        raise CannotOpen("encryption at rest needs sqlcipher3: pip install -e . (it is a dependency)") from None
    conn = sqlcipher.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    conn.execute("PRAGMA cipher_log_level = NONE")  # a wrong key is our one-line error, not its stderr lines
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher.DatabaseError:
        conn.close()
        raise CannotOpen(
            f"{path}: wrong encryption key, or the file is not encrypted (a plain database cannot be "
            "opened with --encryption-key-file)"
        ) from None
    conn.row_factory = sqlcipher.Row
    return conn
