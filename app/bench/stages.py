"""Where a payment's time goes: the per-stage latency breakdown of `strife bench`.

Every server process of a bench stack serves its Prometheus metrics (backend/common/metrics.py).
The bench scrapes them just before and just after the paying phase; the difference of each
histogram is what that phase alone did. A stage is one of:
  the gateway's Pay handler, its 2PC phases (claim, prepare, decide, send);
  queueing apart from work: db_queue (waiting for the database writer) vs db_batch (the group
  commit), prepare_queue / decide_queue (waiting for a batched bank call to leave) vs
  prepare_call / decide_call (the call), loop_wake (a finished write waiting for the event loop);
  the banks' PrepareBatch / DecideBatch handlers and their own database stages;
  event-loop lag (how late a 50 ms timer fires) per process.
Means are exact (sum / count); p50 and p99 are read from the histogram buckets, so they are
bucket bounds, interpolated. The client's own latency minus the gateway handler's is the wire,
TLS and gRPC on both sides ("client <-> gateway").
"""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_S = 5.0
MAX_SCRAPE_BYTES = 4 * 1024 * 1024

# (metric, the label that names the series, the series to keep) -> the stage's name
STAGE = "strife_stage_seconds"
PHASE = "strife_2pc_phase_seconds"
RPC = "strife_rpc_duration_seconds"
LAG = "strife_loop_lag_seconds"

# The payment path in order: (process kind, metric, series, what it is)
PATH: list[tuple[str, str, str, str]] = [
    ("gateway", RPC, "Pay", "Pay handler (interceptors + validation + 2PC)"),
    ("gateway", PHASE, "claim", "key claim + PREPARING write"),
    ("gateway", PHASE, "prepare", "prepare round (all banks)"),
    ("gateway", STAGE, "prepare_queue", "  waiting for the batched call to leave"),
    ("gateway", STAGE, "prepare_call", "  batched PrepareBatch call"),
    ("banks", RPC, "PrepareBatch", "  bank: PrepareBatch handler"),
    ("gateway", PHASE, "decide", "decision write"),
    ("gateway", PHASE, "send", "decide round (banks that voted)"),
    ("gateway", STAGE, "decide_queue", "  waiting for the batched call to leave"),
    ("gateway", STAGE, "decide_call", "  the call (DecideBatch, or riding on a PrepareBatch)"),
    ("banks", RPC, "DecideBatch", "  bank: DecideBatch handler"),
    ("gateway", STAGE, "db_queue", "gateway db: waiting for the writer"),
    ("gateway", STAGE, "db_batch", "gateway db: group commit (per write)"),
    ("gateway", STAGE, "loop_wake", "gateway db: written, waiting for the loop"),
    ("banks", STAGE, "db_queue", "bank db: waiting for the writer"),
    ("banks", STAGE, "db_batch", "bank db: group commit (per write)"),
    ("banks", STAGE, "loop_wake", "bank db: written, waiting for the loop"),
    ("gateway", LAG, "", "gateway event-loop lag (50 ms timer)"),
    ("banks", LAG, "", "bank event-loop lag (50 ms timer)"),
]


@dataclass
class Series:
    """One histogram series: cumulative bucket counts by upper bound, sum and count."""

    buckets: dict[float, float]
    total_s: float = 0.0
    count: float = 0.0

    def minus(self, before: Series | None) -> Series:
        if before is None:
            return self
        return Series(
            {le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            self.total_s - before.total_s,
            self.count - before.count,
        )

    def plus(self, other: Series) -> Series:
        bounds = set(self.buckets) | set(other.buckets)
        return Series(
            {le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in bounds},
            self.total_s + other.total_s,
            self.count + other.count,
        )

    def quantile_s(self, q: float) -> float | None:
        """Linear interpolation inside the bucket that holds rank q*count (as Prometheus does)."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower_bound, lower_count = 0.0, 0.0
        for le in sorted(self.buckets):
            n = self.buckets[le]
            if n >= rank:
                if le == float("inf"):
                    return lower_bound
                share = (rank - lower_count) / (n - lower_count) if n > lower_count else 1.0
                return lower_bound + (le - lower_bound) * share
            lower_bound, lower_count = le, n
        return lower_bound


Snapshot = dict[tuple[str, str], Series]  # (metric, series) -> histogram


def parse(text: str) -> Snapshot:
    """The histograms a payment's stages need, from one process's /metrics text."""
    out: Snapshot = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (STAGE, PHASE, RPC, LAG):
            continue
        for sample in family.samples:
            labels = sample.labels
            if family.name == RPC:
                if labels.get("code") != "OK":
                    continue
                key = (family.name, labels.get("method", "").rsplit("/", 1)[-1])  # "/strife.v1.Gateway/Pay" -> "Pay"
            else:
                key = (family.name, labels.get("stage") or labels.get("phase") or "")
            series = out.setdefault(key, Series({}))
            if sample.name.endswith("_bucket"):
                series.buckets[float(labels["le"])] = series.buckets.get(float(labels["le"]), 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                series.total_s += sample.value
            elif sample.name.endswith("_count"):
                series.count += sample.value
    return out


def _fetch(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=SCRAPE_TIMEOUT_S) as answer:  # noqa: S310 - our own loopback endpoint
        return answer.read(MAX_SCRAPE_BYTES).decode()


async def scrape(addresses: dict[str, str]) -> dict[str, Snapshot]:
    """Every process's histograms now (process name -> snapshot); a process that does not
    answer is left out."""
    names = list(addresses)
    texts = await asyncio.gather(*(asyncio.to_thread(_fetch, addresses[n]) for n in names), return_exceptions=True)
    return {n: parse(t) for n, t in zip(names, texts, strict=True) if isinstance(t, str)}


def breakdown(before: dict[str, Snapshot], after: dict[str, Snapshot], payments: int, client: dict) -> list[dict]:
    """The stages of the paying phase, in the order of the payment path: per stage, how many
    times it ran per payment and its mean / p50 / p99 in ms. Banks are summed together.
    `client`: the drivers' latency summary (ms) for the first row."""
    kinds: dict[str, Snapshot] = {}
    for process, snapshot in after.items():
        kind = "gateway" if process.startswith("gateway") or process.startswith("gw-") else "banks"
        merged = kinds.setdefault(kind, {})
        for key, series in snapshot.items():
            delta = series.minus(before.get(process, {}).get(key))
            merged[key] = merged[key].plus(delta) if key in merged else delta
    rows: list[dict] = []
    pay = kinds.get("gateway", {}).get((RPC, "Pay"))
    if client.get("mean") is not None:
        rows.append(
            {
                "stage": "client: whole Pay call",
                "per_payment": 1.0,
                "mean_ms": client["mean"],
                "p50_ms": client.get("p50"),
                "p99_ms": client.get("p99"),
            }
        )
        if pay is not None and pay.count:
            rows.append(
                {
                    "stage": "client <-> gateway (wire, TLS, gRPC)",
                    "per_payment": 1.0,
                    "mean_ms": round(client["mean"] - 1000 * pay.total_s / pay.count, 3),
                    "p50_ms": None,
                    "p99_ms": None,
                }
            )
    for kind, metric, name, what in PATH:
        found = kinds.get(kind, {}).get((metric, name))
        if found is None or found.count <= 0:
            continue
        series = found
        p50, p99 = series.quantile_s(0.5), series.quantile_s(0.99)
        rows.append(
            {
                "stage": what,
                "per_payment": round(series.count / payments, 3) if payments and metric != LAG else None,
                "mean_ms": round(1000 * series.total_s / series.count, 3),
                "p50_ms": round(1000 * p50, 3) if p50 is not None else None,
                "p99_ms": round(1000 * p99, 3) if p99 is not None else None,
            }
        )
    return rows
