"""Charts of a `strife bench --sweep`: throughput and p99 latency against clients, a line per bank count.

Everything here reads the bench's JSON document (the `doc` that `--json` prints), never a live run,
so the charts are tested from fixed figures. matplotlib draws the SVG file and plotext the terminal
view; both are imported only when a chart is asked for, so a plain `strife bench` does not load them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

SVG_SUFFIX = ".svg"
MAX_LINES = 16  # bank counts drawn; a sweep has a handful
TERMINAL_MAX_WIDTH = 160
TERMINAL_HEIGHT = 22
# (key, chart title, axis title): the two measures, in the order they are drawn
MEASURES = (
    ("throughput", "committed payments per second", "throughput (payments/s)"),
    ("p99", "99th-percentile payment latency", "p99 latency (ms)"),
)
X_TITLE = "concurrent clients"
# plotext lines, so that they stay apart without colour too (output piped to a file)
TERMINAL_MARKERS = ("braille", "dot", "+", "x", "*", "o")


@dataclass(frozen=True)
class Point:
    clients: int
    throughput: float  # committed payments/s
    p99: float | None  # ms; None when no payment finished


def series(doc: dict) -> dict[int, list[Point]]:
    """The sweep's cells as one line per bank count, ascending clients; failed cells are gaps."""
    lines: dict[int, list[Point]] = {}
    for cell in doc["sweep"]["cells"]:
        pay = cell.get("payments")
        if "failed" in cell or not pay or pay.get("committed_per_s") is None:
            continue
        cfg = cell["config"]
        lines.setdefault(cfg["banks"], []).append(
            Point(cfg["clients"], float(pay["committed_per_s"]), pay["latency_ms"].get("p99"))
        )
    assert len(lines) <= MAX_LINES, f"{len(lines)} bank counts: too many lines for one chart"
    return {banks: sorted(points, key=lambda p: p.clients) for banks, points in sorted(lines.items())}


def _values(points: list[Point], key: str) -> tuple[list[int], list[float]]:
    pairs = [(p.clients, getattr(p, key)) for p in points if getattr(p, key) is not None]
    return [c for c, _ in pairs], [v for _, v in pairs]


def _clients(doc: dict) -> list[int]:
    return sorted({cell["config"]["clients"] for cell in doc["sweep"]["cells"]})


def _log_x(ticks: list[int]) -> bool:
    """Clients 1, 16, 64, 128 are far apart: a log scale gives each its room."""
    return bool(ticks) and max(ticks) / min(ticks) >= 4


def _x_title(log: bool) -> str:
    return f"{X_TITLE} (log scale)" if log else X_TITLE


def title(doc: dict) -> str:
    """What was measured: per-cell length, bank counts and the machine."""
    sweep = doc["sweep"]
    per_cell = f"{sweep['payments']:,} payments" if sweep.get("payments") else f"{sweep['duration_s']:g} s"
    banks = [str(b) for b in sorted({cell["config"]["banks"] for cell in sweep["cells"]})]
    bank_list = banks[0] if len(banks) == 1 else f"{', '.join(banks[:-1])} and {banks[-1]}"
    return (
        f"strife bench --sweep: durable 2PC payments, {per_cell} per cell (a fresh stack each), "
        f"{bank_list} banks, {doc['host']['cpus']} CPU cores"
    )


def provenance(doc: dict) -> str:
    v = doc["versions"]
    return f"{doc['command']}  ·  strife {v.get('strife_commit')}, python {v.get('python')}, grpcio {v.get('grpcio')}"


def check_path(path: Path) -> str | None:
    """Why the chart could not be written to `path` (checked before a long sweep), or None."""
    if path.suffix.lower() != SVG_SUFFIX:
        return f"--plot writes SVG: the file name must end in {SVG_SUFFIX}, got {str(path)!r}"
    parent = path.parent  # "." for a bare file name
    if not parent.is_dir():
        return f"--plot {path}: directory {str(parent)!r} does not exist"
    if path.is_dir():
        return f"--plot {path}: is a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--plot {path}: directory {str(parent)!r} is not writable"
    return None


# ------------------------------------------------------------------- SVG --
def write_svg(doc: dict, path: Path) -> None:
    """Both charts side by side in one SVG file; the same document always gives the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    lines = series(doc)
    ticks = _clients(doc)
    with plt.rc_context(
        {
            "svg.fonttype": "none",  # text stays text: readable, searchable, and smaller
            "svg.hashsalt": "strife-bench",  # fixed element ids: deterministic output
            "font.size": 11,
            "axes.titlesize": 13,
            "axes.labelsize": 12,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.constrained_layout.h_pad": 0.15,  # inches between the titles, charts and command line
        }
    ):
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.6), layout="constrained")
        try:
            for ax, (key, chart_title, axis_title) in zip(axes, MEASURES, strict=True):
                for banks, points in lines.items():
                    xs, ys = _values(points, key)
                    ax.plot(
                        xs,
                        ys,
                        marker="o",
                        linewidth=2,
                        markersize=6,
                        label=f"{banks} banks",
                        gid=f"{key}-banks-{banks}",
                    )
                ax.set_title(chart_title)
                ax.set_xlabel(_x_title(_log_x(ticks)))
                ax.set_ylabel(axis_title)
                if _log_x(ticks):
                    ax.set_xscale("log", base=2)
                ax.xaxis.set_major_locator(FixedLocator(ticks))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.set_ylim(bottom=0)
                ax.grid(True, which="major", alpha=0.35)
                if lines:
                    ax.legend(title="stack", loc="best", frameon=True)
                else:
                    ax.text(0.5, 0.5, "no cell finished", transform=ax.transAxes, ha="center", va="center")
            fig.suptitle(title(doc), fontsize=12)
            fig.supxlabel(provenance(doc), fontsize=8, color="0.4")  # under both charts; the layout keeps its room
            fig.savefig(path, format="svg", metadata={"Date": None})
        finally:
            plt.close(fig)


# -------------------------------------------------------------- terminal --
def terminal_chart(doc: dict, width: int, height: int = TERMINAL_HEIGHT) -> str:
    """Both charts side by side as terminal text with ANSI colours (plotext.uncolorize strips them)."""
    import plotext as plt

    lines = series(doc)
    ticks = _clients(doc)
    _reset(plt)
    plt.limitsize(False, False)  # the caller gives the width: do not guess it from a terminal that may not be there
    plt.plotsize(min(width, TERMINAL_MAX_WIDTH), height)
    plt.subplots(1, 2)
    for column, (key, _chart_title, axis_title) in enumerate(MEASURES, start=1):
        plt.subplot(1, column)
        plt.theme("pro")
        for i, (banks, points) in enumerate(lines.items()):
            xs, ys = _values(points, key)
            if xs:
                plt.plot(xs, ys, label=f"{banks} banks", marker=TERMINAL_MARKERS[i % len(TERMINAL_MARKERS)])
        plt.title(axis_title)  # plotext drops a title or a label that does not fit: the units go in the title
        plt.xlabel(_x_title(_log_x(ticks)))
        if _log_x(ticks):
            plt.xscale("log")
        if ticks:
            plt.xticks(ticks, [str(t) for t in ticks])
        all_values = [v for points in lines.values() for v in _values(points, key)[1]]
        if all_values:
            plt.ylim(0, _nice_top(max(all_values)))
    text = plt.build()
    _reset(plt)
    return text


def _reset(plt) -> None:
    """plotext keeps one figure per process: clear the whole of it (clear_figure alone clears the active subplot)."""
    plt.main()
    plt.clear_figure()


def _nice_top(value: float) -> float:
    """A round upper limit a little above `value` (1.1 → 1.2, 870 → 900)."""
    if value <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(value)) / 2
    return math.ceil(value * 1.02 / step) * step
