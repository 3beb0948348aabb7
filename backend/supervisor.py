"""Launch and supervise the gateway and bank processes of one stack.

Used by `strife up`, the control room and backend/testbed.py (bench, chaos, tests).
Each child runs `python -u -m backend.gateway|backend.bank ... --watch-stdin` in its own session, with
stdin and stdout piped: it exits when our end of its stdin closes, so children die
with the supervisor even when it is killed. Its stdout JSON lines reach
`on_record`; every state change reaches `on_change`.

States: starting -> serving; frozen (SIGSTOP) <-> serving; offline (we killed it);
stopped (we stopped it); crashed (it exited on its own). A crashed process is not
restarted by itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import orjson

from backend.common import fixtures
from backend.common.events import Event
from backend.common.states import ProcessState

MAX_LINE_BYTES = 64 * 1024
MAX_REASON_CHARS = 500  # of a start_failed message kept for the error a waiter sees
STOP_GRACE_S = 5.0


@dataclass
class StackConfig:
    data_dir: Path
    certs_dir: Path
    gateway_port: int
    bank_ports: dict[str, int]
    host: str = "127.0.0.1"
    twopc_timeout_s: float = 2.0
    orphan_after_s: float | None = None  # the gateway's --orphan-after (None: its default)
    in_doubt_after_s: float = 5.0
    bank_fixtures: Path = fixtures.DEFAULT_BANKS
    user_fixtures: Path = fixtures.DEFAULT_USERS
    token_ttl_s: float = 3600.0
    env: dict[str, str] = field(default_factory=dict)  # extra environment (fault points in tests)
    demo: bool = False  # the gateway obeys demo switches (slow motion): the control room's stacks
    # process name -> its --db (a postgresql:// URI); a process not named here keeps SQLite in data_dir.
    # Every replica of the gateway tier uses the one named "gateway".
    databases: dict[str, str] = field(default_factory=dict)
    # The gateway tier: more replicas than the one on gateway_port, on these ports. One replica
    # is the process "gateway"; several are "gw-1" (on gateway_port), "gw-2", ...
    more_gateway_ports: list[int] = field(default_factory=list)
    regions: dict[str, str] = field(default_factory=dict)  # replica name -> its --region (default "local")
    lease_s: float | None = None  # the replicas' --lease (None: their default)
    gateway_args: list[str] = field(default_factory=list)  # more flags for every replica (--no-breakers, ...)
    metrics: bool = False  # every process serves Prometheus metrics on a free port (its 'metrics' log event)
    encryption_key_file: Path | None = None  # every SQLite file encrypted under this key (SQLCipher)

    @property
    def gateway_address(self) -> str:
        return f"{self.host}:{self.gateway_port}"

    @property
    def gateway_replicas(self) -> dict[str, int]:
        """Replica (process) name -> port, in order."""
        ports = [self.gateway_port, *self.more_gateway_ports]
        if len(ports) == 1:
            return {"gateway": self.gateway_port}
        return {f"gw-{i + 1}": port for i, port in enumerate(ports)}

    @property
    def gateway_addresses(self) -> list[str]:
        return [f"{self.host}:{port}" for port in self.gateway_replicas.values()]

    def bank_address(self, name: str) -> str:
        return f"{self.host}:{self.bank_ports[name]}"


class ProcessKind(StrEnum):
    """What a supervised process is; it runs as `python -m backend.<kind>`."""

    GATEWAY = "gateway"
    BANK = "bank"


@dataclass
class ProcSpec:
    name: str
    kind: ProcessKind
    port: int
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


def stack_specs(cfg: StackConfig) -> list[ProcSpec]:
    common = ["--data-dir", str(cfg.data_dir), "--certs", str(cfg.certs_dir), "--host", cfg.host, "--watch-stdin"]
    if cfg.metrics:
        common += ["--metrics-port", "0"]
    if cfg.encryption_key_file is not None:
        common += ["--encryption-key-file", str(cfg.encryption_key_file)]
    gateway_args = [
        *common,
        "--twopc-timeout",
        str(cfg.twopc_timeout_s),
        *(["--orphan-after", str(cfg.orphan_after_s)] if cfg.orphan_after_s is not None else []),
        "--token-ttl",
        str(cfg.token_ttl_s),
        "--users",
        str(cfg.user_fixtures),
        *[a for name in cfg.bank_ports for a in ("--bank", f"{name}={cfg.bank_address(name)}")],
        *(["--demo"] if cfg.demo else []),
        *(["--db", db_argument(cfg.databases["gateway"])] if "gateway" in cfg.databases else []),
    ]
    gateways = [
        ProcSpec(
            name,
            ProcessKind.GATEWAY,
            port,
            [
                "--port",
                str(port),
                "--replica",
                name,
                "--region",
                cfg.regions.get(name, "local"),
                *(["--lease", str(cfg.lease_s)] if cfg.lease_s is not None else []),
                *gateway_args,
                *cfg.gateway_args,
            ],
            env={**cfg.env, **db_environment(cfg.databases.get("gateway"))},
        )
        for name, port in cfg.gateway_replicas.items()
    ]
    banks = [
        ProcSpec(
            name,
            ProcessKind.BANK,
            port,
            [
                "--name",
                name,
                "--port",
                str(port),
                *common,
                "--fixtures",
                str(cfg.bank_fixtures),
                "--gateway",
                ",".join(cfg.gateway_addresses),
                "--in-doubt-after",
                str(cfg.in_doubt_after_s),
                *(["--db", db_argument(cfg.databases[name])] if name in cfg.databases else []),
            ],
            env={**cfg.env, **db_environment(cfg.databases.get(name))},
        )
        for name, port in cfg.bank_ports.items()
    ]
    return [*gateways, *banks]


def db_argument(uri: str) -> str:
    """A --db URI without its password: a command line is readable by every user of the host
    (/proc/PID/cmdline), a process's environment only by its owner; db_environment carries it."""
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2 and ":" in netloc[0]:
        netloc[0] = netloc[0].split(":", 1)[0]
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    return urlunsplit(parts._replace(netloc="@".join(netloc), query=urlencode(query)))


def db_environment(uri: str | None) -> dict[str, str]:
    """PGPASSWORD for a --db URI that holds a password (libpq reads it when the URI has none)."""
    if uri is None:
        return {}
    parts = urlsplit(uri)
    password = dict(parse_qsl(parts.query)).get("password")
    if parts.password is not None:
        password = unquote(parts.password)
    return {} if password is None else {"PGPASSWORD": password}


@dataclass
class ProcState:
    spec: ProcSpec
    state: ProcessState = ProcessState.STOPPED
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    proc: asyncio.subprocess.Process | None = None
    reader: asyncio.Task | None = None
    serving: asyncio.Event = field(default_factory=asyncio.Event)
    exit_state: ProcessState = (
        ProcessState.CRASHED
    )  # what an exit means: OFFLINE if we killed it, STOPPED if we stopped it
    # Why the last start failed, as the process said it (its start_failed line:
    # "cannot listen on 127.0.0.1:50061: the port is in use or not allowed"); "" if it did not say.
    start_error: str = ""
    start_output: str = ""  # the last line it printed that is not a log line, while starting


class Supervisor:
    def __init__(
        self,
        specs: list[ProcSpec],
        on_record: Callable[[dict], None] | None = None,
        on_change: Callable[[ProcState], None] | None = None,
    ) -> None:
        self.procs = {s.name: ProcState(s) for s in specs}
        self.on_record = on_record or (lambda record: None)
        self.on_change = on_change or (lambda state: None)

    def _set(self, p: ProcState, state: ProcessState) -> None:
        p.state = state
        self.on_change(p)

    # -------------------------------------------------------------- start --
    async def start(self, name: str) -> None:
        p = self.procs[name]
        if p.proc is not None and p.proc.returncode is None:
            return
        if p.started_at is not None:
            p.restarts += 1
        env = {**os.environ, **p.spec.env, "PYTHONUNBUFFERED": "1"}
        p.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-u",
            "-m",
            f"backend.{p.spec.kind}",
            *p.spec.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env=env,
            limit=MAX_LINE_BYTES,
        )
        p.pid, p.started_at, p.exit_code, p.exit_state = p.proc.pid, time.time(), None, ProcessState.CRASHED
        p.start_error = p.start_output = ""
        p.serving = asyncio.Event()
        self._set(p, ProcessState.STARTING)
        p.reader = asyncio.create_task(self._read(p, p.proc))

    async def start_all(self, timeout_s: float = 30.0) -> None:
        """Start the banks, wait until they serve, then start the gateways and wait for them.

        A gateway checks its banks' health as soon as it serves. Started beside them, it could
        find a bank not listening yet: that bank's breaker would open, and its channel would back
        off before connecting again, so payments touching it were refused for a second or two
        after the stack reported itself up."""
        for kind in (ProcessKind.BANK, ProcessKind.GATEWAY):
            group = [name for name, p in self.procs.items() if p.spec.kind == kind]
            for name in group:
                await self.start(name)
            for name in group:
                await self.wait_serving(name, timeout_s)

    async def wait_serving(self, name: str, timeout_s: float = 30.0) -> None:
        p = self.procs[name]
        try:
            await asyncio.wait_for(p.serving.wait(), timeout_s)
        except TimeoutError:
            raise RuntimeError(f"{name} did not start serving within {timeout_s:.0f} s (state {p.state})") from None
        if p.state not in (ProcessState.SERVING, ProcessState.FROZEN):
            said = p.start_error or p.start_output
            reason = f": {said}" if said else ""
            raise RuntimeError(f"{name} exited while starting{reason} (exit code {p.exit_code})")

    async def _read(self, p: ProcState, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # a line over MAX_LINE_BYTES: skip what is buffered
                continue
            if not line:
                break
            record = _parse(line, p.spec.name)
            if p.proc is proc:
                if record.get("event") == Event.SERVING:
                    self._set(p, ProcessState.SERVING)
                    p.serving.set()
                elif record.get("event") == Event.START_FAILED:
                    p.start_error = str(record.get("msg") or "")[:MAX_REASON_CHARS]
                elif record.get("event") == Event.OUTPUT and p.state == ProcessState.STARTING:
                    # not our log line: a traceback's lines, say; its last line says what went wrong
                    p.start_output = str(record.get("msg") or "")[:MAX_REASON_CHARS]
            self.on_record(record)
        code = await proc.wait()
        if p.proc is not proc:
            return
        p.exit_code, p.pid = code, None
        self._set(p, p.exit_state)
        p.serving.set()  # wake waiters; they check the state

    # ------------------------------------------------------------- faults --
    def _signal(self, p: ProcState, sig: int) -> bool:
        if p.proc is None or p.proc.returncode is not None:
            return False
        return killpg(p.proc.pid, sig)

    async def kill(self, name: str) -> None:
        """SIGKILL: the process is offline until restarted."""
        p = self.procs[name]
        p.exit_state = ProcessState.OFFLINE
        if self._signal(p, signal.SIGKILL):
            await self._reaped(p)

    async def stop(self, name: str) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        p = self.procs[name]
        p.exit_state = ProcessState.STOPPED
        if p.state == ProcessState.FROZEN:
            self._signal(p, signal.SIGCONT)
        if self._signal(p, signal.SIGTERM):
            try:
                await asyncio.wait_for(asyncio.shield(self._reaped(p)), STOP_GRACE_S)
            except TimeoutError:
                self._signal(p, signal.SIGKILL)
                await self._reaped(p)

    async def freeze(self, name: str) -> None:
        p = self.procs[name]
        if p.state == ProcessState.SERVING and self._signal(p, signal.SIGSTOP):
            self._set(p, ProcessState.FROZEN)

    async def thaw(self, name: str) -> None:
        p = self.procs[name]
        if p.state == ProcessState.FROZEN and self._signal(p, signal.SIGCONT):
            self._set(p, ProcessState.SERVING)

    async def restart(self, name: str, wait: bool = True) -> None:
        p = self.procs[name]
        if p.proc is not None and p.proc.returncode is None:
            await self.stop(name)
        await self.start(name)
        if wait:
            await self.wait_serving(name)

    async def _reaped(self, p: ProcState) -> None:
        if p.reader is not None:
            await p.reader

    # ------------------------------------------------------------ closing --
    async def close(self) -> None:
        """Stop every child: SIGTERM, then SIGKILL for any still running."""
        await asyncio.gather(*(self.stop(n) for n in self.procs), return_exceptions=True)
        self.kill_all_now()

    def kill_all_now(self) -> None:
        """Synchronous last resort (atexit, error paths): SIGKILL every process group."""
        for p in self.procs.values():
            if p.proc is not None and p.proc.returncode is None:
                killpg(p.proc.pid, signal.SIGCONT)
                killpg(p.proc.pid, signal.SIGKILL)


def killpg(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a child's whole process group; False if it is gone already."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


async def close_child(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """Close a child's stdin (children here exit when it closes), then SIGKILL its
    process group if it is still running after grace_s."""
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        killpg(proc.pid)
        await proc.wait()


def _parse(line: bytes, process: str) -> dict:
    try:
        record = orjson.loads(line)
        if isinstance(record, dict) and "event" in record:
            record.setdefault("process", process)
            return record
    except orjson.JSONDecodeError:
        pass
    text = line.decode("utf-8", "replace").rstrip("\n")
    return {"time": time.time(), "process": process, "level": "error", "event": Event.OUTPUT, "msg": text[:2000]}
