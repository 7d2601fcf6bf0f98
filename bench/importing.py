"""Importing a book of opportunities (`opportunities import`) against opening them bare, side by
side on the same fresh servers (the module is `bench.importing`: `import` is a keyword).

Three sides open opportunities, C at a time, each counted from its first start to its last
opening row in the read model (the import also to its R-th row, like for like with the
references, since opening slows down as the fleet grows):

- **import**: a CSV file of N rows (amounts in EUR and JPY, a close date, an owner each)
  through the import's own code path, `starter.cli.book.import_book`, called directly as
  the command calls it: every row checked against the read model, then opened by the
  typed client, which waits for each to be open;
- **create loop**: R opportunities opened by a plain loop of `OpportunitiesClient.create`
  with the same values (what the import adds to the typed client is the difference);
- **bare**: `bench.fleet`'s bare reference, `BareOpportunity` started R times by the raw
  Temporal client, each writing its opening row by one local activity (`bench.fleet.open_fleet`).

Our workflows run on the real `opportunities-worker`, the bare ones on `bench.bare_worker`,
each a process of its own with the same cache and runner. Then the importer's peak memory
(tracemalloc) while it validates files of 10,000 and 100,000 fresh rows (`--dry-run`), and
how long that takes.

    .venv/bin/python -m bench.importing [--rows 5000] [--reference 1000] [--concurrency 20]
                                        [--validate 10000,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable
from pathlib import Path

import asyncpg
from temporalio.client import Client

from bench.bare import FLEET_ROWS
from bench.engine import no_activity_on_entry
from bench.fleet import Side, at_most, open_fleet, progress, until_rows
from bench.servers import OWNERS, local_servers_and_url
from starter.cli.book import COLUMNS, Tally, import_book, new_writer, write_cells, write_header
from starter.client import OpportunitiesClient
from tests.support.worker_process import WorkerProcess, running, worker_env

QUEUE = "bench-import"
BARE_QUEUE = "bench-import-bare"
CACHE = 5000


def value(n: int) -> tuple[str, str, str]:
    """Row n's amount, currency and expected close date: EUR with cents and whole JPY."""
    close = f"2027-{n % 12 + 1:02d}-{n % 28 + 1:02d}"
    return (f"{n}.50", "EUR", close) if n % 2 else (f"{n * 100}", "JPY", close)


def write_book(path: Path, prefix: str, rows: int) -> None:
    """A book of `rows` opportunities of contact `c-bench` on process `bench`."""
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = new_writer(stream)
        write_header(writer)
        for n in range(rows):
            amount, currency, close = value(n)
            cells = [f"{prefix}{n:06d}", "c-bench", "bench", "", f"Imported {n}",
                     f"o{n % OWNERS}", amount, currency, close]  # fmt: skip
            assert len(cells) == len(COLUMNS)
            write_cells(writer, cells)


async def timed(body: Awaitable[object]) -> float:
    started = time.perf_counter()
    await body
    return time.perf_counter() - started


def opened_count(prefix: str) -> str:
    return f"SELECT count(*) FROM opportunities WHERE opportunity_id LIKE '{prefix}%'"


async def import_side(
    pool: asyncpg.Pool, client: OpportunitiesClient, path: Path, rows: int, c: int, first: int
) -> tuple[float, float, Tally]:
    """Seconds to import the book (until its last row is in the read model), seconds until
    its `first` rows were, and its tally."""
    tally = Tally()
    reached: list[float] = []

    async def body() -> None:
        nonlocal tally
        tally = await import_book(path, pool=pool, client=client, concurrency=c,
                                  report=lambda line, why: None, progress=False)  # fmt: skip
        await until_rows(pool, opened_count("imp-"), rows)

    async def watch(started: float) -> None:
        await until_rows(pool, opened_count("imp-"), min(first, rows))
        reached.append(time.perf_counter() - started)

    watcher = asyncio.ensure_future(watch(time.perf_counter()))
    seconds = await timed(body())
    await watcher
    return seconds, reached[0], tally


async def create_loop(pool: asyncpg.Pool, client: OpportunitiesClient, count: int, c: int) -> float:
    """Seconds to open `count` opportunities with a plain loop of the typed client's `create`."""

    async def create(n: int) -> None:
        amount, currency, close = value(n)
        await client.create(
            "c-bench", opportunity_id=f"loop-{n:06d}", process_id="bench", name=f"Loop {n}",
            owner=f"o{n % OWNERS}", amount=amount, currency=currency, expected_close_date=close,
        )  # fmt: skip

    async def body() -> None:
        await at_most(c, count, create)
        await until_rows(pool, opened_count("loop-"), count)

    return await timed(body())


async def bare_side(
    client: Client, pool: asyncpg.Pool, worker: WorkerProcess, count: int, c: int
) -> float:
    """Seconds `bench.fleet` takes to open `count` bare opportunities."""
    side = Side(
        "bare", "BareOpportunity", "bare-", BARE_QUEUE, worker,
        "SELECT count(*) FROM bench_fleet_rows WHERE seq = 0 AND workflow_id LIKE 'bare-%'",
        "SELECT 0",
    )  # fmt: skip
    return await timed(open_fleet(client, pool, side, count, c))


async def validation_memory(
    pool: asyncpg.Pool, client: OpportunitiesClient, directory: Path, rows: int
) -> tuple[float, float, Tally]:
    """Seconds and peak MiB (tracemalloc) the importer takes to validate a book of `rows`
    fresh rows (`--dry-run`); the seconds are measured in a second run without tracemalloc."""
    path = directory / f"validate-{rows}.csv"
    write_book(path, f"val{rows}-", rows)

    def dry_run() -> Awaitable[Tally]:
        return import_book(path, pool=pool, client=client, dry_run=True,
                           report=lambda line, why: None, progress=False)  # fmt: skip

    tracemalloc.start()
    try:
        tally = await dry_run()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    seconds = await timed(dry_run())
    return seconds, peak, tally


async def main(rows: int, reference: int, c: int, validate: list[int]) -> None:
    async with local_servers_and_url(no_activity_on_entry) as (pool, env, url):
        await pool.execute(FLEET_ROWS)
        address = env.client.service_client.config.target_host
        sandbox = os.environ.get("OPPORTUNITIES_WORKFLOW_SANDBOX", "off").lower() == "on"
        client = OpportunitiesClient(env.client, QUEUE)
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            ours = WorkerProcess.opportunities_worker(
                worker_env(address, url, QUEUE, CACHE, sandbox), directory / "ours.log"
            )
            bare = WorkerProcess(
                [sys.executable, "-m", "bench.bare_worker"],
                worker_env(address, url, BARE_QUEUE, CACHE, sandbox),
                directory / "bare.log",
            )
            book = directory / "book.csv"
            write_book(book, "imp-", rows)
            async with running(ours), running(bare):
                progress(f"bare: opening {reference}")
                bare_seconds = await bare_side(env.client, pool, bare, reference, c)
                progress(f"create loop: opening {reference}")
                loop_seconds = await create_loop(pool, client, reference, c)
                progress(f"import: {rows} rows")
                imported = await import_side(pool, client, book, rows, c, reference)
                progress(f"import: {imported[2]}")
                memory = []
                for count in validate:
                    progress(f"validating {count} rows (--dry-run)")
                    memory.append((count, *await validation_memory(pool, client, directory, count)))
    report(rows, reference, c, bare_seconds, loop_seconds, imported, memory)


def report(
    rows: int, reference: int, c: int, bare: float, loop: float,
    imported: tuple[float, float, Tally], memory: list[tuple[int, float, float, Tally]],
) -> None:  # fmt: skip
    seconds, first_seconds, tally = imported
    first = min(reference, rows)
    print(f"{c} in flight; import {rows} rows ({tally.opened} opened, {tally.bad} bad, "
          f"{tally.failed} failed); references {reference} each")  # fmt: skip
    rates = {f"import, all {rows}": rows / seconds, f"import, first {first}": first / first_seconds}
    references = {"create loop": reference / loop, "bare": reference / bare}
    print(f"{'side':<22}{'opened/s':>10}" + "".join(f"{'/ ' + name:>14}" for name in references))
    for side, rate in (rates | references).items():
        ratios = "".join(f"{rate / other:>14.2f}" for other in references.values())
        print(f"{side:<22}{rate:>10.1f}{ratios}")
    print(f"{'validated rows':<16}{'peak MiB':>10}{'seconds':>10}{'rows/s':>10}{'to open':>10}")
    for count, took, peak, checked in memory:
        print(f"{count:<16}{peak:>10.1f}{took:>10.1f}{count / took:>10.0f}"
              f"{checked.to_open:>10}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--reference", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--validate", default="10000,100000")
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.validate.split(",") if size]
    asyncio.run(main(arguments.rows, arguments.reference, arguments.concurrency, sizes))
