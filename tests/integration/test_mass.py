"""Mass modification end to end: a frozen selection, every change through the opportunity's own
workflow exactly once, closed ones reported, a re-run changing nothing, and cancelling."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

import store.opportunities
from sales.commands import ChangeStage
from starter.client import OpportunitiesClient
from starter.client.read_model import ReadModel
from store import users
from store.search import SearchFilters
from tests.support.helpers import eventually, setup_contact, setup_process, setup_references
from workflows.mass_messages import MassModifyInput, Progress

pytestmark = pytest.mark.usefixtures("verified")

COUNT = 150


async def open_many(
    pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str, count: int
) -> str:
    process_id = await setup_process(pool, uid, on_entry=False)
    await setup_references(pool, uid)
    contact_id = await setup_contact(pool, uid)
    for start in range(0, count, 25):
        await asyncio.gather(
            *(
                opportunities.create(
                    contact_id, opportunity_id=f"m-{uid}-{i:04d}", process_id=process_id
                )
                for i in range(start, min(start + 25, count))
            )
        )
    return process_id


async def test_a_batch_changes_each_opportunity_once_and_reports_the_rest(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await open_many(pool, opportunities, uid, COUNT)
    for i in range(5):
        await opportunities.change_stage(f"m-{uid}-{i:04d}", "Closed lost")
    for i in range(5, 10):
        await opportunities.change_stage(f"m-{uid}-{i:04d}", "Proposal")

    batch = MassModifyInput(
        batch_id=f"b-{uid}",
        filters=SearchFilters(process_id=process_id),
        to_stage="Proposal",
        by="ops",
        concurrency=25,
    )
    handle = await opportunities.start_mass_modify(batch)
    report = await handle.result()
    assert (report.total, report.done) == (COUNT, COUNT)
    assert (report.changed, report.skipped, report.rejected) == (COUNT - 10, 5, 5)
    rejected = {o.opportunity_id for o in report.outcomes if o.result == "rejected"}
    assert rejected == {f"m-{uid}-{i:04d}" for i in range(5)}
    assert all("is closed" in o.reason for o in report.outcomes if o.result == "rejected")
    assert report.finished and not report.canceled

    rows = await pool.fetch(
        "SELECT source, by, count(*) AS n FROM opportunity_history"
        " WHERE opportunity_id LIKE $1 AND source = 'mass' GROUP BY 1, 2",
        f"m-{uid}-%",
    )
    assert [tuple(r) for r in rows] == [("mass", "ops", COUNT - 10)], "one entry each"

    # The same batch again: every change is acknowledged as already applied.
    again = await (await opportunities.start_mass_modify(batch)).result()
    assert (again.changed, again.skipped, again.rejected) == (0, COUNT - 5, 5)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM opportunity_history"
            " WHERE opportunity_id LIKE $1 AND source = 'mass'",
            f"m-{uid}-%",
        )
        == COUNT - 10
    )
    progress = await opportunities.mass_progress(f"b-{uid}")
    assert progress.finished and progress.done == COUNT


async def test_owner_changes_and_the_selection_is_frozen(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_many(pool, opportunities, uid, 12)
    await users.put_user(pool, users.User(user_id="carol", name="Carol"))
    ids = [f"m-{uid}-{i:04d}" for i in range(12)]
    batch = MassModifyInput(batch_id=f"o-{uid}", ids=[*ids, "nobody"], owner="carol")
    report = await (await opportunities.start_mass_modify(batch)).result()
    assert (report.changed, report.rejected) == (12, 1)
    assert report.outcomes[0].reason == "no opportunity 'nobody'"
    page = await ReadModel(pool).search(SearchFilters(owner="carol", ids=ids))
    assert page.total == 12


async def test_cancelling_a_batch_keeps_what_was_changed(
    worker: Worker,
    pool: asyncpg.Pool,
    client: Client,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    process_id = await open_many(pool, opportunities, uid, 40)
    batch = MassModifyInput(
        batch_id=f"c-{uid}",
        filters=SearchFilters(process_id=process_id),
        to_stage="Needs analysis",
        concurrency=1,
    )
    handle = await opportunities.start_mass_modify(batch)

    async def some_done() -> bool:
        return (await opportunities.mass_progress(f"c-{uid}")).done >= 3

    await eventually(some_done)
    await handle.cancel()
    report: Progress = await handle.result()
    assert report.canceled and 3 <= report.done < 40
    moved = await store.opportunities.get_opportunity(pool, f"m-{uid}-0000")
    assert moved is not None and moved.current_stage == "Needs analysis"
    count = await pool.fetchval(
        "SELECT count(*) FROM opportunities WHERE process_id = $1 AND current_stage = $2",
        process_id,
        "Needs analysis",
    )
    assert count == report.changed


async def test_a_large_batch_continues_as_new_and_changes_each_once(
    worker: Worker, pool: asyncpg.Pool, client: Client, opportunities: OpportunitiesClient, uid: str
) -> None:
    count = 60
    process_id = await open_many(pool, opportunities, uid, count)
    batch = MassModifyInput(
        batch_id=f"n-{uid}",
        filters=SearchFilters(process_id=process_id),
        to_stage="Proposal",
        concurrency=7,
        continue_as_new_after_events=100,
    )
    handle = await opportunities.start_mass_modify(batch)
    report = await handle.result()
    assert (report.total, report.changed, report.rejected) == (count, count, 0)
    runs = [run async for run in client.list_workflows(f"WorkflowId = 'mass-modify-n-{uid}'")]
    assert len(runs) >= 3, "continued as new at least twice"
    rows = await pool.fetchval(
        "SELECT count(*) FROM opportunity_history WHERE opportunity_id LIKE $1 AND source = 'mass'",
        f"m-{uid}-%",
    )
    assert rows == count


async def test_an_opportunity_that_never_answers_is_swept_not_waited_for(
    worker: Worker, pool: asyncpg.Pool, client: Client, opportunities: OpportunitiesClient, uid: str
) -> None:
    """One opportunity runs on a task queue nobody polls: it takes the signal and never
    answers. The batch checks it after the silence, sends again (still running), and reports
    it as rejected once an operator terminates it; the others are changed meanwhile."""
    await open_many(pool, opportunities, uid, 3)
    await users.put_user(pool, users.User(user_id="dana", name="Dana"))
    silent = await client.start_workflow(
        "Opportunity",
        {"opportunity_id": f"s-{uid}", "contact_id": "nobody"},
        id=f"opportunity-s-{uid}",
        task_queue=f"nobody-polls-{uid}",
    )
    ids = [f"m-{uid}-{i:04d}" for i in range(3)]
    batch = MassModifyInput(
        batch_id=f"s-{uid}", ids=[*ids, f"s-{uid}"], owner="dana", answer_timeout_seconds=1
    )
    handle = await opportunities.start_mass_modify(batch)

    async def others_done() -> bool:
        progress = await opportunities.mass_progress(f"s-{uid}")
        return progress.changed == 3

    await eventually(others_done)
    signals = 0

    async def sent_again() -> bool:
        nonlocal signals
        history = await silent.fetch_history()
        signals = sum(
            1 for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
        )
        return signals >= 2

    await eventually(sent_again)
    assert (await opportunities.mass_progress(f"s-{uid}")).done == 3, "still waiting for it"
    await silent.terminate("operator gave up")
    report = await handle.result()
    assert (report.changed, report.rejected) == (3, 1)
    assert report.outcomes[0].reason == f"opportunity 's-{uid}' is not running (terminated)"


async def test_an_answer_nobody_waits_for_does_not_hold_up_the_opportunity(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_many(pool, opportunities, uid, 1)
    opportunity_id = f"m-{uid}-0000"
    await opportunities.signal(
        opportunity_id, ChangeStage(stage="Proposal", reply_to=f"gone-{uid}")
    )
    result = await opportunities.change_stage(opportunity_id, "Needs analysis")
    assert result.current_stage == "Needs analysis"
    history = await opportunities.history(opportunity_id)
    assert [entry.to_stage for entry in history][-2:] == ["Proposal", "Needs analysis"]
