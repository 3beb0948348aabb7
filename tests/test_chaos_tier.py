"""`strife chaos --gateways 3`: the nemesis also kills replicas and freezes them past their
lease, clients balance over the tier, and every invariant still holds. Real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.chaos import nemesis

ROOT = Path(__file__).resolve().parents[1]


def test_the_plan_adds_replica_faults_only_for_a_tier():
    one = nemesis.plan(7, 60, ["Bank01", "Bank02", "Bank03"], ["c0", "c1"])
    assert {f.target for f in one if f.kind == "kill_gateway"} == {"gateway"}
    assert not [f for f in one if f.kind == "freeze_gateway"]
    tier = nemesis.plan(7, 120, ["Bank01", "Bank02", "Bank03"], ["c0", "c1"], gateways=("gw-1", "gw-2", "gw-3"))
    assert {f.target for f in tier if f.kind in ("kill_gateway", "freeze_gateway")} <= {"gw-1", "gw-2", "gw-3"}
    assert [f for f in tier if f.kind == "freeze_gateway"]
    assert nemesis.plan(7, 60, ["Bank01", "Bank02", "Bank03"], ["c0", "c1"]) == one  # a seed replays


@pytest.mark.timeout(150)
def test_a_campaign_over_three_replicas_passes_every_invariant():
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "chaos", "--gateways", "3", "--duration", "25", "--seed", "4"]
        + ["--clients", "3", "--json", "--keep"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    outcome = json.loads(done.stdout)
    try:
        assert outcome["ok"] and not outcome["problems"]
        assert all(v["ok"] and v["checked"] > 0 for v in outcome["invariants"]), outcome["invariants"]
        faults = outcome["faults"]
        assert faults["kill_gateway"] + faults["freeze_gateway"] >= 2, faults
        assert "--gateways 3" in outcome["command"]
    finally:
        shutil.rmtree(outcome["data_dir"], ignore_errors=True)
