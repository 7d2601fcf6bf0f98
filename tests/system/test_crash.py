"""Exactly once across a crash: the worker process is killed (SIGKILL) while a batch of perform
and complete commands is in flight, a new one is started, and every effect exists once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from temporalio.client import Client

from activities.letters import message_id_for
from runtime import embedded
from starter.client import OpportunitiesClient
from store import events
from store.search import SearchFilters
from tests.support.helpers import eventually, setup_contact, setup_process, setup_references
from tests.support.servers import Inbox, Servers
from tests.support.worker_process import WorkerProcess, worker_env
from workflows.mass_messages import MassModifyInput

pytestmark = pytest.mark.usefixtures("verified")

OPPORTUNITIES = 12


class SlowInbox(Inbox):
    """Holds each message a while before accepting it, so that sends are in flight when the
    worker dies; a message whose sender died is still delivered (as a real server would)."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        await asyncio.sleep(0.5)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_smtp() -> tuple[SlowInbox, str]:
    inbox = SlowInbox()
    port = embedded.free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, f"smtp://127.0.0.1:{port}"  # type: ignore[misc]
    controller.stop()


@pytest.fixture
async def worker_process(
    servers: Servers, task_queue: str, slow_smtp: tuple[SlowInbox, str], tmp_path: Path
) -> AsyncIterator[WorkerProcess]:
    env = worker_env(servers.temporal_address, servers.database_url, task_queue,
                     smtp_url=slow_smtp[1])  # fmt: skip
    worker = WorkerProcess.opportunities_worker(env, tmp_path / "worker.log")
    yield worker
    await worker.stop()


async def count(pool: asyncpg.Pool, table: str, uid: str) -> int:
    return int(
        await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE opportunity_id LIKE $1", f"o-{uid}-%"
        )
    )


async def test_sigkill_mid_batch_leaves_every_effect_exactly_once(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    worker_process: WorkerProcess,
    slow_smtp: tuple[SlowInbox, str],
    uid: str,
) -> None:
    inbox = slow_smtp[0]
    process_id = await setup_process(pool, uid)
    await setup_references(pool, uid)
    opportunities = OpportunitiesClient(client, task_queue)
    await worker_process.start()
    ids = []
    for index in range(OPPORTUNITIES):
        contact_id = await setup_contact(
            pool, f"{uid}-{index}", email=f"c{index}-{uid}@example.com"
        )
        opportunity_id = f"o-{uid}-{index}"
        await opportunities.create(contact_id, opportunity_id=opportunity_id, process_id=process_id)
        ids.append(opportunity_id)

    for opportunity_id in ids:
        handle = opportunities.handle(opportunity_id)
        await handle.signal("perform_actions", {"action_ids": ["intro-call"]})  # exists already
        await handle.signal("perform_actions", {"action_ids": ["welcome-letter", "seminar"]})
        # Completing the last open action of Prospect advances to Needs analysis by itself.
        await handle.signal("complete_actions", {"action_ids": ["intro-call"], "outcome": "Met"})

    await eventually(lambda: _at_least(inbox, 1), seconds=30)
    await worker_process.kill()
    moved = await pool.fetchval(
        "SELECT count(*) FROM opportunities WHERE opportunity_id LIKE $1"
        " AND current_stage = 'Needs analysis'",
        f"o-{uid}-%",
    )
    assert moved < OPPORTUNITIES, "the batch was still in flight when the worker died"

    await worker_process.start()

    async def finished() -> bool:
        done = await pool.fetchval(
            "SELECT count(*) FROM opportunities WHERE opportunity_id LIKE $1"
            " AND current_stage = 'Needs analysis'",
            f"o-{uid}-%",
        )
        return bool(done == OPPORTUNITIES)

    await eventually(finished, seconds=60)

    # intro-call's activity (created on entry, then done) and fact-finder's (created on entry
    # to Needs analysis), once each.
    statuses = await pool.fetch(
        "SELECT action_id, status, outcome, count(*) AS n FROM calendar_activities"
        " WHERE opportunity_id LIKE $1 GROUP BY 1, 2, 3 ORDER BY 1",
        f"o-{uid}-%",
    )
    assert [tuple(row) for row in statuses] == [
        ("fact-finder", "active", None, OPPORTUNITIES),
        ("intro-call", "done", "Met", OPPORTUNITIES),
    ]
    assert await count(pool, "letters", uid) == OPPORTUNITIES
    assert await count(pool, "event_invitees", uid) == OPPORTUNITIES
    assert len(await events.list_invitees(pool, f"seminar-{uid}")) == OPPORTUNITIES
    sources = await pool.fetch(
        "SELECT source, count(*) AS n FROM opportunity_history WHERE opportunity_id LIKE $1"
        " GROUP BY 1 ORDER BY 1",
        f"o-{uid}-%",
    )
    # Each: its start, a note per command (three), and the advance the last one caused.
    assert [tuple(row) for row in sources] == [
        ("automatic", OPPORTUNITIES), ("note", 3 * OPPORTUNITIES), ("start", OPPORTUNITIES),
    ]  # fmt: skip
    # A send cut off by the crash is repeated with the same Message-ID: every letter arrived,
    # and duplicates are recognisable as such.
    message_ids = {m["Message-ID"] for m in inbox.messages}
    assert message_ids == {message_id_for(f"{i}/welcome-letter/1") for i in ids}
    for opportunity_id in ids:
        state = await opportunities.state(opportunity_id)
        prospect = state.stage_state("Prospect")
        assert all(a.completed for a in prospect.actions), opportunity_id
        assert state.rejected == []


async def _at_least(inbox: Inbox, n: int) -> bool:
    return len(inbox.messages) >= n


async def test_sigkill_mid_mass_modification_changes_each_opportunity_once(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    worker_process: WorkerProcess,
    uid: str,
) -> None:
    process_id = await setup_process(pool, uid, on_entry=False)
    contact_id = await setup_contact(pool, uid)
    opportunities = OpportunitiesClient(client, task_queue)
    await worker_process.start()
    total = 80
    for start in range(0, total, 20):
        await asyncio.gather(
            *(
                opportunities.create(
                    contact_id, opportunity_id=f"o-{uid}-{i:03d}", process_id=process_id
                )
                for i in range(start, start + 20)
            )
        )
    batch = MassModifyInput(
        batch_id=f"k-{uid}",
        filters=SearchFilters(process_id=process_id),
        to_stage="Proposal",
        concurrency=10,
    )
    handle = await opportunities.start_mass_modify(batch)

    async def under_way() -> bool:
        return (await opportunities.mass_progress(batch.batch_id)).done >= 10

    await eventually(under_way, seconds=60)
    done_before = (await opportunities.mass_progress(batch.batch_id)).done
    await worker_process.kill()
    assert done_before < total, "the batch was under way when the worker died"
    await worker_process.start()
    report = await asyncio.wait_for(handle.result(), timeout=120)

    # Signals and answers are durable: each change is answered once, as applied.
    assert (report.done, report.changed, report.skipped, report.rejected) == (total, total, 0, 0)
    entries = await pool.fetch(
        "SELECT opportunity_id, count(*) AS n FROM opportunity_history"
        " WHERE opportunity_id LIKE $1 AND source = 'mass' GROUP BY 1",
        f"o-{uid}-%",
    )
    assert len(entries) == total and {row["n"] for row in entries} == {1}
