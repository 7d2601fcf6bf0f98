"""This service against the engine's own limit: a bare workflow on the same local server.

The bare workflow takes the same commands (as signals or updates) and runs one no-op
activity per batch of queued commands, as the Opportunity runs one projection write per
batch: the least a durable command with a side effect can cost. Each runs in a worker
process of its own (the real `opportunities-worker` and `bench.bare_worker`, with the same
workflow runner and cache), as production runs them, while this process only sends commands
and reads results; both in one run on the same servers. The table prints each figure and
the ratio. Ours writes each batch's projection by an activity task (it runs no local
activity: docs/decisions/no-local-activities.md); a second row shows the bare workflow
running its batches by local activity, the most a local activity could save.

    .venv/bin/python -m bench.engine [--commands 1000] [--starts 200] [--samples 100]
                                     [--long 20000] [--stream 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.client import Client

from bench.bare import BareCommands
from bench.servers import local_servers_and_url
from runtime.workflow_ids import opportunity_workflow_id
from sales.commands import ChangeOwner
from starter.client import OpportunitiesClient
from starter.client.verify import verify
from tests.support.worker_process import WorkerProcess, running, worker_env

QUEUE = "bench-engine"
BARE_QUEUE = "bench-bare"
SENDERS = 10
CACHE = 5000
"""Workflows each worker keeps cached (the service's default)."""


async def senders(count: int, send: Any) -> float:
    """Send `count` commands from SENDERS concurrent senders; return the seconds taken."""
    started = time.perf_counter()

    async def sender(first: int) -> None:
        for n in range(first, count, SENDERS):
            await send(n)

    await asyncio.gather(*(sender(s) for s in range(SENDERS)))
    return time.perf_counter() - started


async def until(check: Any) -> None:
    for _ in itertools.count():
        if await check():
            return
        await asyncio.sleep(0.05)


async def ours_per_second(
    client: Client, opportunities: OpportunitiesClient, count: int, how: str, tag: str
) -> tuple[float, float]:
    """`count` owner changes into one opportunity: (commands per s, history events each)."""
    opportunity_id = f"cmd-{tag}"
    await opportunities.create("c-bench", opportunity_id=opportunity_id, process_id="bench")
    started = time.perf_counter()

    async def ours(n: int) -> None:
        command = ChangeOwner(owner=f"o{n}", request_id=f"{tag}-{n}")
        if how == "signal":
            await opportunities.signal(opportunity_id, command)
        else:
            await opportunities.execute(opportunity_id, command)

    await senders(count, ours)

    async def all_ours() -> bool:
        return len((await opportunities.state(opportunity_id)).applied_request_ids) >= count

    await until(all_ours)
    seconds = time.perf_counter() - started
    events = await history_events(client, opportunity_workflow_id(opportunity_id))
    return count / seconds, events / count


async def bare_per_second(
    client: Client, count: int, how: str, tag: str, *, local: bool = False
) -> tuple[float, float]:
    """The same into the bare workflow (`local`: its batches by local activity)."""
    bare = await client.start_workflow(
        BareCommands.run, local, id=f"bare-{tag}", task_queue=BARE_QUEUE
    )
    started = time.perf_counter()

    async def theirs(n: int) -> None:
        command = {"owner": f"o{n}", "request_id": f"{tag}-{n}"}
        if how == "signal":
            await bare.signal("command", command)
        else:
            await bare.execute_update("command", command)

    await senders(count, theirs)

    async def all_theirs() -> bool:
        return bool(await bare.query("done") >= count)

    await until(all_theirs)
    seconds = time.perf_counter() - started
    events = await history_events(client, f"bare-{tag}")
    await bare.terminate("benchmark done")
    return count / seconds, events / count


async def history_events(client: Client, workflow_id: str) -> int:
    """History events in every run of one workflow."""
    return sum(await run_lengths(client, workflow_id))


async def run_lengths(client: Client, workflow_id: str) -> list[int]:
    """The history length of each run of one workflow."""
    lengths = []
    async for run in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        history = await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        lengths.append(len(history.events))
    return lengths


async def long_run(
    client: Client, opportunities: OpportunitiesClient, pool: Any, count: int
) -> tuple[int, int, int, str, str]:
    """`count` commands into one opportunity: (runs, longest run's history length, events
    in all runs, what went wrong, and how it ended). What went wrong: the longest run's
    failed workflow tasks by cause, past five. How it ended: the signals the server refused
    (a run that stopped continuing as new refuses them past its 10,000th), how long after the
    storm an update was answered, and whether the workflow and the read model agree."""
    await opportunities.create("c-bench", opportunity_id="long", process_id="bench")
    refused: Counter[str] = Counter()

    async def send(n: int) -> None:
        try:
            await opportunities.signal("long", ChangeOwner(owner=f"o{n}", request_id=f"long-{n}"))
        except Exception as error:  # refused: the sender knows; counted, and the storm goes on
            refused[f"{type(error).__name__}: {error}"] += 1

    await senders(count, send)
    ended = time.perf_counter()
    outcome = ""
    try:
        # An update queues behind every signal already received: when it returns, all are
        # applied.
        await opportunities.execute(
            "long", ChangeOwner(owner="final", request_id="long-final"), busy_seconds=300
        )
        outcome = f"answered {time.perf_counter() - ended:.1f} s after the storm"
    except Exception as error:
        outcome = f"no answer after the storm: {type(error).__name__}: {error}"
    verdict = await verify(opportunities, pool, "long")
    outcome += (
        "; read model agrees"
        if verdict.compared and not verdict.differences
        else (f"; read model differs: {verdict.differences[:3]} {verdict.note}")
    )
    if refused:
        outcome = f"{sum(refused.values())} signals refused ({dict(refused)}); " + outcome
    lengths: list[int] = []
    failed: Counter[str] = Counter()
    async for run in client.list_workflows("WorkflowId = 'opportunity-long'"):
        history = await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        if len(history.events) > max(lengths, default=0):
            failed = Counter(
                WorkflowTaskFailedCause.Name(event.workflow_task_failed_event_attributes.cause)
                for event in history.events
                if event.HasField("workflow_task_failed_event_attributes")
            )
        lengths.append(len(history.events))
    trouble = (
        f"longest run's failed workflow tasks: {dict(failed)}" if sum(failed.values()) > 5 else ""
    )
    return len(lengths), max(lengths), sum(lengths), trouble, outcome


SLOW_CALL = 0.5
"""An update call slower than this (seconds) counts as held up."""


async def update_stream(
    client: Client, opportunities: OpportunitiesClient, count: int
) -> list[tuple[str, str, str, str]]:
    """`count` updates into one opportunity from SENDERS senders, each sending its next as
    soon as the last is answered, so that updates are always in flight while runs continue as
    new; then the same into the bare workflow, which never continues as new and so meets the
    server's limit of 2,000 updates per run. Rows: runs, longest run, updates/s, calls held
    up (an update racing a continue-as-new is retried on the next run about a second later),
    and what the bare workflow's stream came to."""
    await opportunities.create("c-bench", opportunity_id="stream", process_id="bench")
    calls: list[float] = []

    async def ours(n: int) -> None:
        started = time.perf_counter()
        await opportunities.execute("stream", ChangeOwner(owner=f"o{n}", request_id=f"st-{n}"))
        calls.append(time.perf_counter() - started)

    seconds = await senders(count, ours)
    lengths = await run_lengths(client, opportunity_workflow_id("stream"))
    held = sorted(c for c in calls if c > SLOW_CALL)
    bare = await client.start_workflow(BareCommands.run, id="bare-stream", task_queue=BARE_QUEUE)
    refused: list[str] = []

    async def theirs(n: int) -> None:
        try:
            await bare.execute_update("command", {"owner": f"o{n}", "request_id": f"st-{n}"})
        except Exception as error:
            refused.append(str(getattr(error, "message", error)))

    await senders(count, theirs)
    await bare.terminate("benchmark done")
    held_text = f"{len(held)}, {held[0]:.1f}-{held[-1]:.1f} s" if held else "0"
    bare_text = f"{count - len(refused)} applied, {len(refused)} refused"
    rows = [
        (f"{count} updates into one opportunity: runs", f"{len(lengths)}", "", ""),
        ("  longest run's history (events)", f"{max(lengths)}", "", ""),
        ("  updates/s", f"{count / seconds:.0f}", "", ""),
        (f"  calls over {SLOW_CALL} s", held_text, "", ""),
        ("  bare workflow (never continues as new)", "", bare_text, ""),
    ]
    if refused:
        rows.append(("  bare refused with", refused[0][:60], "", ""))
    return rows


async def starts_per_second(
    client: Client, opportunities: OpportunitiesClient, pool: Any, count: int
) -> tuple[float, float]:
    """Opportunities opened (process loaded, projection written) against bare workflows
    started and through their first activity, `count` each, 50 at a time."""
    started = time.perf_counter()
    for first in range(0, count, 50):
        await asyncio.gather(*(
            client.start_workflow(
                "Opportunity", {"opportunity_id": f"s-{n}", "contact_id": "c-bench",
                                "process_id": "bench"},
                id=opportunity_workflow_id(f"s-{n}"), task_queue=QUEUE,
            )
            for n in range(first, min(first + 50, count))
        ))  # fmt: skip

    async def all_open() -> bool:
        rows = await pool.fetchval(
            "SELECT count(*) FROM opportunities WHERE opportunity_id LIKE 's-%'"
        )
        return bool(rows >= count)

    await until(all_open)
    ours = count / (time.perf_counter() - started)

    started = time.perf_counter()
    handles = []
    for first in range(0, count, 50):
        handles += await asyncio.gather(*(
            client.start_workflow(BareCommands.run, id=f"bare-start-{n}", task_queue=BARE_QUEUE)
            for n in range(first, min(first + 50, count))
        ))  # fmt: skip
        await asyncio.gather(*(h.signal("command", {"n": 0}) for h in handles[first:]))

    async def all_done() -> bool:
        done = await asyncio.gather(*(h.query("done") for h in handles))
        return all(d >= 1 for d in done)

    await until(all_done)
    bare = count / (time.perf_counter() - started)
    return ours, bare


async def perform_latency(opportunities: OpportunitiesClient, samples: int) -> list[float]:
    """From the `perform_actions` update's call to its return, which comes after the calendar
    row (and the projection) are committed."""
    latencies = []
    for n in range(samples):
        await opportunities.create("c-bench", opportunity_id=f"p-{n}", process_id="bench")
        started = time.perf_counter()
        await opportunities.perform_actions(f"p-{n}", ["intro-call"])
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def no_activity_on_entry(document: dict[str, Any]) -> None:
    for stage in document["stages"]:
        for action in stage.get("actions", []):
            action.pop("create_activity_on_entry", None)


async def main(commands: int, starts: int, samples: int, long: int, stream: int) -> None:
    async with local_servers_and_url(no_activity_on_entry, owners=20_000) as (pool, env, url):
        client = env.client
        address = client.service_client.config.target_host
        # The runner as this shell sets it (default: no sandbox), the same for both sides.
        sandbox = os.environ.get("OPPORTUNITIES_WORKFLOW_SANDBOX", "off").lower() == "on"
        with tempfile.TemporaryDirectory() as logs:
            ours_worker = WorkerProcess(
                [str(Path(sys.executable).parent / "opportunities-worker")],
                worker_env(address, url, QUEUE, CACHE, sandbox),
                Path(logs) / "ours.log",
            )
            bare_worker = WorkerProcess(
                [sys.executable, "-m", "bench.bare_worker"],
                worker_env(address, url, BARE_QUEUE, CACHE, sandbox),
                Path(logs) / "bare.log",
            )
            async with running(ours_worker), running(bare_worker):
                rows = await measure(client, pool, commands, starts, samples, long, stream)
    print(f"{'figure':<48} {'ours':>12} {'bare':>8} {'ratio':>6}")
    for name, ours_text, bare_text, ratio in rows:
        print(f"{name:<48} {ours_text:>12} {bare_text:>8} {ratio:>6}")


async def measure(
    client: Client, pool: Any, commands: int, starts: int, samples: int, long: int, stream: int
) -> list[tuple[str, str, str, str]]:
    opportunities = OpportunitiesClient(client, QUEUE)
    rows: list[tuple[str, str, str, str]] = []
    for how in ("signal", "update"):
        ours, per_command = await ours_per_second(client, opportunities, commands, how, how)
        bare, bare_per_command = await bare_per_second(client, commands, how, how)
        local, _ = await bare_per_second(client, commands, how, f"{how}-local", local=True)
        rows.append((f"commands/s into one workflow by {how}", f"{ours:.0f}",
                     f"{bare:.0f}", f"{ours / bare:.2f}"))  # fmt: skip
        rows.append(("  bare batches by local activity instead", "",
                     f"{local:.0f}", f"{ours / local:.2f}"))  # fmt: skip
        rows.append((f"history events per command ({how})", f"{per_command:.1f}",
                     f"{bare_per_command:.1f}", ""))  # fmt: skip
    ours, bare = await starts_per_second(client, opportunities, pool, starts)
    rows.append(("starts/s", f"{ours:.1f}", f"{bare:.1f}", f"{ours / bare:.2f}"))
    latencies = sorted(await perform_latency(opportunities, samples))
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    median = statistics.median(latencies)
    rows.append(("perform_actions by update, median / p99 ms",
                 f"{median:.0f} / {p99:.0f}", "", ""))  # fmt: skip
    if stream:
        rows += await update_stream(client, opportunities, stream)
    if long:
        runs, longest, total, trouble, outcome = await long_run(client, opportunities, pool, long)
        rows.append((f"{long} commands into one opportunity: runs", f"{runs}", "", ""))
        rows.append(("  longest run's history (events)", f"{longest}", "", ""))
        rows.append(("  events per command", f"{total / long:.2f}", "", ""))
        if trouble:
            rows.append(("  went wrong", trouble, "", ""))
        rows.append(("  how it ended", outcome, "", ""))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument(
        "--long", type=int, default=20000, help="N signals into one opportunity (0: skip)"
    )
    parser.add_argument(
        "--stream", type=int, default=3000, help="N updates into one opportunity (0: skip)"
    )
    arguments = parser.parse_args()
    asyncio.run(
        main(arguments.commands, arguments.starts, arguments.samples, arguments.long,
             arguments.stream)
    )  # fmt: skip
