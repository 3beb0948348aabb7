"""`--db` for a whole stack (`strife up`, the control room): where the gateway and every bank keep their state.

- `sqlite` (the default): a file per process in the data directory.
- `postgres`: an embedded PostgreSQL server (backend.common.embedded_pg, `pip install -e '.[postgres]'`)
  whose files live in <data-dir>/postgres. The stack's owner (`strife up`, the control room) starts
  it before the processes and stops it after them; nobody else does.
- `postgresql://user[:password]@host[:port]/[prefix][?options]`: an existing server or cluster.

On PostgreSQL every process has a database of its own (their tables would collide in one):
`<prefix>_gateway` and `<prefix>_bank_<bank name, lowercased>`, prefix `strife` unless the URI's
path gives another (two stacks on one server: two prefixes). Missing databases are created when
the role may create databases; if it may not, one line names those to create.

Every reason the stack cannot start is a StackDbError with one line to show (never a password).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from backend.common.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError

SQLITE = "sqlite"
EMBEDDED = "postgres"
URI_SCHEMES = ("postgresql", "postgres")
DEFAULT_PREFIX = "strife"
PREFIX_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")  # leaves room for _bank_<name> within 63 characters
NAME_MAX_CHARS = 63  # PostgreSQL's identifier limit
CONNECT_TIMEOUT_S = 5
HEALTH_TIMEOUT_S = 0.5
SERVER_NAME = "postgres"  # the embedded server's row in the control room's Processes
SHOWN_CHARS = 80  # of a --db value echoed in an error
ERROR_CHARS = 300  # of a server's error message

HELP = (
    "where the gateway and the banks keep their state: 'sqlite' (files in --data-dir, the default), "
    "'postgres' (an embedded PostgreSQL server in <data-dir>/postgres, for demos; pip install -e '.[postgres]') "
    "or an existing server, postgresql://user[:password]@host[:port]/[prefix]: one database per process, "
    "<prefix>_gateway and <prefix>_bank_<name> (prefix 'strife'), created if the role may"
)


class StackDbError(RuntimeError):
    """The stack's databases cannot be used; the message is one line saying why."""


def add_argument(p: Any) -> None:
    p.add_argument("--db", default=SQLITE, metavar="sqlite|postgres|postgresql://…", help=HELP)


def database_names(processes: Iterable[str], prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """Process name -> its database: gateway -> strife_gateway, BankA -> strife_bank_banka."""
    names: dict[str, str] = {}
    for process in processes:
        suffix = "gateway" if process == "gateway" else "bank_" + re.sub(r"[^a-z0-9_]", "_", process.lower())
        name = f"{prefix}_{suffix}"
        if len(name) > NAME_MAX_CHARS:
            raise StackDbError(f"--db: database name {name} is longer than {NAME_MAX_CHARS} characters")
        if name in names.values():
            raise StackDbError(f"--db: two processes would share database {name}: rename a bank")
        names[process] = name
    return names


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """Text with URIs as they may be printed: no password; at most `limit` characters."""
    text = re.sub(r"//[^/@\s]*:[^/@\s]*@", lambda m: "//" + m.group(0)[2:].split(":", 1)[0] + "@", text)
    text = re.sub(r"password=[^&\s]*", "password=…", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return shown(lines[0], ERROR_CHARS) if lines else type(exc).__name__


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StackDbError("--db: PostgreSQL support is not installed: pip install -e '.[postgres]'") from None
    return psycopg


class StackDatabase:
    """What `--db` names for a stack, and the embedded server when it is ours (see the module docstring)."""

    def __init__(self, spec: str, data_dir: Path) -> None:
        self.spec = spec
        self.server: EmbeddedPostgres | None = None
        self.prefix = DEFAULT_PREFIX
        if spec == SQLITE:
            self.engine = SQLITE
        elif spec == EMBEDDED:
            self.engine = "postgres"
            self.server = EmbeddedPostgres(Path(data_dir) / "postgres")
        elif urlsplit(spec).scheme in URI_SCHEMES:
            self.engine = "postgres"
            parts = urlsplit(spec)
            if parts.fragment:
                raise StackDbError(f"--db: a URI with a #fragment: {shown(spec)!r}")
            path = parts.path.strip("/")
            if path and PREFIX_RE.fullmatch(path) is None:
                raise StackDbError(
                    f"--db: the URI's path is the prefix of the database names ({path[:SHOWN_CHARS]!r}): "
                    "use 1 to 40 of a-z, 0-9 and _, starting with a letter"
                )
            self.prefix = path or DEFAULT_PREFIX
        else:
            raise StackDbError(
                f"--db: expected sqlite, postgres or a postgresql://user@host[:port]/[prefix] URI, got {shown(spec)!r}"
            )

    @property
    def owned(self) -> bool:
        """Is the database server ours to run (embedded)?"""
        return self.server is not None

    # -- opening ---------------------------------------------------------------------------

    def open(self, processes: Iterable[str]) -> dict[str, str]:
        """Start the embedded server (in the main thread: it dies with the thread that starts it)
        or check the external one, make every process's database, and return process -> --db URI
        (empty for SQLite). Raises StackDbError."""
        if self.engine == SQLITE:
            return {}
        names = database_names(processes, self.prefix)
        if self.server is not None:
            self.start_server()
            try:
                return {process: self.server.create_database(name) for process, name in names.items()}
            except EmbeddedPostgresError as exc:
                raise StackDbError(f"--db postgres: {exc}") from None
            except _psycopg().Error as exc:
                raise StackDbError(f"--db postgres: {_first_line(exc)}") from None
        self._ensure_external(list(names.values()))
        return {process: self._at(name) for process, name in names.items()}

    def _at(self, database: str) -> str:
        return urlunsplit(urlsplit(self.spec)._replace(path=f"/{database}"))

    def _ensure_external(self, names: list[str]) -> None:
        psycopg = _psycopg()
        from psycopg import sql

        maintenance = self._at("postgres")
        try:
            conn = psycopg.connect(maintenance, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            # The role may be barred from the `postgres` database but own its databases already.
            try:
                for name in names:
                    psycopg.connect(self._at(name), connect_timeout=CONNECT_TIMEOUT_S).close()
            except psycopg.Error:
                raise StackDbError(
                    f"--db: cannot connect to {shown(self._at(''), ERROR_CHARS)}: {_first_line(exc)}"
                ) from None
            return
        with conn:
            try:
                found = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,)).fetchall()
                refused = []
                for name in [n for n in names if n not in {row[0] for row in found}]:
                    try:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    except psycopg.errors.DuplicateDatabase:
                        pass  # another process made it meanwhile
                    except psycopg.errors.InsufficientPrivilege:
                        refused.append(name)
            except psycopg.Error as exc:
                raise StackDbError(f"--db: {shown(maintenance, ERROR_CHARS)}: {_first_line(exc)}") from None
        if refused:
            user = urlsplit(self.spec).username or "this role"
            raise StackDbError(
                f"--db: {user} may not create databases: create {', '.join(refused)} "
                f"(CREATE DATABASE name OWNER {user}) or grant {user} CREATEDB"
            )

    def describe(self) -> str:
        """Where the state lives on PostgreSQL, for a person (never a password); "" on SQLite."""
        if self.engine == SQLITE:
            return ""
        where = (
            "embedded PostgreSQL" if self.server is not None else f"PostgreSQL at {shown(self._at(''), ERROR_CHARS)}"
        )
        return f"{where} (databases {self.prefix}_*)"

    # -- the embedded server (owned) --------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server is not None else None

    @property
    def port(self) -> int:
        """The embedded server's port (0 before it was first started)."""
        if self.server is None:
            return 0
        try:
            return int((self.server.data_dir / "port").read_text().strip())
        except (OSError, ValueError):
            return 0

    def start_server(self) -> None:
        """Start the embedded server (blocks until it accepts logins; main thread only)."""
        assert self.server is not None
        try:
            self.server.start()
        except EmbeddedPostgresError as exc:
            raise StackDbError(f"--db postgres: {exc}") from None

    def kill_server(self) -> None:
        """Crash it: SIGKILL (it recovers from its files at the next start)."""
        if self.server is not None:
            self.server.kill()  # SIGKILL ends a frozen (stopped) server too

    def freeze_server(self) -> bool:
        """SIGSTOP the server and every backend (its process group): up, answering nothing."""
        return self._signal_group(signal.SIGSTOP)

    def thaw_server(self) -> bool:
        return self._signal_group(signal.SIGCONT)

    def stop_server(self) -> None:
        """Fast shutdown (also of a frozen server); no process is left."""
        if self.server is not None:
            self._signal_group(signal.SIGCONT)
            self.server.stop()

    def _signal_group(self, signum: int) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            os.killpg(pid, signum)  # the postmaster leads its own session; its backends are in its group
        except ProcessLookupError:
            return False
        return True

    async def healthy(self) -> bool:
        """Does the embedded server take a login now (within HEALTH_TIMEOUT_S)?"""
        if self.server is None or self.pid is None:
            return False
        psycopg = _psycopg()
        try:
            uri = self.server.uri("postgres")
            conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(uri, connect_timeout=2), HEALTH_TIMEOUT_S)
        except (TimeoutError, psycopg.Error, EmbeddedPostgresError):
            return False
        await conn.close()
        return True
