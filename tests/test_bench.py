"""`strife bench` works end to end. Behaviour only: nothing here depends on speed."""

from __future__ import annotations

import json
import subprocess
import sys

from app.bench.main import _split
from app.bench.report import latency_summary, percentile
from backend.common import fixtures
from backend.common.states import Decision
from backend.testbed import write_fixtures
from tests.stack import processes_naming


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) is None
    assert latency_summary([3.0, 1.0, 2.0])["max"] == 3.0


def test_payments_are_shared_among_drivers_without_loss():
    assert _split(50, [2, 2]) == [25, 25]
    assert sum(_split(7, [3, 2, 2])) == 7


def test_generated_fixtures_give_every_bank_an_account(tmp_path):
    banks_path, users_path, users = write_fixtures(tmp_path, banks=3, users=4, balance_cents=1000)
    assert fixtures.bank_names(banks_path) == ["Bank01", "Bank02", "Bank03"]
    assert {u.bank for u in users} == {"Bank01", "Bank02", "Bank03"}
    seeded = fixtures.users(users_path)
    assert [u["accounts"] for u in seeded][0] == [["Bank01", "Bank01-000000"]]


def test_smoke_run_reports_a_clean_run_as_json(tmp_path):
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "bench",
        "--payments",
        "50",
        "--clients",
        "4",
        "--banks",
        "3",
        "--echo-duration",
        "0.5",
        "--decline-percent",
        "10",
        "--json",
        "--work-dir",
        str(tmp_path / "bench"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)

    pay = doc["payments"]
    assert pay["attempted"] == 50
    assert pay["counts"].get("error", 0) == 0, pay["first_errors"]
    assert pay["counts"].get("aborted", 0) == 0
    assert pay["counts"].get("committed", 0) + pay["counts"].get("declined", 0) == 50
    assert pay["counts"].get("committed", 0) > 0
    for key in ("p50", "p95", "p99", "max"):
        assert pay["latency_ms"][key] > 0
    assert pay["committed_per_s"] > 0

    assert doc["echo"]["method"] == "grpc.health.v1.Health/Check"
    assert doc["echo"]["counts"].get("error", 0) == 0 and doc["echo"]["per_s"] > 0
    assert doc["ratio_payments_to_echo"] > 0

    assert doc["money"]["conserved"] and doc["money"]["before_cents"] == doc["money"]["after_cents"]
    assert doc["money"]["held_after_cents"] == 0
    assert set(doc["peak_rss_kib"]) == {"gateway", "Bank01", "Bank02", "Bank03"}
    assert all(kib > 0 for kib in doc["peak_rss_kib"].values())
    assert set(doc["rss_growth"]) in (
        {"gateway", "Bank01", "Bank02", "Bank03"},
        set(),
    )  # empty when too short to sample
    assert doc["command"].startswith("strife bench --payments 50")
    assert {"python", "grpcio", "protobuf", "sqlite"} <= set(doc["versions"]) and "postgresql" not in doc["versions"]
    assert doc["engine"] == "sqlite" and "postgres" not in doc["cpu_pct_of_core"]
    assert doc["config"] == {**doc["config"], "clients": 4, "banks": 3, "drivers": 2, "payments": 50}
    assert doc["ok"] is True

    # where the time went: every stage of the payment path, counted from the servers' own metrics
    stages = {row["stage"]: row for row in doc["stages"]}
    assert stages["key claim + PREPARING write"]["per_payment"] == 1.0  # one claim per payment, no more
    assert stages["prepare round (all banks)"]["per_payment"] == 1.0
    assert stages["decision write"]["per_payment"] == 1.0
    assert stages["  batched PrepareBatch call"]["per_payment"] == 2.0  # payer's bank and payee's bank
    assert stages["  bank: PrepareBatch handler"]["per_payment"] <= 2.0  # batched: at most one call per leg
    client, pay = stages["client: whole Pay call"], stages["Pay handler (interceptors + validation + 2PC)"]
    assert 0 < pay["mean_ms"] < client["mean_ms"]  # the handler is a part of what the client waited for
    parts = ("key claim + PREPARING write", "prepare round (all banks)", "decision write")
    assert sum(stages[p]["mean_ms"] for p in parts) < pay["mean_ms"]
    for row in doc["stages"]:
        assert row["mean_ms"] is not None and (row["p99_ms"] is None or row["p99_ms"] >= row["p50_ms"])


def test_postgres_run_names_the_engine_and_counts_the_database_servers_cpu(tmp_path):
    doc = _bench_json(
        tmp_path, "--db", "postgres", "--payments", "40", "--clients", "4", "--banks", "3", "--echo-duration", "0"
    )
    assert doc["engine"] == "postgres" and doc["versions"]["postgresql"].startswith("16")
    pay = doc["payments"]
    assert pay["counts"].get("committed", 0) == 40 and pay["counts"].get("error", 0) == 0, pay["first_errors"]
    assert doc["money"]["conserved"] and doc["money"]["held_after_cents"] == 0 and doc["ok"] is True
    assert {"gateway", "postgres"} <= set(doc["cpu_ms_per_committed_payment"])
    assert doc["cpu_ms_per_committed_payment"]["postgres"] > 0
    leftovers = processes_naming(str(tmp_path))
    assert not leftovers, leftovers  # the embedded server went with the bench


def test_db_postgres_is_refused_for_a_running_stack(tmp_path):
    command = [sys.executable, "-m", "app.cli", "bench", "--db", "postgres", "--gateway", "127.0.0.1:1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "keeps its own" in done.stderr, done.stderr


def _bench_json(tmp_path, *args: str) -> dict:
    command = [sys.executable, "-m", "app.cli", "bench", *args, "--json", "--work-dir", str(tmp_path / "bench")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_history_scenario_pages_a_seeded_log_through_the_gateway(tmp_path):
    doc = _bench_json(tmp_path, "--scenario", "history", "--history-rows", "2000", "--banks", "2")
    assert doc["scenario"] == "history" and doc["rows"] == 2000 and doc["ok"] is True
    assert doc["next_pages"]["pages"] > 0 and doc["deep_pages"]["pages"] > 0 and doc["first_page_ms"] > 0
    assert doc["plan_uses_indexes"] and any("payments_user" in step for step in doc["query_plan"])


def test_recovery_scenario_aborts_every_preparing_transaction(tmp_path):
    doc = _bench_json(
        tmp_path, "--scenario", "recovery", "--recovery-txns", "2000", "--recovery-preparing", "50", "--banks", "2"
    )
    assert doc["scenario"] == "recovery" and doc["ok"] is True
    assert doc["states_after"] == {Decision.ABORT: 50, Decision.COMMIT: 1950}
    assert doc["unacked_after"] == 0 and doc["held_after_cents"] == 0 and doc["start_to_serving_s"] > 0


def test_soak_scenario_reports_whether_gateway_memory_stayed_flat(tmp_path):
    doc = _bench_json(
        tmp_path, "--scenario", "soak", "--payments", "60", "--clients", "2", "--banks", "2", "--echo-duration", "0"
    )
    assert doc["ok"] is True and doc["payments"]["counts"].get("committed", 0) == 60
    assert doc["soak"]["payments"] == 60 and isinstance(doc["soak"]["rss_flat"], bool)
