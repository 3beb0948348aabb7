"""`strife bench --scenario breaker|watchers` on real throwaway stacks: what they report is
what happened (they check behaviour, never speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "bench", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def test_the_breaker_scenario_refuses_fast_with_breakers_and_waits_the_timeout_without():
    doc = bench("--scenario", "breaker", "--bank-fault", "freeze", "--clients", "4", "--duration", "6")
    report = doc["breaker"]
    on, off = report["breakers"], report["no_breakers"]
    assert on["dead_bank_answers"].get("BREAKER_OPEN", 0) > 0 and "BREAKER_OPEN" not in off["dead_bank_answers"]
    assert set(off["dead_bank_answers"]) <= {"BANK_TIMEOUT", "DEADLINE_EXCEEDED"}
    assert report["breaker_open_p99_ms"] < report["no_breaker_p99_ms"]
    assert off["dead_bank_p50_ms"] >= 1000  # without breakers each waited for the 2 s 2PC timeout
    assert "--no-breakers" in off["flags"] and doc["command"].startswith("strife bench")


def test_the_watchers_scenario_keeps_its_idle_streams_open_while_payments_run():
    doc = bench("--scenario", "watchers", "--watchers", "8", "--clients", "2", "--duration", "2")
    report = doc["watchers"]
    assert doc["ok"] and report["idle_streams"] == 8 and report["still_open_at_end"] == 8
    assert report["without"]["payments_per_s"] > 0 and report["with"]["payments_per_s"] > 0
    assert report["without"]["errors"] == report["with"]["errors"] == 0


def test_the_failover_scenario_kills_the_busiest_replica_and_loses_or_doubles_nothing():
    doc = bench("--scenario", "failover", "--gateways", "2", "--lb", "pick_first", "--clients", "3", "--duration", "6")
    report = doc["failover"]
    assert doc["ok"] and report["lost"] == 0 and report["doubled_or_unacknowledged"] == 0
    assert report["acknowledged"] == report["committed_at_banks"] > 0
    assert report["killed"] in report["replica_share"] and report["errors"] == 0
    assert abs(sum(report["replica_share"].values()) - 1) < 0.01


def test_the_tier_scenario_spreads_payments_over_the_replicas():
    doc = bench("--scenario", "tier", "--gateways", "3", "--lb", "round_robin", "--clients", "6", "--duration", "3")
    shares = doc["tier"]["replica_share"]
    assert set(shares) == {"gw-1", "gw-2", "gw-3"} and all(share > 0.15 for share in shares.values())
    assert doc["ok"] and doc["tier"]["errors"] == 0
    # each figure beside the CPU it took, and the host's other load that skews it
    load = doc["tier"]["cpu_pct_of_core"]
    assert {"gw-1", "gw-2", "gw-3", "Bank01", "other processes on the host"} <= set(load)
    assert all(load[name] > 0 for name in ("gw-1", "gw-2", "gw-3", "Bank01"))
