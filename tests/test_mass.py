"""Mass modification end to end: a frozen selection, every change through the opportunity's own
workflow exactly once, closed ones reported, a re-run changing nothing, and cancelling."""

from __future__ import annotations

import asyncio

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities import store
from activities.search import SearchFilters
from starter.client import OpportunitiesClient
from tests.helpers import eventually, setup_contact, setup_process, setup_references
from workflows.mass_messages import MassModifyInput, Progress

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
    ids = [f"m-{uid}-{i:04d}" for i in range(12)]
    batch = MassModifyInput(batch_id=f"o-{uid}", ids=[*ids, "nobody"], owner="carol")
    report = await (await opportunities.start_mass_modify(batch)).result()
    assert (report.changed, report.rejected) == (12, 1)
    assert report.outcomes[0].reason == "no opportunity 'nobody'"
    page = await opportunities.search(SearchFilters(owner="carol", ids=ids))
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
    moved = await store.get_opportunity(pool, f"m-{uid}-0000")
    assert moved is not None and moved.current_stage == "Needs analysis"
    count = await pool.fetchval(
        "SELECT count(*) FROM opportunities WHERE process_id = $1 AND current_stage = $2",
        process_id,
        "Needs analysis",
    )
    assert count == report.changed
