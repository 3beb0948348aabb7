"""Prometheus metrics of a server process, served as text on --metrics-port (prometheus_client).

The instruments live in one registry of our own; the standard process collector adds
CPU and memory. Updating them is cheap (a lock and an add), so they are always on;
only serving them is a flag. The label values are bounded: methods and status codes
of our own services, payment outcomes, 2PC phases, bank names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RPC_SECONDS = Histogram(
    "strife_rpc_duration_seconds",
    "Time to answer a unary call, by method and status code",
    ["method", "code"],
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
RPC_IN_FLIGHT = Gauge("strife_rpc_in_flight", "Unary calls being served now", registry=REGISTRY)
PAYMENTS = Counter(
    "strife_payments_total",
    "Payments answered by the gateway, by outcome (succeeded, declined, not_made, replayed, refused)",
    ["outcome"],
    registry=REGISTRY,
)
TWOPC_PHASE_SECONDS = Histogram(
    "strife_2pc_phase_seconds",
    "Time a payment spent in each phase of two-phase commit (claim, prepare, decide, send)",
    ["phase"],
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "strife_breaker_state", "A bank's circuit breaker: 0 closed, 1 half-open, 2 open", ["bank"], registry=REGISTRY
)
BREAKER_TRANSITIONS = Counter(
    "strife_breaker_transitions_total",
    "Circuit breaker transitions, by bank and new state",
    ["bank", "state"],
    registry=REGISTRY,
)
DB_BATCH_WRITES = Histogram(
    "strife_db_batch_writes",
    "Writes per group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
DB_COMMIT_SECONDS = Histogram(
    "strife_db_commit_seconds",
    "Time of a group commit's COMMIT (the fsync, on SQLite; the round trip and the server's fsync, on PostgreSQL)",
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
_STAGE_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.0,
    2.0,
)
STAGE_SECONDS = Histogram(
    "strife_stage_seconds",
    "Where a payment's time goes, per piece of work: waiting in a queue (db_queue: for the database "
    "writer; prepare_queue, decide_queue: for a bank call to leave; loop_wake: for the event loop "
    "to run what a finished write woke) apart from the work (db_batch: a group commit, per write "
    "in it; prepare_call, decide_call: a batched call to a bank, per item in it)",
    ["stage"],
    buckets=_STAGE_BUCKETS_S,
    registry=REGISTRY,
)
LOOP_LAG_SECONDS = Histogram(
    "strife_loop_lag_seconds",
    "How late the event loop ran a timer (every 50 ms): the time ready work waits for the loop",
    buckets=_STAGE_BUCKETS_S,
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge("strife_outbox_depth", "Payments waiting in the client's offline outbox", registry=REGISTRY)


def serve(port: int, host: str = "127.0.0.1") -> str:
    """Serve /metrics on host:port (0: a free port) from a thread of its own; the address it
    listens on. Raises OSError if the port is taken."""
    server, _ = start_http_server(port, addr=host, registry=REGISTRY)
    return f"{host}:{server.server_port}"
