"""An embedded PostgreSQL server for demos and tests: one data directory, one server.

The binaries come from the `pgserver` wheel (PostgreSQL 16; `pip install -e '.[postgres]'`),
but not its server handling: `pgserver.get_server` starts postgres through `pg_ctl`, which
daemonizes it, so a SIGKILLed Python process leaves the server running, and it listens on a
unix socket only. Here the postmaster is our own child process:

- It listens on 127.0.0.1 only (a port chosen once and kept in the data directory, so a
  restarted server has the same URI), with scram-sha-256 passwords: the loopback is shared by
  every user of the host, so `trust` would hand the ledger to anyone on it. No unix socket.
  TCP is also what a real deployment uses, so demos and the bench measure that path.
- fsync, synchronous_commit and full_page_writes are set `on` on the command line at every
  start (they outrank postgresql.conf), and initdb enables data checksums: an acknowledged
  payment survives a power loss, and a torn page is detected, not read.
- It dies with us (invariant: no orphans). It is started with PR_SET_PDEATHSIG = SIGINT, so
  when the thread that started it ends, however (our process SIGKILLed included), the kernel
  asks postgres for a fast shutdown, which ends every backend. That ties the server to the
  starting *thread*, so start() refuses to run outside the main thread.
- One process owns the server (calls start/stop/kill); others only need uri(), which reads
  the port and password from the data directory. A second start() on a running directory is
  refused with one line.

As root (containers, CI), postgres refuses to run as root: like pgserver, a system user
`pgserver` runs it, owns the cluster, and the data directory's parents are made traversable.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib.util
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

USER = "postgres"
NAME_RE = re.compile(r"[a-z0-9_]{1,63}")  # 63: PostgreSQL's identifier limit (NAMEDATALEN - 1)
DURABILITY = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
START_TIMEOUT_S = 60.0  # crash recovery after a kill is part of a start
STOP_TIMEOUT_S = 30.0
LOG_MAX_BYTES = 10 * 1024 * 1024  # postgres.log is rotated to postgres.log.1 past this, at start
SYSTEM_USER_AS_ROOT = "pgserver"
PR_SET_PDEATHSIG = 1


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot be started or used; the message is one line saying why."""


class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1 whose files live in data_dir (created if missing)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None

    # -- what other processes need -------------------------------------------------------

    def uri(self, database: str) -> str:
        """postgresql://postgres:<password>@127.0.0.1:<port>/<database>. It holds a secret: never log it."""
        _check_name(database)
        port = self._read("port")
        password = self._read("password")  # hex: nothing to percent-encode
        return f"postgresql://{USER}:{password}@127.0.0.1:{port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while this object's server runs, else None."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (initializing the data directory the first time); return once it accepts logins."""
        if self.pid is not None:
            return
        if sys.platform != "linux":
            raise EmbeddedPostgresError("the embedded PostgreSQL server needs Linux (it dies with its parent)")
        if threading.current_thread() is not threading.main_thread():
            raise EmbeddedPostgresError(
                "EmbeddedPostgres.start() must run in the main thread: the server dies with its thread"
            )
        bin_dir = _bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "start.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process initializes or starts at a time
            running = _running_postmaster(self.pgdata)
            if running is not None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL already runs on {self.pgdata} (pid {running}); stop that one first"
                )
            owner = _server_user(bin_dir, self.data_dir)
            if not (self.pgdata / "PG_VERSION").exists():
                self._initialize(bin_dir, owner)
            self._launch(bin_dir, owner)

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected, a checkpoint is written); SIGKILL if it hangs."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self._process = None

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster and its children at once. The data stays; start() recovers it."""
        process = self._process
        if process is None:
            return
        children = _children(process.pid)
        _signal(process.pid, signal.SIGKILL)
        process.wait()
        for child in children:  # they would exit on their own once they notice; do not leave it to chance
            _signal(child, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(_alive(child) for child in children) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._process = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create the database if it does not exist (safe to call again, from several processes); return its URI."""
        _check_name(name)
        psycopg, sql = _psycopg()
        with psycopg.connect(self.uri("postgres"), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                try:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except psycopg.errors.DuplicateDatabase:
                    pass  # another process created it meanwhile
                except psycopg.errors.UniqueViolation:
                    pass  # the same race, caught by pg_database's unique index instead
        return self.uri(name)

    # -- internals -----------------------------------------------------------------------

    def _initialize(self, bin_dir: Path, owner: tuple[int, int] | None) -> None:
        """initdb into pgdata.init, then rename: a half-made cluster never looks like a cluster."""
        staging = self.data_dir / "pgdata.init"
        if staging.exists():
            _remove_tree(staging)
        staging.mkdir(mode=0o700)
        self._write("port", str(_free_port()))
        self._write("password", secrets.token_hex(24))
        if owner is not None:
            os.chown(staging, *owner)
            os.chown(self.data_dir / "password", *owner)  # initdb reads it as that user
        command = [
            str(bin_dir / "initdb"),
            "--pgdata",
            str(staging),
            "--username",
            USER,
            "--pwfile",
            str(self.data_dir / "password"),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--data-checksums",
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.data_dir, **_as_user(owner))
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {_last_line(result.stderr)}")
        staging.rename(self.pgdata)
        _fsync_dir(self.data_dir)

    def _launch(self, bin_dir: Path, owner: tuple[int, int] | None) -> None:
        port = self._read("port")
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": port,
            "unix_socket_directories": "",
            **DURABILITY,
        }
        command = [str(bin_dir / "postgres"), "-D", str(self.pgdata)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        if self.log_path.exists() and self.log_path.stat().st_size > LOG_MAX_BYTES:
            self.log_path.replace(self.log_path.with_suffix(".log.1"))
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        parent_pid = os.getpid()
        libc = ctypes.CDLL(None, use_errno=True)

        def die_with_parent() -> None:  # runs in the child, after fork and after the uid change
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT) != 0 or os.getppid() != parent_pid:
                os._exit(1)  # cannot be tied to us, or we are already gone: never run unowned

        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.data_dir,
                start_new_session=True,  # a Ctrl-C in our terminal is ours to handle, not postgres's
                preexec_fn=die_with_parent,
                **_as_user(owner),
            )
        self._wait_ready(log_offset)

    def _wait_ready(self, log_offset: int) -> None:
        psycopg, _ = _psycopg()
        process = self._process
        assert process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                self._process = None
                raise EmbeddedPostgresError(
                    f"PostgreSQL did not start: {self._log_since(log_offset)} (log: {self.log_path})"
                )
            try:
                with psycopg.connect(self.uri("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                pass  # still starting or recovering
            if time.monotonic() > deadline:
                self.kill()
                raise EmbeddedPostgresError(
                    f"PostgreSQL did not accept logins within {START_TIMEOUT_S:.0f} s (log: {self.log_path})"
                )
            time.sleep(0.05)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                text = log.read(64 * 1024).decode("utf-8", "replace")
        except OSError:
            return "no log"
        lines = [line for line in text.splitlines() if "FATAL" in line or "ERROR" in line]
        return _last_line("\n".join(lines) or text)

    def _read(self, name: str) -> str:
        try:
            return (self.data_dir / name).read_text().strip()
        except FileNotFoundError:
            raise EmbeddedPostgresError(f"no embedded PostgreSQL in {self.data_dir}: start it first") from None

    def _write(self, name: str, value: str) -> None:
        path = self.data_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _check_name(name: str) -> None:
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise ValueError(f"bad database name {name!r}: use 1 to 63 of a-z, 0-9 and _")


def _bin_dir() -> Path:
    """pgserver's PostgreSQL binaries, found without running pgserver's own Python."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("pgserver is not installed: pip install -e '.[postgres]'")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedPostgresError(f"pgserver has no PostgreSQL binaries in {bin_dir}: reinstall it")
    return bin_dir


def _psycopg() -> tuple[Any, Any]:
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        raise EmbeddedPostgresError("psycopg is not installed: pip install -e '.[postgres]'") from None
    return psycopg, sql


def _server_user(bin_dir: Path, data_dir: Path) -> tuple[int, int] | None:
    """(uid, gid) to run postgres as when we are root, after making its files reachable; None otherwise."""
    if os.geteuid() != 0:
        return None
    import pwd
    import stat

    try:
        entry = pwd.getpwnam(SYSTEM_USER_AS_ROOT)
    except KeyError:
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER_AS_ROOT]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"cannot create user {SYSTEM_USER_AS_ROOT}: {_last_line(result.stderr)}"
            ) from None
        entry = pwd.getpwnam(SYSTEM_USER_AS_ROOT)
    for folder in (data_dir, *data_dir.parents):  # traversal only: o+x, nothing becomes readable
        _add_mode(folder, stat.S_IXOTH)
    install = bin_dir.parent  # the wheel's files: readable, and its programs runnable, by that user
    for folder in install.parents:
        _add_mode(folder, stat.S_IXOTH)
    for root, _, files in os.walk(install):
        _add_mode(Path(root), stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(root) / name
            _add_mode(path, stat.S_IROTH | (stat.S_IXOTH if path.stat().st_mode & stat.S_IXUSR else 0))
    return entry.pw_uid, entry.pw_gid


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def _as_user(owner: tuple[int, int] | None) -> dict[str, Any]:
    if owner is None:
        return {}
    return {"user": owner[0], "group": owner[1], "extra_groups": []}


def _running_postmaster(pgdata: Path) -> int | None:
    """The pid in pgdata/postmaster.pid if it is a live postgres on pgdata; a stale file is postgres's to clear."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if os.fsencode(pgdata) in argv and _alive(pid) else None


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat_line.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
