"""Search latency over a seeded read model: 100,000 opportunities in a fresh embedded
PostgreSQL; a page (50 rows) by stage, by owner and by both, median and p95 over many runs,
beside a full-table count as the baseline a missing index would cost.

    .venv/bin/python -m bench.search [--rows 100000] [--runs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import store
from runtime import embedded
from sales.contact import Contact
from sales.process import ProcessDefinition
from store import contacts, processes, search
from store.schema import migrate
from store.search import SearchFilters

STAGES = ["Prospect", "Needs analysis", "Proposal", "Underwriting", "Closed won", "Closed lost"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def seed(pool, rows: int) -> None:
    process = ProcessDefinition.model_validate(
        {"process_id": "bench", "name": "Bench", "stages": [{"name": s} for s in STAGES]}
    )
    await processes.apply_process(pool, process)
    await contacts.add_contact(pool, Contact(contact_id="c-bench", first_name="A", last_name="B"))
    rng = random.Random(7)
    records = []
    for index in range(rows):
        stage = rng.choice(STAGES)
        records.append((
            f"o-{index:07d}", "c-bench", "bench", 1, f"Deal {index}", f"owner-{rng.randrange(200)}",
            {"Closed won": "won", "Closed lost": "lost"}.get(stage, "open"), stage,
            T0 + timedelta(minutes=index), None, rng.randrange(3), T0, T0, 1,
        ))  # fmt: skip
    columns = ["opportunity_id", "contact_id", "process_id", "process_version", "name", "owner",
               "status", "current_stage", "stage_entered_at", "closed_at", "open_actions",
               "created_at", "updated_at", "revision"]  # fmt: skip
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("opportunities", records=records, columns=columns)
        await conn.execute("ANALYZE opportunities")


async def timed(pool, filters: SearchFilters, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await search.search(pool, filters, limit=50)
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms"


async def main(rows: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        admin, url = embedded.start_postgres(Path(tmp) / "pg", keep=False)
        await embedded.ensure_database(admin)
        pool = await store.create_pool(url, max_size=4)
        await migrate(pool)
        started = time.perf_counter()
        await seed(pool, rows)
        print(f"seeded {rows:,} opportunities in {time.perf_counter() - started:.1f} s")
        cases = {
            "stage = Proposal": SearchFilters(stage="Proposal"),
            "owner = owner-42": SearchFilters(owner="owner-42"),
            "stage + owner": SearchFilters(stage="Proposal", owner="owner-42"),
            "status = open, open actions": SearchFilters(status="open", has_open_actions=True),
        }
        baseline = []
        for _ in range(max(runs // 10, 10)):
            start = time.perf_counter()
            await pool.fetchval("SELECT count(*) FROM opportunities WHERE name LIKE '%zz%'")
            baseline.append((time.perf_counter() - start) * 1000)
        print(f"{'full scan (baseline)':32} {summary(baseline)}")
        for label, filters in cases.items():
            times = await timed(pool, filters, runs)
            ratio = statistics.median(baseline) / statistics.median(times)
            print(f"{label:32} {summary(times)}   {ratio:5.1f}x faster than a scan")
            plan = await search.explain(pool, filters)
            scans = "seq scan!" if "Seq Scan on opportunities" in plan else "index"
            print(f"{'':32} plan: {scans}")
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.runs))
