"""Mass modification against Temporal's own batch signal, side by side on one local server.

N opportunities are opened. Temporal's batch operation (`temporal workflow signal --query ...
--name change_stage`) moves them all Prospect -> Needs analysis, then `MassModify` moves the
same N on to Proposal. Both moves have the same effects in each opportunity (history entry,
projection, one calendar activity created on entry, search attributes); each is timed until
every projection row shows the new stage. MassModify goes second, on the longer histories.
Prints both times and their ratio.

    .venv/bin/python -m bench.mass_modify [--opportunities 2000] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.servers import local_servers
from runtime import embedded
from starter.client import OpportunitiesClient
from store.search import SearchFilters
from worker import build_worker
from workflows.mass_messages import MassModifyInput


async def wait_for_stage(pool, stage: str, count: int) -> None:
    while True:
        done = await pool.fetchval(
            "SELECT count(*) FROM opportunities WHERE process_id = 'bench' AND current_stage = $1",
            stage,
        )
        if done >= count:
            return
        await asyncio.sleep(0.2)


def one_activity_on_entry(document: dict[str, Any]) -> None:
    """One calendar activity on entering each of the two stages moved into."""
    document["change_stage_automatically"] = False
    for stage in document["stages"]:
        for action in stage.get("actions", []):
            if action["type"] == "calendar":
                action["create_activity_on_entry"] = action["action_id"] in (
                    "fact-finder", "proposal-review"
                )  # fmt: skip


async def main(count: int, concurrency: int) -> None:
    async with local_servers(one_activity_on_entry) as (pool, env):
        async with build_worker(env.client, pool, "bench"):
            client = OpportunitiesClient(env.client, "bench")
            started = time.perf_counter()
            for first in range(0, count, 50):
                await asyncio.gather(*(
                    client.create("c-bench", opportunity_id=f"b-{i:05d}", process_id="bench")
                    for i in range(first, min(first + 50, count))
                ))  # fmt: skip
            opened = time.perf_counter() - started
            print(f"opened {count} opportunities in {opened:.1f} s ({count / opened:.0f}/s)",
                  flush=True)  # fmt: skip

            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                embedded.temporal_binary(), "workflow", "signal",
                "--address", env.client.service_client.config.target_host,
                "--query", "WorkflowType = 'Opportunity' AND ExecutionStatus = 'Running'",
                "--name", "change_stage", "--input", '{"stage": "Needs analysis"}',
                "--reason", "bench", "--yes",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            await process.wait()
            await wait_for_stage(pool, "Needs analysis", count)
            batch_signal = time.perf_counter() - started
            print(f"temporal batch signal: {count} changed in {batch_signal:.1f} s "
                  f"({count / batch_signal:.0f}/s)", flush=True)  # fmt: skip

            started = time.perf_counter()
            batch = MassModifyInput(
                batch_id="bench-1",
                filters=SearchFilters(process_id="bench"),
                to_stage="Proposal",
                concurrency=concurrency,
            )
            handle = await client.start_mass_modify(batch)
            report = await handle.result()
            await wait_for_stage(pool, "Proposal", count)
            mass = time.perf_counter() - started
            runs = [r async for r in env.client.list_workflows(f"WorkflowId = '{handle.id}'")]
            print(f"MassModify: {report.changed} changed in {mass:.1f} s ({count / mass:.0f}/s), "
                  f"{len(runs)} runs", flush=True)  # fmt: skip
            print(f"ratio MassModify / Temporal batch signal: {mass / batch_signal:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.opportunities, arguments.concurrency))
