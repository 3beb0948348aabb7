"""Figures of a `strife bench` run: statistics, versions, and the Rich tables."""

from __future__ import annotations

import math
import platform
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(values: list[float]) -> dict:
    ordered = sorted(values)
    out = {f"p{q}": percentile(ordered, q) for q in (50, 95, 99)}
    out["max"] = ordered[-1] if ordered else None
    out["mean"] = sum(ordered) / len(ordered) if ordered else None
    return {k: (round(v, 2) if v is not None else None) for k, v in out.items()}


def merge_phase(answers: list[dict]) -> dict:
    """One phase over all drivers: counts summed, latencies pooled, elapsed from first start to last end."""
    counts: dict[str, int] = {}
    codes: dict[str, int] = {}
    latencies: list[float] = []
    first_errors: list[str] = []
    for a in answers:
        for k, v in a["counts"].items():
            counts[k] = counts.get(k, 0) + v
        for k, v in a["codes"].items():
            codes[k] = codes.get(k, 0) + v
        latencies += a["latencies_ms"]
        first_errors += a["first_errors"]
    elapsed_s = max(a["ended"] for a in answers) - min(a["started"] for a in answers)
    return {
        "counts": counts,
        "codes": codes,
        "first_errors": first_errors[:5],
        "elapsed_s": round(elapsed_s, 3),
        "latency_ms": latency_summary(latencies),
        "driver_cpu_s": round(sum(a["cpu_s"] for a in answers), 3),
    }


def versions() -> dict:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": platform.python_version(),
        "grpcio": version("grpcio"),
        "protobuf": version("protobuf"),
        "psycopg": version("psycopg"),
        "sqlite": sqlite3.sqlite_version,
        "strife_commit": commit,
        "platform": platform.platform(),
        "implementation": sys.implementation.name,
    }


# ----------------------------------------------------------------- tables --
def _f(value, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}"


def _mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f} MiB"


def run_table(result: dict) -> Table:
    pay, echo, cfg = result["payments"], result["echo"], result["config"]
    lat = pay["latency_ms"]
    amount = f"{cfg['payments']:,} payments" if cfg["payments"] else f"{cfg['duration_s']:g} s"
    on = f" on {result['engine']}" if result.get("engine") else ""
    table = Table(
        title=f"strife bench — {cfg['clients']} clients, {cfg['banks'] or '?'} banks{on}, {amount}, "
        f"{cfg['drivers']} driver processes",
        show_header=True,
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("committed payments/s", _f(pay["committed_per_s"]))
    table.add_row(
        "committed / declined / aborted / errors",
        " / ".join(_f(pay["counts"].get(k, 0)) for k in ("committed", "declined", "aborted", "error")),
    )
    if pay["codes"]:
        table.add_row("refusal codes", ", ".join(f"{k} {v}" for k, v in sorted(pay["codes"].items())))
    table.add_row("latency p50 / p95 / p99 / max (ms)", " / ".join(_f(lat[k]) for k in ("p50", "p95", "p99", "max")))
    if echo:
        table.add_row(f"echo ceiling/s ({echo['method']})", _f(echo["per_s"]))
        table.add_row(
            "echo latency p50 / p99 (ms)", f"{_f(echo['latency_ms']['p50'])} / {_f(echo['latency_ms']['p99'])}"
        )
        table.add_row("payments/s ÷ echo/s", _f(result["ratio_payments_to_echo"], 3))
    money = result["money"]
    table.add_row(
        "money conserved",
        f"{'yes' if money['conserved'] else 'NO'} "
        f"({_f(money['before_cents'])} → {_f(money['after_cents'])} cents, held after {_f(money['held_after_cents'])})",
    )
    growth = result.get("rss_growth") or {}
    for name, kib in result["peak_rss_kib"].items():
        g = growth.get(name)
        trend = f"; RSS {_mib(g['after_first_tenth_kib'])} → {_mib(g['end_kib'])} over the payments" if g else ""
        table.add_row(f"peak RSS {name}", _mib(kib) + trend)
    cpu = result["cpu_pct_of_core"]
    if cpu:
        table.add_row("CPU during payments (% of one core)", ", ".join(f"{k} {_f(v, 0)}" for k, v in cpu.items()))
    per_payment = result.get("cpu_ms_per_committed_payment") or {}
    if per_payment:
        table.add_row("CPU per committed payment (ms)", ", ".join(f"{k} {_f(v, 3)}" for k, v in per_payment.items()))
    table.add_row(
        "stack log lines / errors", f"{_f(result['stack_log']['lines'])} / {_f(result['stack_log']['errors'])}"
    )
    return table


def stages_table(stages: list[dict]) -> Table:
    """Where a payment's time went (app/bench/stages.py), in the order of the payment path."""
    table = Table(title="where a payment's time goes (server metrics over the paying phase)")
    table.add_column("stage")
    for name in ("per payment", "mean ms", "p50 ms", "p99 ms"):
        table.add_column(name, justify="right")
    for row in stages:
        table.add_row(
            row["stage"],
            _f(row["per_payment"], 2),
            _f(row["mean_ms"], 3),
            _f(row["p50_ms"], 3),
            _f(row["p99_ms"], 3),
        )
    return table


def sweep_table(cells: list[dict]) -> Table:
    engines = sorted({str(c["engine"]) for c in cells if c.get("engine")})
    on = f" on {', '.join(engines)}" if engines else ""
    table = Table(title=f"strife bench --sweep{on} (each cell a fresh stack)")
    for name in (
        "banks",
        "clients",
        "payments/s",
        "echo/s",
        "ratio",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "declined",
        "aborted",
        "errors",
        "conserved",
        "gateway RSS",
        "gw CPU %",
        "db CPU %",
        "other CPU %",
    ):
        table.add_column(name, justify="right")
    for cell in cells:
        if "failed" in cell:
            table.add_row(
                str(cell["config"]["banks"]), str(cell["config"]["clients"]), f"failed: {cell['failed']}", *[""] * 14
            )
            continue
        pay, lat = cell["payments"], cell["payments"]["latency_ms"]
        table.add_row(
            str(cell["config"]["banks"]),
            str(cell["config"]["clients"]),
            _f(pay["committed_per_s"]),
            _f(cell["echo"]["per_s"]) if cell["echo"] else "—",
            _f(cell["ratio_payments_to_echo"], 3),
            *(_f(lat[k]) for k in ("p50", "p95", "p99", "max")),
            *(_f(pay["counts"].get(k, 0)) for k in ("declined", "aborted", "error")),
            "yes" if cell["money"]["conserved"] else "NO",
            _mib(cell["peak_rss_kib"].get("gateway")),
            _f(cell["cpu_pct_of_core"].get("gateway"), 0),
            _f(cell["cpu_pct_of_core"].get("postgres"), 0),
            _f(cell["cpu_pct_of_core"].get("other processes on the host"), 0),
        )
    return table


def scenario_table(doc: dict) -> Table:
    """The figures of --scenario history or recovery, one per row."""
    table = Table(title=f"strife bench --scenario {doc['scenario']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in doc.items():
        if key in ("scenario", "command", "versions", "host", "ok", "db_server"):
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = "; ".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {_f(v, 2)}" for k, v in value.items())
        table.add_row(key.replace("_", " "), _f(value, 2) if isinstance(value, (int, float)) else str(value))
    table.add_row("clean", "yes" if doc["ok"] else "NO")
    return table


def print_footer(console: Console, doc: dict) -> None:
    v = doc["versions"]
    console.print(f"command: {doc['command']}")
    console.print(
        f"python {v['python']}, grpcio {v['grpcio']}, protobuf {v['protobuf']}, sqlite {v['sqlite']}, "
        f"strife {v['strife_commit']}; {doc['host']['cpus']} CPUs, data on {doc['host']['data_fs']}"
        + (f"; engine {doc['engine']}" if doc.get("engine") else "")
        + (f", PostgreSQL {v['postgresql']} (embedded)" if v.get("postgresql") else "")
    )
    if "scenario" in doc:
        return
    console.print(
        "echo ceiling = grpc.health.v1.Health/Check (unary, no body) on the same mTLS channels, through the "
        "gateway's interceptors (logging, role; token checks skip it), same clients and drivers."
    )
