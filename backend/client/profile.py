"""The profile directory: the session (who is logged in, with which token) and
the outbox database. The directory is 0700, its files 0600; the token is
never printed, logged or shown by repr()."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend.client.errors import ClientError

DEFAULT_PROFILE = Path("~/.strife/profile")
SESSION_FILE = "session.json"
OUTBOX_FILE = "outbox.sqlite"
MAX_SESSION_BYTES = 64 * 1024
MAX_ACCOUNTS = 64


@dataclass(frozen=True)
class Session:
    username: str
    token: str = field(repr=False)
    expires_at: float  # seconds since the epoch
    accounts: tuple[tuple[str, str], ...] = ()  # (bank, account_id) the user holds, as last seen

    @property
    def expired(self) -> bool:
        return self.expires_at <= time.time()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    def with_accounts(self, accounts) -> Session:
        return Session(self.username, self.token, self.expires_at, tuple(tuple(a) for a in accounts)[:MAX_ACCOUNTS])


class Profile:
    """One user's (or several users', one at a time) client state on disk."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path if path is not None else DEFAULT_PROFILE).expanduser()
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)  # mkdir's mode is masked by umask; an existing dir may be wider

    @property
    def session_path(self) -> Path:
        return self.path / SESSION_FILE

    @property
    def outbox_path(self) -> Path:
        return self.path / OUTBOX_FILE

    def load_session(self) -> Session | None:
        try:
            raw = self.session_path.read_bytes()
        except FileNotFoundError:
            return None
        if len(raw) > MAX_SESSION_BYTES:
            raise ClientError("FAILED_PRECONDITION", f"{self.session_path} is too large to be a session: log in again")
        try:
            data = json.loads(raw)
            return Session(
                username=str(data["username"]),
                token=str(data["token"]),
                expires_at=float(data["expires_at"]),
                accounts=tuple((str(b), str(a)) for b, a in data.get("accounts", []))[:MAX_ACCOUNTS],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ClientError(
                "FAILED_PRECONDITION", f"{self.session_path} is damaged ({type(exc).__name__}): log in again"
            ) from None

    def save_session(self, session: Session) -> None:
        data = {
            "username": session.username,
            "token": session.token,
            "expires_at": session.expires_at,
            "accounts": [list(a) for a in session.accounts],
        }
        write_private(self.session_path, json.dumps(data).encode())

    def clear_session(self) -> None:
        try:
            self.session_path.unlink()
        except FileNotFoundError:
            pass


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, mode 0600, durable before it returns."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
