"""`bench.capacity` with tiny sizes, as a user runs it: it finishes, its tables are
well-formed, and its figures are positive and agree with each other. The figures themselves
are the benchmark's (bench/README.md), not a test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bench.capacity as capacity

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    *("--per-command", "1", "--year-opportunities", "1", "--weeks", "1", "--day-seconds", "1"),
    *("--replay-lengths", "60", "--replay-runs", "1", "--replays", "1", "--pg-settle", "0"),
]
"""One opportunity per step, one week of the year, one short run replayed; statistics read
without waiting for PostgreSQL to flush them (so its figures are not checked here)."""


def test_a_tiny_run_prints_well_formed_tables_and_consistent_figures(tmp_path: Path) -> None:
    saved = tmp_path / "figures.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.capacity", *TINY, "--json", str(saved)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    tables = [line for line in run.stdout.splitlines() if line.startswith("|")]
    assert tables, run.stdout
    assert all(line.endswith("|") for line in tables)
    figures = json.loads(saved.read_text())

    steps = figures["per_command"]
    labels = ["opening", *(label for label, _, _ in capacity.STEPS), capacity.DELETING[0]]
    assert list(steps) == labels
    for label, per in steps.items():
        assert per["events"] > 0 and per["history bytes"] > 0, label
        kinds = sum(v for k, v in per.items() if k.startswith("actions: "))
        assert per["actions"] == kinds > 0, label
        assert per["workflow tasks"] >= 1, label
    assert sum(per.get("worker CPU ms", 0) for per in steps.values()) > 0  # 10 ms ticks
    assert steps["opening"]["actions: start"] == 1 and steps["opening"]["visibility upserts"] >= 1
    assert steps["change_owner (signal)"]["actions: signal"] == 1
    assert steps["change_owner"]["actions: update"] == 1
    for closing in ("closing (change_stage to Closed won)", capacity.DELETING[0]):
        assert steps[closing]["visibility upserts"] >= 1  # the run's close

    year = figures["year"]["per_year"]
    assert year["commands"] > 0 and year["events"] > year["commands"]
    assert year.get("rejected commands", 0) == 0
    assert figures["year"]["gaps_days"] and min(figures["year"]["gaps_days"]) >= 0
    [replayed] = figures["replay"].values()
    assert replayed["events"] >= 60 and replayed["replayer p50 ms"] > 0
    assert replayed["query p50 ms"] > 0

    model = figures["model"]
    assert len(model["header"]) == len(capacity.SCENARIOS)
    assert all(len(row) == 1 + len(capacity.SCENARIOS) for row in model["rows"])
    assert f"| figure | {' | '.join(model['header'])} |" in run.stdout


def test_the_mix_in_the_docstring_is_the_one_the_bench_sends() -> None:
    assert "\n".join(capacity.mix_table()) in (capacity.__doc__ or "")
    sent = [rule for _, rule, _ in capacity.schedule(52)]
    for label, _, per_year, *_ in capacity.MIX:
        assert sum(rule[0] == label for rule in sent) >= per_year, label


def test_the_hit_rate_follows_the_share_cached() -> None:
    gaps = [1.0] * 50 + [10.0] * 50  # half the touches soon after the last, half long after
    assert capacity.hit_rate(gaps, 1.0) == 1.0
    rates = [capacity.hit_rate(gaps, share / 10) for share in range(1, 10)]
    assert rates == sorted(rates) and rates[0] < rates[-1] < 1
