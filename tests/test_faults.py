"""Faults with exact counts at the end: nothing lost, nothing doubled.

Three worker processes on one task queue take 500 mixed commands over 50 opportunities; one
is killed with SIGKILL mid-run and the other two finish the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client

from starter.client import OpportunitiesClient
from tests.conftest import Servers
from tests.helpers import eventually, setup_contact, setup_process, setup_references
from tests.test_crash import WorkerProcess

OPPORTUNITIES = 50


def script(uid: str) -> list[tuple[str, dict[str, Any]]]:
    """Ten commands per opportunity, as signals in this order, each with a request id; the
    fifth is sent twice (a client retry)."""
    commands: list[tuple[str, dict[str, Any]]] = [
        ("change_owner", {"owner": "ann"}),
        ("perform_actions", {"action_ids": ["welcome-letter", "seminar"]}),
        # The last open action of Prospect: the opportunity advances to Needs analysis,
        # where fact-finder's activity is created on entry.
        ("complete_actions", {"action_ids": ["intro-call"], "outcome": "Met"}),
        ("change_owner", {"owner": "bob"}),
        ("change_stage", {"stage": "Proposal"}),
        ("change_stage", {"stage": "Proposal"}),  # the same request again
        ("add_action", {"stage": "Proposal", "action": {
            "action_id": "x", "type": "calendar", "title": "Extra", "activity": {"kind": "call"}}}),
        ("perform_actions", {"action_ids": ["x"]}),
        ("complete_actions", {"action_ids": ["x"], "outcome": "Done"}),
        ("change_owner", {"owner": "carol"}),
        ("change_owner", {"owner": "dave"}),
    ]  # fmt: skip
    numbered = []
    for n, (name, payload) in enumerate(commands):
        number = n if n < 5 else n - 1  # the repeat keeps the fifth's request id
        numbered.append((name, {**payload, "request_id": f"{uid}-{number}"}))
    return numbered


@pytest.fixture
async def workers(
    servers: Servers, task_queue: str, tmp_path: Path
) -> AsyncIterator[list[WorkerProcess]]:
    processes = [
        WorkerProcess(servers, task_queue, "", tmp_path / f"worker-{n}.log") for n in range(3)
    ]
    yield processes
    for process in processes:
        await process.stop()


async def test_three_workers_one_killed_mid_run(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    workers: list[WorkerProcess],
    uid: str,
) -> None:
    process_id = await setup_process(pool, uid)
    await setup_references(pool, uid)
    contact_id = await setup_contact(
        pool, uid, street="1 Main St", postal_code="10001", city="Springfield"
    )
    opportunities = OpportunitiesClient(client, task_queue)
    for worker in workers:
        await worker.start()
    ids = [f"f-{uid}-{n:02d}" for n in range(OPPORTUNITIES)]
    for start in range(0, OPPORTUNITIES, 25):
        await asyncio.gather(*(
            opportunities.create(contact_id, opportunity_id=i, process_id=process_id)
            for i in ids[start:start + 25]
        ))  # fmt: skip

    async def send_all(opportunity_id: str) -> None:
        handle = opportunities.handle(opportunity_id)
        for name, payload in script(opportunity_id):
            await handle.signal(name, payload)

    sending = asyncio.gather(*(send_all(i) for i in ids))

    async def under_way() -> bool:
        done = await pool.fetchval(
            "SELECT count(*) FROM opportunity_history WHERE opportunity_id LIKE $1 AND seq > 1",
            f"f-{uid}-%",
        )
        return bool(done >= 20)

    async def finished_count() -> int:
        return int(
            await pool.fetchval(
                "SELECT count(*) FROM opportunities WHERE opportunity_id LIKE $1"
                " AND owner = 'dave'",
                f"f-{uid}-%",
            )
        )

    await eventually(under_way, seconds=60)
    await workers[0].kill()
    assert await finished_count() < OPPORTUNITIES, "the work was under way when it died"
    await sending

    async def finished() -> bool:
        return await finished_count() == OPPORTUNITIES

    await eventually(finished, seconds=180)

    for opportunity_id in ids:
        state = await opportunities.state(opportunity_id)
        assert state.applied_request_ids == [f"{opportunity_id}-{n}" for n in range(10)]
        assert state.current_stage == "Proposal" and state.rejected == []
    history = await pool.fetch(
        "SELECT source, to_stage, count(*) AS n FROM opportunity_history"
        " WHERE opportunity_id LIKE $1 GROUP BY 1, 2 ORDER BY 1, 2",
        f"f-{uid}-%",
    )
    assert [tuple(r) for r in history] == [
        ("automatic", "Needs analysis", OPPORTUNITIES),
        ("manual", "Proposal", OPPORTUNITIES),
        ("start", "Prospect", OPPORTUNITIES),
    ]
    activities = await pool.fetch(
        "SELECT action_id, status, outcome, count(*) AS n FROM calendar_activities"
        " WHERE opportunity_id LIKE $1 GROUP BY 1, 2, 3 ORDER BY 1",
        f"f-{uid}-%",
    )
    assert [tuple(r) for r in activities] == [
        ("fact-finder", "active", None, OPPORTUNITIES),
        ("intro-call", "done", "Met", OPPORTUNITIES),
        ("x", "done", "Done", OPPORTUNITIES),
    ]
    letters = await pool.fetchval(
        "SELECT count(*) FROM letters WHERE opportunity_id LIKE $1", f"f-{uid}-%"
    )
    assert letters == OPPORTUNITIES
    # One contact for all fifty: invited once, the other 49 told it is already invited.
    invited = await pool.fetchval(
        "SELECT count(*) FROM event_invitees WHERE opportunity_id LIKE $1", f"f-{uid}-%"
    )
    assert invited == 1
