"""The bench's per-stage breakdown reads real Prometheus text (prometheus_client's own
exposition) and keeps only what the paying phase did."""

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from app.bench import stages

BUCKETS = (0.001, 0.002, 0.004, 0.008)


def _registry() -> tuple[CollectorRegistry, Histogram, Histogram]:
    registry = CollectorRegistry()
    stage = Histogram(stages.STAGE, "stages", ["stage"], buckets=BUCKETS, registry=registry)
    rpc = Histogram(stages.RPC, "rpcs", ["method", "code"], buckets=BUCKETS, registry=registry)
    return registry, stage, rpc


def test_the_difference_of_two_scrapes_is_what_happened_between_them():
    registry, stage, rpc = _registry()
    for _ in range(10):
        stage.labels("db_queue").observe(0.0015)  # before the phase: must not count
    before = {"gateway": stages.parse(generate_latest(registry).decode())}
    for _ in range(90):
        stage.labels("db_queue").observe(0.0015)
    for _ in range(10):
        stage.labels("db_queue").observe(0.006)
    for _ in range(100):
        rpc.labels("/strife.v1.Gateway/Pay", "OK").observe(0.003)
        rpc.labels("/strife.v1.Gateway/Pay", "UNAVAILABLE").observe(5.0)  # refusals are not the path
    after = {"gateway": stages.parse(generate_latest(registry).decode())}

    rows = {r["stage"]: r for r in stages.breakdown(before, after, 100, {"mean": 4.0, "p50": 3.9, "p99": 9.0})}
    queue = rows["gateway db: waiting for the writer"]
    assert queue["per_payment"] == 1.0
    assert queue["mean_ms"] == round(1000 * (90 * 0.0015 + 10 * 0.006) / 100, 3)
    assert 1.0 <= queue["p50_ms"] <= 2.0 and 4.0 <= queue["p99_ms"] <= 8.0  # within the bucket that holds them
    handler = rows["Pay handler (interceptors + validation + 2PC)"]
    assert handler["mean_ms"] == 3.0 and handler["per_payment"] == 1.0
    assert rows["client <-> gateway (wire, TLS, gRPC)"]["mean_ms"] == 1.0  # 4.0 at the client - 3.0 inside


def test_banks_are_summed_and_stages_that_did_not_run_are_left_out():
    registry, stage, _ = _registry()
    before = {"Bank01": stages.parse(generate_latest(registry).decode())}
    stage.labels("db_batch").observe(0.003)
    one = stages.parse(generate_latest(registry).decode())
    rows = stages.breakdown({**before, "Bank02": {}}, {"Bank01": one, "Bank02": one}, 2, {})
    assert [r["stage"] for r in rows] == ["bank db: group commit (per write)"]
    assert rows[0]["per_payment"] == 1.0  # one write at each of two banks, for two payments
