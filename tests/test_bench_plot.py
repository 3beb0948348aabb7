"""`strife bench --sweep --plot FILE.svg`: the charts from fixed sweep figures, and one real small sweep."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import plotext

from app.bench import plot

SVG = "{http://www.w3.org/2000/svg}"


def _cell(banks: int, clients: int, per_s: float, p99_ms: float) -> dict:
    return {
        "config": {"banks": banks, "clients": clients},
        "payments": {"committed_per_s": per_s, "latency_ms": {"p50": p99_ms / 3, "p99": p99_ms}},
        "ok": True,
    }


def _doc(cells: list[dict]) -> dict:
    """The parts of the bench's JSON document (`--json`) that the charts read."""
    return {
        "command": "strife bench --sweep --duration 5 --plot bench.svg",
        "versions": {"python": "3.11.7", "grpcio": "1.85.1", "strife_commit": "abc1234"},
        "host": {"cpus": 2, "data_fs": "ext4"},
        "sweep": {"duration_s": 5.0, "payments": None, "cells": cells},
        "ok": True,
    }


GRID = [
    _cell(3, 1, 95.2, 14.1),
    _cell(3, 16, 612.4, 48.3),
    _cell(3, 64, 701.9, 160.2),
    _cell(3, 128, 688.0, 342.7),
    _cell(12, 1, 80.1, 16.9),
    _cell(12, 16, 455.3, 66.2),
    _cell(12, 64, 520.7, 221.0),
    _cell(12, 128, 510.2, 480.4),
]


def _svg(doc: dict, path: Path) -> ET.Element:
    plot.write_svg(doc, path)
    return ET.parse(path).getroot()  # raises on anything that is not well-formed XML


def _texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def _line(root: ET.Element, gid: str) -> str:
    """The path drawn for one line of one chart (its `d`)."""
    group = next(g for g in root.iter(f"{SVG}g") if g.get("id") == gid)
    return group.find(f"{SVG}path").get("d")  # type: ignore[union-attr]


def _vertices(d: str) -> int:
    return d.count("M") + d.count("L")


def _line_ids(root: ET.Element) -> set[str]:
    return {g.get("id", "") for g in root.iter(f"{SVG}g") if "-banks-" in g.get("id", "")}


def test_svg_has_titles_with_units_and_a_line_per_bank_count(tmp_path):
    root = _svg(_doc(GRID), tmp_path / "sweep.svg")
    texts = _texts(root)
    for axis_title in ("throughput (payments/s)", "p99 latency (ms)", "concurrent clients (log scale)"):
        assert axis_title in texts
    title = next(t for t in texts if t.startswith("strife bench --sweep"))
    assert "5 s per cell" in title and "3 and 12 banks" in title and "2 CPU cores" in title
    assert any(t.startswith("strife bench --sweep --duration 5 --plot bench.svg") for t in texts)  # provenance
    assert {"3 banks", "12 banks"} <= set(texts)  # the legend
    assert _line_ids(root) == {"throughput-banks-3", "throughput-banks-12", "p99-banks-3", "p99-banks-12"}
    assert all(_vertices(_line(root, gid)) == 4 for gid in _line_ids(root))  # one vertex per client count


def test_the_figures_move_the_lines_and_the_same_figures_give_the_same_file(tmp_path):
    root = _svg(_doc(GRID), tmp_path / "a.svg")
    faster = [
        _cell(3, 16, 900.0, 48.3) if (c["config"]["banks"], c["config"]["clients"]) == (3, 16) else c for c in GRID
    ]
    moved = _svg(_doc(faster), tmp_path / "b.svg")
    assert _line(root, "throughput-banks-3") != _line(moved, "throughput-banks-3")
    assert _line(root, "p99-banks-3") == _line(moved, "p99-banks-3")  # p99 unchanged, same y range
    _svg(_doc(GRID), tmp_path / "again.svg")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "again.svg").read_bytes()


def test_a_failed_cell_is_a_gap_not_a_zero(tmp_path):
    cells = [*GRID[:3], {"config": {"banks": 3, "clients": 128}, "failed": "gateway did not start", "ok": False}]
    root = _svg(_doc([*cells, *GRID[4:]]), tmp_path / "gap.svg")
    assert _vertices(_line(root, "throughput-banks-3")) == 3
    assert _vertices(_line(root, "throughput-banks-12")) == 4


def test_terminal_chart_has_the_titles_and_the_legend_within_its_width():
    text = plotext.uncolorize(plot.terminal_chart(_doc(GRID), width=120))
    for words in ("throughput (payments/s)", "p99 latency (ms)", "concurrent clients", "3 banks", "12 banks", "128"):
        assert words in text
    assert max(len(line) for line in text.splitlines()) <= 120
    assert plot.terminal_chart(_doc(GRID), width=120) == plot.terminal_chart(_doc(GRID), width=120)


def _bench(*args: str, timeout_s: float = 20) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "app.cli", "bench", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)


def test_plot_without_sweep_or_into_a_missing_directory_fails_at_once(tmp_path):
    for args, words in (
        (["--plot", str(tmp_path / "x.svg")], "--plot draws the sweep: it needs --sweep"),
        (["--sweep", "--plot", str(tmp_path / "missing" / "x.svg")], "does not exist"),
        (["--sweep", "--plot", str(tmp_path / "x.png")], "must end in .svg"),
    ):
        done = _bench(*args)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_small_sweep_writes_the_svg_and_shows_the_charts(tmp_path):
    svg = tmp_path / "x.svg"
    done = _bench(
        "--sweep",
        "--sweep-clients",
        "1,2",
        "--sweep-banks",
        "2",
        "--duration",
        "1",
        "--plot",
        str(svg),
        "--work-dir",
        str(tmp_path / "bench"),
        timeout_s=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    root = ET.parse(svg).getroot()
    assert _line_ids(root) == {"throughput-banks-2", "p99-banks-2"}
    assert all(_vertices(_line(root, gid)) == 2 for gid in _line_ids(root))
    assert "throughput (payments/s)" in _texts(root)
    out = done.stdout
    assert out.index("strife bench --sweep on sqlite (each cell a fresh stack)") < out.index("throughput (payments/s)")
    assert "p99 latency (ms)" in out and "2 banks" in out and "command: strife bench --sweep" in out
