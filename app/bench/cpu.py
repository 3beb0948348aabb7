"""CPU used over a phase of a bench: each server process, the database server (PostgreSQL's
postmaster and its children), the bench process itself, and the rest of the host. Other work
on the machine skews every figure, so a bench shows it beside them."""

from __future__ import annotations

import resource
import time

from app.bench.stack import cpu_seconds, host_busy_cpu_seconds
from app.bench.storage import tree_cpu_seconds

DB_SERVER = "postgres"  # the database server's name in the CPU figures
OTHER = "other processes on the host"


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuWatch:
    """Started at the beginning of a phase; stop() at its end."""

    def __init__(self, pids: dict[str, int | None], db_pid: int | None) -> None:
        self.pids = pids
        self.db_pid = db_pid
        self.before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.db_before = tree_cpu_seconds(db_pid)
        self.own_before, self.host_before, self.wall_before = own_cpu_s(), host_busy_cpu_seconds(), time.monotonic()

    def stop(self, own_name: str, more_s: dict[str, float] | None = None) -> tuple[dict[str, float], dict[str, float]]:
        """(CPU seconds of each server process and of DB_SERVER, % of one core of each of
        those, of `more_s` (e.g. load drivers), of this process as `own_name` and of OTHER)."""
        wall = time.monotonic() - self.wall_before
        after, host = {name: cpu_seconds(pid) for name, pid in self.pids.items()}, host_busy_cpu_seconds()
        used_s = {
            name: now - before
            for name in self.pids
            if (now := after[name]) is not None and (before := self.before[name]) is not None
        }
        if (db_now := tree_cpu_seconds(self.db_pid)) is not None and self.db_before is not None:
            used_s[DB_SERVER] = db_now - self.db_before
        pct = {name: round(100 * s / wall, 1) for name, s in used_s.items()}
        if not self.pids:  # not our processes (a remote target): nothing to split
            return used_s, pct
        for name, s in (more_s or {}).items():
            pct[name] = round(100 * s / wall, 1)
        pct[own_name] = round(100 * (own_cpu_s() - self.own_before) / wall, 1)
        if host is not None and self.host_before is not None:
            # host and process counters tick in 10 ms jiffies, read at slightly different
            # moments: a difference under zero is that, not negative work
            pct[OTHER] = round(max(0.0, 100 * (host - self.host_before) / wall - sum(pct.values())), 1)
        return used_s, pct
