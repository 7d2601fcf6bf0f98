"""Mass modification end to end: a frozen selection, every change through the opportunity's own
workflow exactly once, closed ones reported, a re-run changing nothing, and cancelling; a
batch moving each opportunity to its own next stage."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

import store.opportunities
from sales.commands import ChangeStage
from starter.client import OpportunitiesClient, OpportunityNotFound
from starter.client.read_model import ReadModel
from store import users
from store.search import SearchFilters
from tests.support.helpers import (
    eventually,
    open_many,
    open_one,
)
from tests.support.servers import Cli
from workflows.mass_messages import MassModifyInput, Progress

pytestmark = pytest.mark.usefixtures("verified")

COUNT = 150


async def test_a_batch_changes_each_opportunity_once_and_reports_the_rest(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id, _ = await open_many(pool, opportunities, uid, COUNT)
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
    process_id, _ = await open_many(pool, opportunities, uid, 40)
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
    process_id, _ = await open_many(pool, opportunities, uid, count)
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


# --- each to its own next stage ---------------------------------------------------------


async def move_by_hand(opportunities: OpportunitiesClient, stages: dict[str, list[str]]) -> None:
    """Move the opportunities given per stage to that stage (the others stay in Prospect)."""
    for stage, opportunity_ids in stages.items():
        await asyncio.gather(*(opportunities.change_stage(i, stage) for i in opportunity_ids))


async def current_stages(pool: asyncpg.Pool, ids: list[str]) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT opportunity_id, current_stage FROM opportunities"
        " WHERE opportunity_id = ANY($1::text[])",
        ids,
    )
    return {row["opportunity_id"]: row["current_stage"] for row in rows}


async def test_a_next_stage_batch_moves_each_from_its_own_stage(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    """Three in Prospect, three in Needs analysis, one in Proposal (followed by a closing
    stage: skipped), one won (its workflow has ended: skipped)."""
    process_id, _ = await open_many(pool, opportunities, uid, 8)
    ids = [f"m-{uid}-{i:04d}" for i in range(8)]
    proposal, won = ids[6], ids[7]
    await move_by_hand(
        opportunities, {"Needs analysis": ids[3:6], "Proposal": [proposal], "Closed won": [won]}
    )
    await opportunities.handle(won).result()  # won: its workflow ends
    batch = MassModifyInput(
        batch_id=f"x-{uid}", filters=SearchFilters(process_id=process_id), to_next_stage=True,
        by="ops",
    )  # fmt: skip
    report = await (await opportunities.start_mass_modify(batch)).result()
    assert (report.total, report.changed, report.skipped, report.rejected) == (8, 6, 2, 0)
    outcomes = {o.opportunity_id: (o.result, o.code) for o in report.outcomes}
    assert outcomes == {proposal: ("skipped", "no_next_stage"), won: ("skipped", "closed")}
    expected = {
        **dict.fromkeys(ids[:3], "Needs analysis"),
        **dict.fromkeys(ids[3:7], "Proposal"),
        won: "Closed won",
    }
    assert await current_stages(pool, ids) == expected
    for opportunity_id, stage in expected.items():
        if opportunity_id != won:
            assert (await opportunities.state(opportunity_id)).current_stage == stage
    rows = await pool.fetch(
        "SELECT from_stage, to_stage, by, count(*) AS n FROM opportunity_history"
        " WHERE opportunity_id LIKE $1 AND source = 'mass' GROUP BY 1, 2, 3 ORDER BY 1 DESC",
        f"m-{uid}-%",
    )
    assert [tuple(r) for r in rows] == [
        ("Prospect", "Needs analysis", "ops", 3),
        ("Needs analysis", "Proposal", "ops", 3),
    ]

    # The same batch again: each one moved is acknowledged, none moves twice.
    again = await (await opportunities.start_mass_modify(batch)).result()
    assert (again.changed, again.skipped, again.rejected) == (0, 8, 0)
    assert await current_stages(pool, ids) == expected


async def test_a_next_stage_batch_carries_the_pending_stages_across_continue_as_new(
    worker: Worker, pool: asyncpg.Pool, client: Client, opportunities: OpportunitiesClient, uid: str
) -> None:
    count = 60
    process_id, _ = await open_many(pool, opportunities, uid, count)
    ids = [f"m-{uid}-{i:04d}" for i in range(count)]
    later = ids[count // 2 :]
    await move_by_hand(opportunities, {"Needs analysis": later})
    selected = {i: "Needs analysis" if i in later else "Prospect" for i in ids}
    batch = MassModifyInput(
        batch_id=f"y-{uid}",
        filters=SearchFilters(process_id=process_id),
        to_next_stage=True,
        concurrency=7,
        continue_as_new_after_events=100,
    )
    handle = await opportunities.start_mass_modify(batch)
    report = await handle.result()
    assert (report.total, report.changed, report.skipped, report.rejected) == (count, count, 0, 0)
    assert await current_stages(pool, ids) == {
        i: "Proposal" if i in later else "Needs analysis" for i in ids
    }
    assert handle.first_execution_run_id is not None
    inputs = await run_inputs(client, handle.id, handle.first_execution_run_id)
    assert len(inputs) >= 3, "continued as new at least twice"
    assert inputs[0]["remaining"] is None and inputs[0]["selected_stages"] is None
    for carried in inputs[1:]:
        assert carried["remaining"], carried
        assert carried["selected_stages"] == {i: selected[i] for i in carried["remaining"]}
    assert len(inputs[-1]["remaining"]) < len(inputs[1]["remaining"])


async def run_inputs(client: Client, workflow_id: str, run_id: str) -> list[dict[str, Any]]:
    """The start input of each run of a workflow from run `run_id` on, following its
    continue-as-new chain."""
    inputs = []
    while run_id:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        events = [event async for event in handle.fetch_history_events()]
        started = events[0].workflow_execution_started_event_attributes
        inputs.append(json.loads(started.input.payloads[0].data))
        run_id = events[
            -1
        ].workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return inputs


async def test_mass_modify_to_next_stage_from_the_command_line(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await open_one(pool, opportunities, uid)  # o-<uid>: its intro call is open
    await opportunities.create(f"c-{uid}", opportunity_id=f"o1-{uid}", process_id=process_id)
    await opportunities.change_stage(f"o1-{uid}", "Needs analysis")
    for chosen in [
        ("--to-stage", "Proposal", "--to-next-stage"),
        ("--to-next-stage", "--owner", "ann"),
        ("--to-stage", "Proposal", "--to-next-stage", "--owner", "ann"),
        (),
    ]:
        refused = await cli("mass-modify", "--process", process_id, *chosen, "--yes",
                            "--batch-id", f"x-{uid}")  # fmt: skip
        assert refused.code == 1, refused
        assert refused.stderr.strip() == (
            "error: give exactly one of --to-stage, --to-next-stage and --owner"
        )
    with pytest.raises(OpportunityNotFound):
        await opportunities.mass_progress(f"x-{uid}")  # nothing started

    asked = await cli("mass-modify", "--process", process_id, "--to-next-stage")
    assert asked.code == 1
    assert "Move 2 opportunities each to its next stage? Answer with --yes" in asked.stderr
    done = await cli("mass-modify", "--process", process_id, "--to-next-stage",
                     "--cancel-open-activities", "--yes", "--batch-id", f"n-{uid}",
                     "--json")  # fmt: skip
    assert done.code == 0, done.stderr
    report = Progress.model_validate(done.json())
    assert (report.total, report.changed, report.skipped, report.rejected) == (2, 2, 0, 0)
    moved = await opportunities.state(f"o-{uid}")
    assert moved.current_stage == "Needs analysis"
    [intro] = [a for a in moved.stage_state("Prospect").actions if a.action_id == "intro-call"]
    assert intro.activity_status == "canceled"
    assert (await opportunities.state(f"o1-{uid}")).current_stage == "Proposal"
