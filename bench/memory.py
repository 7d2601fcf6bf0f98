"""Worker memory per cached opportunity against the bare workflow's, each in a worker process
of its own.

Ours is the real `opportunities-worker`; the bare side is `bench.bare_worker` (the bare
workflow of `bench.engine`), both with `OPPORTUNITIES_MAX_CACHED_WORKFLOWS` above the count,
so nothing is evicted. For each side: start the worker, open a few workflows (so imports and
first loads are not counted), read its RSS (VmRSS of /proc/PID/status) once it is idle, open
N more, wait until every one is through its first workflow tasks and the worker is idle
again, read its RSS again. Per workflow = RSS growth / N. The workers' own Prometheus metrics
show that every workflow is still cached: the gauge `temporal_sticky_cache_size`, and no
`temporal_sticky_cache_miss` (a task for a run no longer cached, replayed from its history).

An opportunity is opened with `OpportunitiesClient.create` on the example process (the
Prospect stage, one calendar activity created on entry) and waited for until open and
projected; a bare workflow is started with one command (one no-op activity) and waited for
until that activity is done, `concurrency` at a time.

    .venv/bin/python -m bench.memory [--count 5000] [--concurrency 40]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from bench.bare import BareCommands
from bench.servers import local_servers_and_url
from starter.client import OpportunitiesClient
from tests.support.worker_process import WorkerProcess, running, worker_env

QUEUE = "bench-memory"
BARE_QUEUE = "bench-memory-bare"
WARM_UP = 20
"""Workflows opened before the baseline: first imports, sandbox and converter loads."""
CACHE_SLACK = 100
"""Cache slots beyond warm-up + N."""
console = Console(width=120)


@dataclass
class Side:
    name: str
    count: int
    before_kb: int
    after_kb: int
    cached: int
    misses: int
    seconds: float

    @property
    def per_workflow_kb(self) -> float:
        return (self.after_kb - self.before_kb) / self.count


async def in_batches(
    label: str, first: int, count: int, concurrency: int, open_one: Callable[[int], Awaitable[Any]]
) -> float:
    """Open workflows first..first+count-1, `concurrency` at a time; the seconds taken."""
    started = time.monotonic()
    next_n = first
    done = 0
    last_report = started

    async def opener() -> None:
        nonlocal next_n, done, last_report
        while next_n < first + count:
            n = next_n
            next_n += 1
            await open_one(n)
            done += 1
            now = time.monotonic()
            if count > WARM_UP and (now - last_report >= 15 or done == count):
                last_report = now
                console.print(
                    f"  {label}: {done}/{count} opened, {done / (now - started):.1f}/s",
                    highlight=False,
                )

    await asyncio.gather(*(opener() for _ in range(min(concurrency, count))))
    return time.monotonic() - started


async def measure(
    name: str,
    worker: WorkerProcess,
    count: int,
    concurrency: int,
    open_one: Callable[[int], Awaitable[Any]],
    opened: Callable[[], Awaitable[int]],
) -> Side:
    async with running(worker):
        await in_batches(name, 0, WARM_UP, concurrency, open_one)
        before = await worker.idle_rss_kb()
        console.print(f"{name}: worker {worker.pid} idle at {before / 1024:.1f} MiB after warm-up")
        seconds = await in_batches(name, WARM_UP, count, concurrency, open_one)
        while (have := await opened()) < WARM_UP + count:
            console.print(f"  {name}: waiting, {have}/{WARM_UP + count} through", highlight=False)
            await asyncio.sleep(2)
        after = await worker.idle_rss_kb()
        metrics = await worker.metrics()
        cached = int(metrics.get("temporal_sticky_cache_size", -1))
        misses = int(metrics.get("temporal_sticky_cache_miss", 0))
        console.print(f"{name}: {after / 1024:.1f} MiB with {cached} cached, {misses} cache misses")
        return Side(name, count, before, after, cached, misses, seconds)


Opener = tuple[Callable[[int], Awaitable[None]], Callable[[], Awaitable[int]]]
"""Open workflow number n (and wait until it is through its first tasks); how many are."""


def opportunity_opener(client: Client, pool: asyncpg.Pool, queue: str) -> Opener:
    """Opportunities on the example process, each opened with `create` (which returns once
    it is open, its entry activities linked); through once its projection row is written."""
    opportunities = OpportunitiesClient(client, queue)

    async def open_one(n: int) -> None:
        await opportunities.create(
            "c-bench", opportunity_id=f"mem-{n:05d}", process_id="bench", wait_seconds=300
        )

    async def opened() -> int:
        return int(await pool.fetchval("SELECT count(*) FROM opportunities"))

    return open_one, opened


def bare_opener(client: Client, queue: str) -> Opener:
    """Bare workflows started with one command, each waited for until that command's
    activity is done (as `create` waits for an opportunity)."""
    through = 0

    async def open_one(n: int) -> None:
        nonlocal through
        handle = await client.start_workflow(
            BareCommands.run,
            id=f"bare-mem-{n:05d}",
            task_queue=queue,
            start_signal="command",
            start_signal_args=[{"owner": "o", "request_id": f"bare-{n}"}],
        )
        while True:
            if await handle.query("done") >= 1:
                break
            await asyncio.sleep(0.1)
        through += 1

    async def opened() -> int:
        return through

    return open_one, opened


def report(sides: list[Side], started: float) -> None:
    ours_side, bare_side = sides
    ratio = ours_side.per_workflow_kb / bare_side.per_workflow_kb
    table = Table(
        title="Worker memory per cached workflow: RSS growth / N, each side a process of its own",
        caption="ours: opportunities-worker, an opportunity opened on the example process; "
        "bare: BareCommands, started with one command",
    )
    table.add_column("side", no_wrap=True)
    for column in ("N", "RSS before", "RSS after", "per workflow", "cached", "opened/s"):
        table.add_column(column, justify="right")
    table.add_column("ours / bare (goal <= 1.5x)", justify="right")
    for side in sides:
        table.add_row(
            side.name,
            f"{side.count:,}",
            f"{side.before_kb / 1024:.1f} MiB",
            f"{side.after_kb / 1024:.1f} MiB",
            f"{side.per_workflow_kb:.1f} KiB",
            f"{side.cached:,}" + (f" ({side.misses:,} misses)" if side.misses else ""),
            f"{side.count / side.seconds:.1f}",
            (f"{ratio:.2f}x " + ("ok" if ratio <= 2 else "over")) if side is ours_side else "",
        )
    console.print(table)
    for side in sides:
        if side.cached < side.count + WARM_UP or side.misses:
            console.print(f"[red]{side.name}: not every workflow stayed cached[/red]")
    console.print(f"benchmark took {time.monotonic() - started:.0f} s")


def ours_command(passthrough: str | None) -> list[str]:
    """The service's worker, or for an experiment the same worker with modules passed
    through the sandbox (`bench.runner_worker`)."""
    if passthrough:
        return [sys.executable, "-m", "bench.runner_worker", f"passthrough:{passthrough}"]
    return [str(Path(sys.executable).parent / "opportunities-worker")]


def ours_name(passthrough: str | None, sandbox: bool) -> str:
    if passthrough:
        return f"ours, sandbox, {passthrough} passed through"
    return "ours, sandbox" if sandbox else "ours"


async def main(count: int, concurrency: int, passthrough: str | None, sandbox: bool) -> None:
    started = time.monotonic()
    cache = WARM_UP + count + CACHE_SLACK
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        logs = Path(tmp)
        async with local_servers_and_url(lambda document: None) as (pool, env, url):
            address = env.client.service_client.config.target_host
            ours_worker = WorkerProcess(
                ours_command(passthrough),
                worker_env(address, url, QUEUE, cache, sandbox or bool(passthrough)),
                logs / "ours.log",
            )
            bare_worker = WorkerProcess(
                [sys.executable, "-m", "bench.bare_worker"],
                worker_env(address, url, BARE_QUEUE, cache, sandbox or bool(passthrough)),
                logs / "bare.log",
            )
            sides = [
                await measure(
                    ours_name(passthrough, sandbox), ours_worker, count, concurrency,
                    *opportunity_opener(env.client, pool, QUEUE),
                ),
                await measure(
                    "bare", bare_worker, count, concurrency, *bare_opener(env.client, BARE_QUEUE)
                ),
            ]  # fmt: skip
    report(sides, started)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000, help="workflows per side (5000)")
    parser.add_argument("--concurrency", type=int, default=40, help="opened at a time (40)")
    parser.add_argument(
        "--passthrough",
        metavar="MODULES",
        help="experiment: ours with these modules (comma-separated) also passed through the "
        "workflow sandbox",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="both workers with OPPORTUNITIES_WORKFLOW_SANDBOX=on (default off, as deployed)",
    )
    arguments = parser.parse_args()
    asyncio.run(
        main(arguments.count, arguments.concurrency, arguments.passthrough, arguments.sandbox)
    )
