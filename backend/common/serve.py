"""Run one gRPC server process: mTLS, health service, clean shutdown.

A server stops on SIGTERM/SIGINT and, when `watch_stdin` is set (the
supervisor sets it), when its stdin closes, so it dies with its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from backend.api import strife_pb2 as pb
from backend.common import encryption, jsonlog, loops, metrics, tls
from backend.common.db import CannotOpen, Database, SchemaTooNew, SqliteEngine
from backend.common.events import Event
from backend.common.interceptors import OncePerMethod
from backend.common.limits import MAX_MESSAGE_BYTES

SERVER_OPTIONS = (
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ("grpc.max_concurrent_streams", 256),
    ("grpc.max_connection_idle_ms", 10 * 60 * 1000),
    # A connection that has not finished its TLS handshake by then is closed (the
    # default is 120 s, long enough for a few thousand silent sockets to pile up).
    ("grpc.server_handshake_timeout_ms", 5_000),
    # A caller with a call open pings every CHANNEL_OPTIONS keepalive_time_ms (20 s) to see the
    # connection is alive: the gateway always has its stream to each bank open (Bank.Batches).
    # By default a server takes pings more often than every 5 minutes without data as abuse
    # and closes the connection (GOAWAY too_many_pings).
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # A caller that vanished without closing (its host gone, its process frozen) is pinged and,
    # silent, its connection closed: a stream it held (the gateway's to a bank) ends.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
)


# The cyclic garbage collector ran ~100 times a second under load (7% of the
# gateway's event-loop thread in py-spy): almost every object a call makes dies by
# reference counting, so collect the young generation less often, and move what
# start-up built (modules, caches, the servicer) out of the collector's sight.
GC_THRESHOLDS = (20_000, 20, 20)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a server's main coroutine to its end on uvloop: grpc.aio runs on it, and it cost
    3-10% less CPU per payment than asyncio's own loop in `strife bench` (the README has the
    A/B). Clients and the control room keep asyncio's loop (Textual's)."""
    uvloop.run(main)


def _tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def refuse_start(name: str, message: str, exit_code: int = 1) -> NoReturn:
    """Stop a server that cannot start: one log line for its supervisor, one line on
    stderr for a person, and an exit code; never a traceback."""
    jsonlog.emit(Event.START_FAILED, level="error", msg=message)
    jsonlog.flush()
    print(f"{name}: {message}", file=sys.stderr)
    raise SystemExit(exit_code)


DB_HELP = (
    "where this server keeps its state: 'sqlite' (a file in --data-dir, the default) or a PostgreSQL URI, "
    "postgresql://user[:password]@host[:port]/database (pip install -e '.[postgres]')"
)


def add_metrics_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics (text) on http://METRICS-HOST:PORT/metrics; 0 picks a free port, "
        "logged as the 'metrics' event (default: off)",
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="address the metrics endpoint listens on (default 127.0.0.1)"
    )


def add_db_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="sqlite", metavar="sqlite|postgresql://…", help=DB_HELP)
    p.add_argument(
        "--encryption-key-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="encrypt the SQLite file at rest with SQLCipher under the 256-bit key in FILE (64 hex digits; "
        "strife keygen FILE makes one). The same key is needed to open it again",
    )


def open_database(
    name: str,
    db: str,
    sqlite_path: Path,
    sqlite_migrations: Sequence[str],
    pg_migrations: Sequence[str],
    encryption_key_file: Path | None = None,
) -> Database:
    """The server's Database on the engine `db` names (see DB_HELP), a SQLite file encrypted
    under the key in `encryption_key_file` if given; a reason it cannot be opened stops the
    server with one line (never a traceback, never half started)."""
    try:
        if db in ("", "sqlite"):
            key = encryption.read_key(encryption_key_file) if encryption_key_file is not None else None
            return Database(SqliteEngine(sqlite_path, key), sqlite_migrations)
        if encryption_key_file is not None:
            refuse_start(
                name,
                "--encryption-key-file is for SQLite files; PostgreSQL encrypts at rest on its server's side "
                "(README: Encryption at rest)",
            )
        if not db.startswith(("postgresql:", "postgres:")):
            refuse_start(name, f"--db: expected 'sqlite' or a postgresql:// URI, got {db[:80]!r}")
        try:
            from backend.common.postgres import PostgresEngine
        except ImportError:
            refuse_start(name, "--db postgresql://…: PostgreSQL support is not installed: pip install -e '.[postgres]'")
        return Database(PostgresEngine(db), pg_migrations)
    except (SchemaTooNew, CannotOpen) as exc:
        refuse_start(name, str(exc))


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def run() -> None:
        try:
            while os.read(0, 4096):  # the raw fd: a buffered reader would block interpreter exit
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=run, name="stdin-watch", daemon=True).start()


async def run_server(
    *,
    name: str,
    host: str,
    port: int,
    certs_dir: Path,
    add_services: Callable[[grpc.aio.Server], None],
    services: Sequence[str],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    on_started: Callable[[], Awaitable[None]] | None = None,
    on_stopping: Callable[[], Awaitable[None]] | None = None,
    watch_stdin: bool = False,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Serve until told to stop. `services`: the names (in proto/strife.proto) of the services
    `add_services` adds, which reflection lists; with `metrics_port`, Prometheus metrics too."""
    server = grpc.aio.server(interceptors=[OncePerMethod(list(interceptors))], options=list(SERVER_OPTIONS))
    add_services(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # Server reflection: grpcurl (with a certificate of ours) lists and describes the services.
    names = tuple(pb.DESCRIPTOR.services_by_name[s].full_name for s in services)
    reflection.enable_server_reflection((*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{host}:{port}"
    try:
        bound = server.add_secure_port(address, tls.server_credentials(certs_dir, name))
    except RuntimeError:
        bound = 0
    if not bound:
        refuse_start(name, f"cannot listen on {address}: the port is in use or not allowed", exit_code=2)
    await server.start()
    if metrics_port is not None:
        try:
            jsonlog.emit(Event.METRICS, address=metrics.serve(metrics_port, metrics_host))
        except OSError as exc:
            await server.stop(grace=None)
            refuse_start(name, f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror}", exit_code=2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    if watch_stdin:
        _watch_stdin(loop, stop)
    lag_probe = asyncio.ensure_future(loops.measure_lag())
    try:
        if on_started is not None:
            await on_started()
        _tune_gc()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        jsonlog.emit(Event.SERVING, address=address)
        await stop.wait()
    finally:
        lag_probe.cancel()
        jsonlog.emit(Event.STOPPING, address=address)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace=1.0)
        if on_stopping is not None:
            await on_stopping()
