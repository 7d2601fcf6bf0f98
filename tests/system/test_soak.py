"""A soak: one opportunity takes 2,000 remarks of the largest size and 2,000 other commands,
from senders that each wait for their last answer, across continue-as-new. Its state stays
within its budget: the `state` query and `show` answer throughout, every remark reaches the
read model, the read model agrees, and every run replays as it ran."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from sales.commands import AddRemark, ChangeOwner, ChangeStage, Command
from sales.errors import CommandRejected
from sales.validation import MAX_NOTES
from starter.client import OpportunitiesClient
from store import opportunities as store_opportunities
from tests.support.helpers import add_users, eventually, is_open, start_continuing_early
from tests.support.servers import Cli
from workflows.opportunity import OpportunityWorkflow

pytestmark = pytest.mark.usefixtures("verified")

REMARKS = 2000
OTHERS = 2000
SENDERS = 12
LARGEST = "字" * (MAX_NOTES - 10)
"""A remark of the largest size, three bytes a character."""


def command(n: int) -> Command:
    """The n-th command: every other one a remark, the rest owner and stage changes."""
    if n % 2 == 0:
        return AddRemark(text=f"{n:05d} {LARGEST}", request_id=f"r{n}")
    if n % 4 == 1:
        return ChangeOwner(owner=f"u{n % 7}", request_id=f"o{n}")
    return ChangeStage(stage=["Proposal", "Prospect"][n % 8 == 3], request_id=f"s{n}")


async def test_remarks_of_the_largest_size_keep_the_state_small(
    worker: Worker,
    client: Client,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    cli: Cli,
    task_queue: str,
    uid: str,
) -> None:
    opportunity_id = f"soak-{uid}"
    await add_users(pool, *(f"u{n}" for n in range(7)))
    handle = await start_continuing_early(client, pool, uid, opportunity_id, task_queue, 1000)
    first_run = (await handle.describe()).run_id

    await eventually(lambda: is_open(opportunities, opportunity_id))
    total = REMARKS + OTHERS
    sent = 0

    async def sender(k: int) -> None:
        nonlocal sent
        for n in range(k, total, SENDERS):
            try:
                await opportunities.execute(opportunity_id, command(n), busy_seconds=300)
            except CommandRejected as rejected:  # senders interleave: already so, at times
                assert rejected.code in ("already_owned", "already_in_stage"), rejected
            sent += 1

    async def watcher() -> int:
        """The state query (every second) and `show` (every fifth) answer while the commands
        arrive."""
        looks = 0
        while sent < total:
            state = await opportunities.state(opportunity_id)
            assert len(state.remarks) <= 5 and len(state.history) <= 100
            if looks % 5 == 0:
                shown = await cli("show", opportunity_id, "--json")
                assert shown.code == 0, shown.stderr
            looks += 1
            await asyncio.sleep(1)
        return looks

    watching = asyncio.create_task(watcher())
    await asyncio.gather(*(sender(k) for k in range(SENDERS)))
    looks = await watching
    assert looks >= 3

    async def all_applied() -> bool:
        state = await opportunities.state(opportunity_id)
        return state.remarks_added == REMARKS and not state.rejected

    await eventually(all_applied, seconds=300)
    assert (await handle.describe()).run_id != first_run, "it continued as new"
    # Queried all along while it took updates, every run replays as it ran (a worker that
    # restarts replays them): no local activity whose result a query moved to a later task
    # (docs/decisions/no-local-activities.md).
    replayer = Replayer(workflows=[OpportunityWorkflow], data_converter=pydantic_data_converter)
    runs = [e.run_id async for e in client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert len(runs) >= 3
    for run_id in runs:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        await replayer.replay_workflow(history)
    remarks = await store_opportunities.list_remarks(pool, opportunity_id, limit=10_000)
    assert [r.seq for r in remarks] == list(range(REMARKS, 0, -1))
    assert {r.text[:5] for r in remarks} == {f"{n:05d}" for n in range(0, total, 2)}
    shown = await cli("show", opportunity_id, "--json")
    assert shown.code == 0 and len(shown.json()["remarks"]) == 5
