"""A signal storm: 1,000 commands to one opportunity from 50 concurrent senders, across
several continue-as-new. Every command is applied exactly once, in order per sender."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from sales.commands import ChangeOwner
from starter.client import OpportunitiesClient
from tests.support.helpers import add_users, eventually, start_continuing_early

pytestmark = pytest.mark.usefixtures("verified")

SENDERS = 50
UPDATERS = 25
EACH = 20


async def test_a_thousand_commands_from_fifty_senders(
    worker: Worker,
    client: Client,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    task_queue: str,
    uid: str,
) -> None:
    opportunity_id = f"storm-{uid}"
    await add_users(pool, *(f"s{n:02d}-{i:02d}" for n in range(SENDERS) for i in range(EACH)))
    await start_continuing_early(client, pool, uid, opportunity_id, task_queue, 300)

    async def sender(n: int) -> None:
        """Half send updates (more than the server's default of 10 in flight per workflow: the
        client resends those refused), half signal; each resends its 5th command."""
        for i in range(EACH):
            command = ChangeOwner(owner=f"s{n:02d}-{i:02d}", request_id=f"s{n:02d}-{i:02d}")
            if n >= UPDATERS:
                await opportunities.signal(opportunity_id, command)
            else:
                await opportunities.execute(opportunity_id, command)
            if i == 5:
                await opportunities.signal(opportunity_id, command)  # a retry: applied once

    await asyncio.gather(*(sender(n) for n in range(SENDERS)))

    async def all_applied() -> list[str] | None:
        state = await opportunities.state(opportunity_id)
        ids = state.applied_request_ids
        return ids if len(ids) == SENDERS * EACH else None

    applied = await eventually(all_applied, seconds=120)
    assert len(set(applied)) == len(applied) == SENDERS * EACH, "each applied exactly once"
    for n in range(SENDERS):
        mine = [r for r in applied if r.startswith(f"s{n:02d}-")]
        assert mine == [f"s{n:02d}-{i:02d}" for i in range(EACH)], f"sender {n} out of order"
    state = await opportunities.state(opportunity_id)
    assert state.owner == applied[-1] and not state.rejected
    runs = [r async for r in client.list_workflows(f"WorkflowId = 'opportunity-{opportunity_id}'")]
    assert len(runs) >= 3, f"continued as new only {len(runs) - 1} times"
    row = await pool.fetchrow(
        "SELECT owner, revision FROM opportunities WHERE opportunity_id = $1", opportunity_id
    )
    assert row["owner"] == applied[-1]


STREAM_SENDERS = 10
STREAM_EACH = 40
STREAM_RUN_EVENTS = 200


async def test_a_steady_stream_of_updates_continues_as_new_while_it_lasts(
    worker: Worker,
    client: Client,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    task_queue: str,
    uid: str,
) -> None:
    """Ten senders each send their next update as soon as the last is answered, so some are
    always in flight. A run must still continue as new near its event limit (each accepted
    update is answered first); a run that waited for a gap in the stream would take the whole
    stream, and past 2,000 updates the server would refuse the rest."""
    opportunity_id = f"stream-{uid}"
    await add_users(pool, *(f"u{n}-{i:02d}" for n in range(STREAM_SENDERS)
                            for i in range(STREAM_EACH)))  # fmt: skip
    await start_continuing_early(client, pool, uid, opportunity_id, task_queue, STREAM_RUN_EVENTS)

    async def sender(n: int) -> None:
        for i in range(STREAM_EACH):
            command = ChangeOwner(owner=f"u{n}-{i:02d}", request_id=f"u{n}-{i:02d}")
            result = await opportunities.execute(opportunity_id, command)
            assert not result.duplicate and result.request_id == command.request_id

    await asyncio.gather(*(sender(n) for n in range(STREAM_SENDERS)))

    state = await opportunities.state(opportunity_id)
    applied = state.applied_request_ids
    assert len(set(applied)) == len(applied) == STREAM_SENDERS * STREAM_EACH
    for n in range(STREAM_SENDERS):
        mine = [r for r in applied if r.startswith(f"u{n}-")]
        assert mine == [f"u{n}-{i:02d}" for i in range(STREAM_EACH)], f"sender {n} out of order"

    async def closed_runs() -> list[int] | None:
        """The closed runs' history lengths once visibility (written asynchronously) shows
        at least four (about six are expected)."""
        query = f"WorkflowId = 'opportunity-{opportunity_id}' AND ExecutionStatus != 'Running'"
        lengths = [r.history_length async for r in client.list_workflows(query)]
        return sorted(lengths) if len(lengths) >= 4 else None

    lengths = await eventually(closed_runs, seconds=10)
    assert lengths[0] >= STREAM_RUN_EVENTS, f"a run continued before its limit: {lengths}"
    assert lengths[-1] <= 2 * STREAM_RUN_EVENTS, f"runs outlived their limit: {lengths}"
