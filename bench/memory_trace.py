"""Where a cached workflow's memory goes: a worker in this process, `tracemalloc` snapshots
before and after opening N workflows, the allocation sites that grew most.

Python objects only (the SDK's Rust core and its cached histories are not traced, so the
traced total is below the RSS growth `bench.memory` measures). The client's calls run in this
process too but keep nothing.

    .venv/bin/python -m bench.memory_trace [--side ours|bare] [--count 500] [--concurrency 8]
        [--top 25] [--tracebacks 5] [--passthrough MODULE,...]

Both sides use the runner `OPPORTUNITIES_WORKFLOW_SANDBOX` chooses (default: no sandbox).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import linecache
import tracemalloc
from pathlib import Path

from rich.console import Console
from rich.table import Table
from temporalio.worker import Worker

from bench import runner_worker
from bench.bare import BareCommands, bare_effect
from bench.memory import WARM_UP, bare_opener, in_batches, opportunity_opener
from bench.servers import local_servers
from tests.support.worker_process import rss_kb
from worker import build_worker, workflow_runner

QUEUE = "bench-trace"
ROOT = str(Path(__file__).resolve().parent.parent)
console = Console(width=180)
FRAMES = 16
"""Frames kept per allocation: enough to see the import or the workflow code behind it."""


def where(frame: tracemalloc.Frame) -> str:
    name = frame.filename.replace(ROOT + "/", "")
    name = name.split("site-packages/")[-1]
    return f"{name}:{frame.lineno}"


def category(traceback: tracemalloc.Traceback) -> str:
    """What an allocation was for, read from its frames."""
    frames = list(reversed(traceback))  # newest first
    files = [where(frame).split(":")[0] for frame in frames]
    importing = [n for n, frame in enumerate(frames) if frame.filename.startswith("<frozen imp")]
    if importing:
        sandbox = any("sandbox/_importer" in file for file in files)
        place = "in the sandbox" if sandbox else "(sandbox importer beyond FRAMES, or bench)"
        first = importing[0]
        if first == 0:
            return f"import {place}: code objects, module objects"
        return f"import {place}: running the body of {files[first - 1]}"
    for prefix, name in (
        ("sales/", "workflow state (sales.core, pydantic)"),
        ("workflows/", "workflow code (workflows.*) running"),
        ("bench/bare.py", "workflow code (bench.bare) running"),
        ("temporalio/worker/workflow_sandbox/", "SDK: sandbox per run"),
        ("temporalio/worker/_workflow_instance.py", "SDK: workflow instance per run"),
        ("temporalio/", "SDK: other"),
    ):
        if any(file.startswith(prefix) for file in files):
            return name
    return "other"


def show(
    before: tracemalloc.Snapshot,
    after: tracemalloc.Snapshot,
    count: int,
    top: int,
    tracebacks: int,
) -> None:
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(ignore), after.filter_traces(ignore)
    traces = after.compare_to(before, "traceback")
    grown = sum(stat.size_diff for stat in traces)
    blocks = sum(stat.count_diff for stat in traces)
    console.print(
        f"traced Python memory grew {grown / 1024:.0f} KiB in {blocks:,} blocks: "
        f"{grown / count / 1024:.1f} KiB and {blocks / count:.0f} blocks per workflow"
    )

    by_category: dict[str, list[int]] = {}
    for stat in traces:
        sizes = by_category.setdefault(category(stat.traceback), [0, 0])
        sizes[0] += stat.size_diff
        sizes[1] += stat.count_diff
    table = Table(title="growth by what it was for")
    for column in ("KiB per workflow", "blocks per workflow", "share"):
        table.add_column(column, justify="right")
    table.add_column("for", no_wrap=True)
    for name, (size, number) in sorted(by_category.items(), key=lambda item: -item[1][0]):
        table.add_row(
            f"{size / count / 1024:.2f}", f"{number / count:.1f}", f"{size / grown:.0%}", name
        )
    console.print(table)

    table = Table(title=f"top {top} allocation sites by growth")
    for column in ("KiB per workflow", "blocks per workflow", "share"):
        table.add_column(column, justify="right")
    table.add_column("site", no_wrap=True)
    table.add_column("line", no_wrap=True, max_width=60)
    for stat in sorted(after.compare_to(before, "lineno"), key=lambda s: -s.size_diff)[:top]:
        frame = stat.traceback[-1]
        table.add_row(
            f"{stat.size_diff / count / 1024:.2f}",
            f"{stat.count_diff / count:.1f}",
            f"{stat.size_diff / grown:.0%}",
            where(frame),
            linecache.getline(frame.filename, frame.lineno).strip(),
        )
    console.print(table)

    for stat in sorted(traces, key=lambda s: -s.size_diff)[:tracebacks]:
        console.print(
            f"{stat.size_diff / count / 1024:.2f} KiB per workflow, {category(stat.traceback)}:",
            highlight=False,
        )
        for frame in list(reversed(stat.traceback))[:12]:
            console.print(f"    {where(frame)}", highlight=False)


async def main(
    side: str,
    count: int,
    concurrency: int,
    top: int,
    tracebacks: int,
    passthrough: str | None,
) -> None:
    async with local_servers(lambda document: None) as (pool, env):
        client = env.client
        if side == "ours":
            if passthrough:
                runner_worker.use_runner(f"passthrough:{passthrough}")
            worker = build_worker(client, pool, QUEUE)
            open_one, opened = opportunity_opener(client, pool, QUEUE)
        else:
            worker = Worker(
                client,
                task_queue=QUEUE,
                workflows=[BareCommands],
                activities=[bare_effect],
                max_cached_workflows=count + WARM_UP + 100,
                workflow_runner=workflow_runner(),  # as ours
            )
            open_one, opened = bare_opener(client, QUEUE)
        async with worker:
            await in_batches(side, 0, WARM_UP, 20, open_one)
            await asyncio.sleep(3)
            gc.collect()
            tracemalloc.start(FRAMES)
            before = tracemalloc.take_snapshot()
            rss_before = rss_kb("self")
            await in_batches(side, WARM_UP, count, concurrency, open_one)
            while True:
                if await opened() >= WARM_UP + count:
                    break
                await asyncio.sleep(1)
            await asyncio.sleep(5)
            gc.collect()
            after = tracemalloc.take_snapshot()
            rss_after = rss_kb("self")
            tracemalloc.stop()
    console.print(
        f"{side}: {count} workflows, RSS of this process grew "
        f"{(rss_after - rss_before) / count:.1f} KiB per workflow (tracing included)"
    )
    show(before, after, count, top, tracebacks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=("ours", "bare"), default="ours")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument(
        "--concurrency", type=int, default=8, help="opened at a time (8: tracing is slow)"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--tracebacks", type=int, default=5, help="print the N biggest in full")
    parser.add_argument("--passthrough", metavar="MODULES")
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.side,
            arguments.count,
            arguments.concurrency,
            arguments.top,
            arguments.tracebacks,
            arguments.passthrough,
        )
    )
