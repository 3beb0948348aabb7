"""Password hashing with scrypt from the `cryptography` package."""

from __future__ import annotations

import base64
import functools
import os

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

N, R, P, LENGTH = 2**14, 8, 1, 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=LENGTH, n=N, r=R, p=P).derive(password.encode())
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        assert scheme == "scrypt"
        Scrypt(salt=base64.b64decode(salt), length=LENGTH, n=int(n), r=int(r), p=int(p)).verify(
            password.encode(), base64.b64decode(digest)
        )
        return True
    except (InvalidKey, ValueError, AssertionError):
        return False


@functools.cache
def dummy_hash() -> str:
    """Verified against when the user does not exist, so a missing user costs the same
    time. Made on first use, not at import (every process imports this module)."""
    return hash_password(_b64(os.urandom(12)))
