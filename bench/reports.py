"""Report latency over a seeded read model: 100,000 opportunities with 1,000,000 history rows
(four years of stage changes) in a fresh embedded PostgreSQL; each report run many times,
median and p95, beside one sequential scan of `opportunity_history` as the baseline a missing
index would cost; then each report's plan.

    .venv/bin/python -m bench.reports [--opportunities 100000] [--history 10] [--runs 50]

Goals: the pipeline p50 < 100 ms, the conversion over a year p50 < 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

import store
from runtime import embedded
from sales.contact import Contact
from sales.process import ProcessDefinition
from store import contacts, processes, reports
from store.schema import migrate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
YEARS = 4
STAGES = [  # name, probability, closes_as
    ("Lead", 5, None),
    ("Qualified", 10, None),
    ("Discovery", 20, None),
    ("Needs analysis", 30, None),
    ("Demo", 40, None),
    ("Proposal", 50, None),
    ("Negotiation", 70, None),
    ("Contract", 90, None),
    ("Closed won", 100, "won"),
    ("Closed lost", 0, "lost"),
]
OPEN_STAGES = [name for name, _, closes in STAGES if closes is None]
PROBABILITY = {name: probability for name, probability, _ in STAGES}
CATEGORY = {"Proposal": "best_case", "Negotiation": "best_case", "Contract": "commit",
            "Closed won": "closed", "Closed lost": "omitted"}  # fmt: skip
CURRENCIES = ["EUR", "EUR", "EUR", "USD", "USD", "JPY"]
OPPORTUNITY_COLUMNS = [
    "opportunity_id", "contact_id", "process_id", "process_version", "name", "owner", "status",
    "current_stage", "stage_entered_at", "closed_at", "open_actions", "created_at", "updated_at",
    "revision", "amount", "currency", "expected_close_date", "probability", "forecast_category",
    "include_in_forecast", "idle_since",
]  # fmt: skip
HISTORY_COLUMNS = ["opportunity_id", "seq", "at", "from_stage", "to_stage", "source", "left_at",
                   "duration_seconds", "left_for"]  # fmt: skip


def walk(rng: random.Random, steps: int, closing: float) -> list[tuple[str, str]]:
    """`steps` stage entries of one opportunity (stage, source): mostly forward, now and then
    back; the last one closes it won or lost with the probability `closing`, and one closed
    before its end is reopened."""
    entries = [("Lead", "start")]
    while len(entries) < steps:
        stage = entries[-1][0]
        if stage not in OPEN_STAGES:
            entries.append((rng.choice(OPEN_STAGES[2:]), "reopened"))
            continue
        position = OPEN_STAGES.index(stage)
        roll = rng.random()
        last = len(entries) == steps - 1
        if (last and roll < closing) or roll < 0.03:
            won = position >= 4 and rng.random() < 0.5
            entries.append(("Closed won" if won else "Closed lost", "outcome"))
        elif roll < 0.2 and position > 0:
            entries.append((OPEN_STAGES[position - 1], "manual"))
        elif position + 1 < len(OPEN_STAGES):
            entries.append((OPEN_STAGES[position + 1], "automatic"))
        else:
            entries.append(("Closed won" if roll < 0.7 else "Closed lost", "outcome"))
    return entries


def opportunity(rng: random.Random, index: int, steps: int) -> tuple[tuple[Any, ...], list[Any]]:
    """One opportunity's row and its history rows, all in the past."""
    opportunity_id = f"o-{index:07d}"
    span = timedelta(days=365 * YEARS - 70)
    created = NOW - timedelta(days=70) - span * rng.random()
    times = [created]
    for _ in range(steps - 1):
        times.append(times[-1] + timedelta(seconds=rng.randrange(86_400, 7 * 86_400)))
    old = created < NOW - timedelta(days=180)
    entries = walk(rng, steps, 0.95 if old else 0.3)  # most old ones have closed
    history = []
    for seq, ((stage, source), at) in enumerate(zip(entries, times, strict=True), start=1):
        left = times[seq] if seq < steps else None
        history.append((
            opportunity_id, seq, at, entries[seq - 2][0] if seq > 1 else None, stage, source,
            left, int((left - at).total_seconds()) if left else None,
            entries[seq][0] if seq < steps else None,
        ))  # fmt: skip
    stage, entered = entries[-1][0], times[-1]
    status = {"Closed won": "won", "Closed lost": "lost"}.get(stage, "open")
    currency = rng.choice(CURRENCIES)
    amount = Decimal(rng.randrange(1_000, 500_000)) * (100 if currency == "JPY" else 1)
    idle = entered + timedelta(days=14) if status == "open" and rng.random() < 0.1 else None
    row = (
        opportunity_id, "c-bench", "bench", 1, f"Deal {index}", f"o{rng.randrange(200)}", status,
        stage, entered, entered if status != "open" else None, 0, created, entered, steps,
        amount, currency, (created + timedelta(days=rng.randrange(30, 400))).date(),
        PROBABILITY[stage], CATEGORY.get(stage, "pipeline"), rng.random() < 0.9, idle,
    )  # fmt: skip
    return row, history


async def seed(pool: asyncpg.Pool, count: int, steps: int) -> None:
    """`count` opportunities of process `bench` with `steps` history rows each on average."""
    definition = {
        "process_id": "bench", "name": "Bench",
        "stages": [{"name": name, "probability": probability, "closes_as": closes}
                   for name, probability, closes in STAGES],
    }  # fmt: skip
    await processes.apply_process(pool, ProcessDefinition.model_validate(definition))
    await contacts.add_contact(pool, Contact(contact_id="c-bench", first_name="A", last_name="B"))
    rng = random.Random(7)
    batch = 10_000
    for first in range(0, count, batch):
        rows, history = [], []
        for index in range(first, min(first + batch, count)):
            spread = (index // 2) % (steps - 1)  # lengths 2 to 2 x steps - 2, in pairs
            length = steps + (spread if index % 2 else -spread)
            row, entries = opportunity(rng, index, length)
            rows.append(row)
            history.extend(entries)
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "opportunities", records=rows, columns=OPPORTUNITY_COLUMNS
            )
            await conn.copy_records_to_table(
                "opportunity_history", records=history, columns=HISTORY_COLUMNS
            )
    async with pool.acquire() as conn:  # as autovacuum leaves a table that has settled
        await conn.execute("VACUUM ANALYZE opportunities")
        await conn.execute("VACUUM ANALYZE opportunity_history")


async def timed(work: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await work()
        times.append((time.perf_counter() - start) * 1000)
    return times


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[max(int(len(ordered) * 0.95) - 1, 0)]


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):8.2f} ms   p95 {p95(times):8.2f} ms"


Case = tuple[Callable[[], Awaitable[Any]], str, dict[str, Any]]
"""A benchmark case: the run, the report, its filters."""


def cases(pool: asyncpg.Pool) -> dict[str, Case]:
    year = {"process_id": "bench", "since": NOW - timedelta(days=365), "until": NOW}
    quarter = {"process_id": "bench", "since": NOW - timedelta(days=91), "until": NOW}
    chosen: list[tuple[str, str, dict[str, Any]]] = [
        ("pipeline", "pipeline", {"process_id": "bench", "now": NOW}),
        ("pipeline, all processes", "pipeline", {"now": NOW}),
        ("pipeline, one owner", "pipeline", {"process_id": "bench", "owner": "o42", "now": NOW}),
        ("conversion over a year", "conversion", year),
        ("conversion over a quarter", "conversion", quarter),
        ("forecast by month", "forecast", {"period": "month", "process_id": "bench"}),
        ("forecast by quarter, one owner", "forecast", {"period": "quarter", "owner": "o42"}),
    ]
    return {
        label: (bound(pool, report, filters), report, filters) for label, report, filters in chosen
    }


def bound(pool: asyncpg.Pool, report: str, filters: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
    """The report run with these filters."""
    run: Callable[..., Awaitable[Any]] = getattr(reports, report)
    return lambda: run(pool, **filters)


GOALS = {"pipeline": 100, "conversion over a year": 300}
"""The median each of these cases must stay below, in milliseconds."""


def verdict(plan: str) -> str:
    """Which tables the plan reads whole (a sequential scan), else that it reads indexes."""
    scanned = sorted(set(re.findall(r"Seq Scan on (\w+)", plan)))
    return f"plan: seq scan of {', '.join(scanned)}" if scanned else "plan: indexes only"


async def main(count: int, steps: int, runs: int, show_plans: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        admin, url = embedded.start_postgres(Path(tmp) / "pg", keep=False)
        await embedded.ensure_database(admin)
        pool = await store.create_pool(url, max_size=4)
        await migrate(pool)
        started = time.perf_counter()
        await seed(pool, count, steps)
        history = await pool.fetchval("SELECT count(*) FROM opportunity_history")
        print(f"seeded {count:,} opportunities and {history:,} history rows "
              f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        entries = await pool.fetchval(
            "SELECT count(*) FROM opportunity_history WHERE at >= $1",
            NOW - timedelta(days=365),
        )
        print(f"the last year holds {entries:,} stage entries")
        baseline = await timed(
            lambda: pool.fetchval("SELECT count(*) FROM opportunity_history WHERE reason = 'x'"),
            max(runs // 5, 10),
        )
        print(f"{'seq scan of history (baseline)':34} {summary(baseline)}")
        plans = []
        for label, (run, report, filters) in cases(pool).items():
            await run()  # warm the cache and the prepared statement
            times = await timed(run, runs)
            ratio = statistics.median(baseline) / statistics.median(times)
            plan = await reports.explain(pool, report, **filters)
            print(f"{label:34} {summary(times)}   {ratio:5.2f}x the scan   {verdict(plan)}")
            if label in GOALS:
                met = statistics.median(times) < GOALS[label]
                print(f"{'':34} goal p50 < {GOALS[label]} ms: {'met' if met else 'NOT MET'}")
            plans.append((label, plan))
        if show_plans:
            for label, plan in plans:
                print(f"\n-- {label}\n{plan}")
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=10, help="history rows per opportunity")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--no-plans", action="store_true", help="leave the plans out")
    arguments = parser.parse_args()
    asyncio.run(
        main(arguments.opportunities, arguments.history, arguments.runs, not arguments.no_plans)
    )
