"""Where a throwaway stack keeps its state: `--db sqlite|postgres` of `strife bench` and `strife chaos`.

sqlite    each process's SQLite file in the stack's data directory (what the
          gateway and the banks do when given no --db).
postgres  an embedded PostgreSQL server (backend/common/embedded_pg.py) in the
          stack's own directory, one database per process, handed to each as
          its --db URI (StackConfig.databases). The server is ours: started in
          the main thread, stopped in a `finally`, and it dies with this process
          anyway (PR_SET_PDEATHSIG).

Whoever reads a stack's state (the chaos checker, the bench's scenarios) opens a
`source` with `connect()`/`reading()`: a SQLite file's Path or a PostgreSQL URI.
Both answer the same statements (`?` placeholders, rows by position and by column
name); only how the connection is opened differs.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.common.db import CannotOpen, Engine, SqliteEngine

ENGINES = ("sqlite", "postgres")
Source = Path | str  # a SQLite file, or a postgresql:// URI (it holds a password: never print it)


def add_argument(p: Any, what: str) -> None:
    p.add_argument(
        "--db",
        choices=ENGINES,
        default="sqlite",
        help=f"storage of {what}: SQLite files (default) or an embedded PostgreSQL server, one database per process",
    )


def database_name(process: str) -> str:
    """The PostgreSQL database of a stack's process: gateway -> strife_gateway, Bank01 -> strife_bank01."""
    return f"strife_{process.lower()}"


class StackStorage:
    """The storage of one throwaway stack whose data lives under `root`."""

    def __init__(self, engine: str, root: Path, data_dir: Path) -> None:
        assert engine in ENGINES, engine
        self.engine = engine
        self.data_dir = Path(data_dir)
        self.server: Any = None  # backend.common.embedded_pg.EmbeddedPostgres with --db postgres
        self.server_dir = Path(root) / "postgres"
        self._uris: dict[str, str] = {}
        self.server_version: str | None = None

    def start(self, processes: list[str]) -> dict[str, str]:
        """Start the server (postgres; main thread only) and make a database per process.
        Returns StackConfig.databases: {} on SQLite."""
        if self.engine == "sqlite":
            return {}
        from backend.common.embedded_pg import EmbeddedPostgres

        if self.server is None:
            self.server = EmbeddedPostgres(self.server_dir)
        self.server.start()
        self._uris = {name: self.server.create_database(database_name(name)) for name in processes}
        with reading(self.server.uri("postgres")) as conn:
            self.server_version = str(conn.execute("SHOW server_version").fetchone()[0])
        return dict(self._uris)

    def source(self, process: str) -> Source:
        """What to open to read `process`'s state (the gateway or a bank's name)."""
        if self.engine == "sqlite":
            return self.data_dir / ("gateway.sqlite" if process == "gateway" else f"bank-{process}.sqlite")
        return self._uris[process]

    @property
    def pid(self) -> int | None:
        """The database server's postmaster while it runs (None on SQLite)."""
        return self.server.pid if self.server is not None else None

    def kill(self) -> None:
        """SIGKILL the server and its children (a crash: start() recovers the same files)."""
        if self.server is not None:
            self.server.kill()

    def restart(self) -> None:
        """Start the server again after kill(), on the same files and port (main thread only)."""
        if self.server is not None:
            self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def engine_of(source: Source) -> Engine:
    """A backend.common.db Engine on `source` (to write as the stack's processes do)."""
    if isinstance(source, Path):
        return SqliteEngine(source)
    from backend.common.postgres import PostgresEngine

    return PostgresEngine(source)


def connect(source: Source, read_only: bool = True) -> Any:
    """A connection to `source` taking the stores' statements; close it when done.
    SQLite: the file opened read-only (or as the processes open it). PostgreSQL: an
    autocommit connection, in a READ ONLY transaction when read_only."""
    if isinstance(source, Path):
        if not read_only:
            return engine_of(source).connect()
        conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        return conn
    conn = engine_of(source).connect()
    if read_only:
        conn.execute("BEGIN READ ONLY")
    return conn


@contextmanager
def reading(source: Source) -> Iterator[Any]:
    conn = connect(source)
    try:
        yield conn
    finally:
        conn.close()


def read_errors() -> tuple[type[BaseException], ...]:
    """What a read of a stack's state may raise when the state is not there (or not reachable)."""
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError, CannotOpen)
    try:
        import psycopg
    except ImportError:
        return errors
    return (*errors, psycopg.Error)


# ---------------------------------------------------------------- CPU --
def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def tree_cpu_seconds(pid: int | None) -> float | None:
    """CPU a server and its children used so far: the process's user + system time, that of
    the children it has reaped (cutime + cstime: backends that came and went), and that of
    its live children. For PostgreSQL: the postmaster, every backend and its workers."""
    if pid is None:
        return None
    own = _stat_fields(pid)
    if own is None:
        return None
    ticks = sum(int(v) for v in own[11:15])  # utime stime cutime cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[1] == str(pid):
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")
