"""Advancing (step 4) end to end: stage change effects, automatic advance, outcomes, won and
lost, reopening, and durable stage timers."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.worker import Worker

import store.opportunities
from sales.commands import ChangeStage
from sales.errors import CommandRejected
from sales.opportunity import Opportunity
from starter.client import OpportunitiesClient
from store import calendar
from tests.support.helpers import eventually, example_definition, open_one
from worker import build_worker

pytestmark = pytest.mark.usefixtures("verified")

ADDRESS = {"street": "12 St James's Square", "postal_code": "SW1Y 4JH", "city": "London"}


async def activity_status(pool: asyncpg.Pool, activity_id: str | None) -> str | None:
    row = await calendar.get(pool, activity_id or "")
    return None if row is None else row.status


def linked(state: Opportunity, action_id: str) -> str | None:
    _, action = state.find_action(action_id) or (None, None)
    assert action is not None
    return action.activity_id


async def test_entering_a_stage_creates_its_activities_and_may_cancel_the_open_ones(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    opened = await opportunities.state(f"o-{uid}")
    intro = linked(opened, "intro-call")
    assert intro == f"o-{uid}/intro-call/1", "created on entry to the first stage"
    assert opened.history[0].created_activities == [intro]
    assert await activity_status(pool, intro) == "active"

    result = await opportunities.change_stage(
        f"o-{uid}", "Needs analysis", cancel_open_activities=True
    )
    [created] = result.actions
    assert (created.action_id, created.outcome) == ("fact-finder", "activity_created")
    assert result.created_activities == [created.activity_id]
    assert await activity_status(pool, intro) == "canceled"
    assert await activity_status(pool, created.activity_id) == "active"
    entry = (await opportunities.history(f"o-{uid}"))[-1]
    assert entry.canceled_activities == [intro]
    assert entry.created_activities == [created.activity_id]
    [row] = [
        r for r in await store.opportunities.get_history(pool, f"o-{uid}") if r.seq == entry.seq
    ]
    assert (row.canceled_activities, row.created_activities) == ([intro], [created.activity_id])

    # Not asked: the open activity of the stage left stays active.
    await opportunities.change_stage(f"o-{uid}", "Proposal")
    assert await activity_status(pool, created.activity_id) == "active"


async def test_a_process_that_forbids_cancelling_refuses_the_flag(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, process={"allow_cancel_activities": False})
    with pytest.raises(CommandRejected, match="does not allow cancelling activities"):
        await opportunities.change_stage(f"o-{uid}", "Proposal", cancel_open_activities=True)
    await opportunities.handle(f"o-{uid}").signal(
        "change_stage", {"stage": "Proposal", "cancel_open_activities": True}
    )
    state = await eventually(lambda: _with_rejection(opportunities, f"o-{uid}"))
    assert state.current_stage == "Prospect"
    assert "does not allow cancelling" in state.rejected[-1].reason
    assert await activity_status(pool, linked(state, "intro-call")) == "active"


async def _with_rejection(
    opportunities: OpportunitiesClient, opportunity_id: str
) -> Opportunity | None:
    state = await opportunities.state(opportunity_id)
    return state if state.rejected else None


async def test_completing_the_last_action_advances_through_the_process_to_won(
    worker: Worker,
    pool: asyncpg.Pool,
    client: Client,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    await open_one(pool, opportunities, uid, contact=ADDRESS)
    opp = f"o-{uid}"
    await opportunities.complete_actions(opp, ["intro-call"], outcome="Interested")
    await opportunities.perform_actions(opp, ["welcome-letter"])
    last = await opportunities.perform_actions(opp, ["seminar"])
    assert last.current_stage == "Needs analysis", "the last open action moved it on"
    assert "moved automatically from 'Prospect' to 'Needs analysis'" in last.message
    assert [a.outcome for a in last.actions] == ["invited", "activity_created"]

    state = await opportunities.state(opp)
    fact_finder = linked(state, "fact-finder")
    done = await opportunities.record_outcome(opp, fact_finder or "", outcome="Needs cover")
    assert done.current_stage == "Proposal"

    await opportunities.perform_actions(opp, ["proposal-letter"])
    review = await opportunities.perform_actions(opp, ["proposal-review"])
    assert review.current_stage == "Proposal"
    won = await opportunities.record_outcome(
        opp, review.actions[0].activity_id or "", outcome="Sale Made"
    )
    assert (won.current_stage, won.status) == ("Closed won", "won")

    history = await opportunities.history(opp)
    assert [(h.to_stage, h.source) for h in history if h.source != "note"] == [
        ("Prospect", "start"),
        ("Needs analysis", "automatic"),
        ("Proposal", "automatic"),
        ("Closed won", "outcome"),
    ]
    assert history[-1].reason == "Sale Made"
    noted = [(h.to_stage, h.reason) for h in history if h.source == "note"]
    assert noted[0] == ("Prospect", f"action:intro-call: performed → completed; activity:{opp}"
                        "/intro-call/1: active → done"), "a completion is noted in its stage"
    assert [stage for stage, _ in noted] == ["Prospect"] * 3 + ["Needs analysis"] + ["Proposal"] * 2
    handle = opportunities.handle(opp)
    result = await client.get_workflow_handle(handle.id, result_type=Opportunity).result()
    assert result.status == "won" and result.closed_at is not None
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    row = await store.opportunities.get_opportunity(pool, opp)
    assert row is not None and (row.status, row.current_stage) == ("won", "Closed won")
    assert row.closed_at is not None


async def test_the_last_open_stage_does_not_close_by_itself(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, stage="Proposal")
    result = await opportunities.complete_actions(
        f"o-{uid}", ["proposal-letter", "proposal-review"]
    )
    assert (result.current_stage, result.status) == ("Proposal", "open")


async def test_without_automatic_advance_the_stage_stays(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, process={"change_stage_automatically": False})
    result = await opportunities.complete_actions(
        f"o-{uid}", ["intro-call", "welcome-letter", "seminar"]
    )
    assert result.current_stage == "Prospect"


async def test_an_explicit_stage_wins_over_the_outcome_mapping(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    intro = linked(await opportunities.state(f"o-{uid}"), "intro-call")
    result = await opportunities.record_outcome(
        f"o-{uid}", intro or "", outcome="Reject Prospect", stage="Proposal"
    )
    assert (result.current_stage, result.status) == ("Proposal", "open")
    entry = (await opportunities.history(f"o-{uid}"))[-1]
    assert (entry.source, entry.reason) == ("outcome", "Reject Prospect")


async def test_lost_rejects_commands_and_reopen_starts_again(
    worker: Worker,
    pool: asyncpg.Pool,
    client: Client,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    await open_one(pool, opportunities, uid)
    opp = f"o-{uid}"
    intro = linked(await opportunities.state(opp), "intro-call")
    lost = await opportunities.record_outcome(opp, intro or "", outcome="Reject Prospect")
    assert (lost.current_stage, lost.status) == ("Closed lost", "lost")
    handle = opportunities.handle(opp)
    await eventually(lambda: _completed(handle))
    with pytest.raises(CommandRejected, match="is closed; reopen it"):
        await opportunities.change_stage(opp, "Proposal")
    with pytest.raises(CommandRejected, match="is closed; reopen it"):
        await opportunities.signal(opp, ChangeStage(stage="Proposal"))
    with pytest.raises(CommandRejected, match="reopen it in one of"):
        await opportunities.reopen(opp, "Closed won")

    reopened = await opportunities.reopen(opp, "Needs analysis", by="ann")
    assert (reopened.status, reopened.current_stage, reopened.closed_at) == (
        "open",
        "Needs analysis",
        None,
    )
    entry = reopened.history[-1]
    assert (entry.source, entry.from_stage, entry.to_stage, entry.by) == (
        "reopened",
        "Closed lost",
        "Needs analysis",
        "ann",
    )
    assert linked(reopened, "fact-finder") is not None, "entering a stage creates its activities"
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{handle.id}'")]
    statuses = sorted(run.status.name for run in runs if run.status is not None)
    assert statuses == ["COMPLETED", "FAILED", "RUNNING"], "the refused reopening failed at once"
    row = await store.opportunities.get_opportunity(pool, opp)
    assert row is not None and (row.status, row.closed_at) == ("open", None)
    with pytest.raises(CommandRejected, match="is open"):
        await opportunities.reopen(opp, "Prospect")
    moved = await opportunities.change_stage(opp, "Proposal")
    assert moved.current_stage == "Proposal"
    rows = await store.opportunities.get_history(pool, opp)
    assert [r.source for r in rows] == ["start", "outcome", "reopened", "manual"]


async def _completed(handle: WorkflowHandle[Any, Any]) -> bool:
    description = await handle.describe()
    return bool(description.status == WorkflowExecutionStatus.COMPLETED)


# --- stage timers: a "day" lasts a second here (OPPORTUNITIES_DAY_SECONDS) ---------------------


@pytest.fixture
def one_second_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPPORTUNITIES_DAY_SECONDS", "1")


def timed(follow_up: int | None = None, advance: int | None = None) -> dict[str, Any]:
    """Process changes putting timers on Prospect (follow-up) and Needs analysis (advance)."""
    stages = example_definition("timed")["stages"]
    if follow_up:
        stages[0]["follow_up_after_days"] = follow_up
    if advance:
        stages[1]["advance_after_days"] = advance
    return {"stages": stages}


async def test_follow_up_timer_creates_an_activity_when_the_stage_sits_idle(
    one_second_days: None,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    await open_one(pool, opportunities, uid, process=timed(follow_up=2), on_entry=False)
    state = await opportunities.state(f"o-{uid}")
    assert state.day_seconds == 1
    await asyncio.sleep(1.2)
    await opportunities.add_action(  # a command restarts the idle count
        f"o-{uid}", "Prospect", {"action_id": "x", "type": "event", "title": "x", "event_id": "e"}
    )
    await asyncio.sleep(1.2)
    assert linked(await opportunities.state(f"o-{uid}"), "x") is None
    assert not (await opportunities.state(f"o-{uid}")).find_action("follow-up-1")

    async def follow_up() -> Opportunity | None:
        state = await opportunities.state(f"o-{uid}")
        found = state.find_action("follow-up-1")
        return state if found and found[1].activity_id else None  # added, activity linked

    state = await eventually(follow_up, seconds=10)
    row = await calendar.get(pool, linked(state, "follow-up-1") or "")
    assert row is not None and (row.kind, row.status) == ("follow-up", "active")
    assert "2 days without activity in Prospect" in row.subject
    await asyncio.sleep(2.5)
    follow_ups = [
        a for a in (await opportunities.state(f"o-{uid}")).stage_state("Prospect").actions
        if a.action_id.startswith("follow-up-")
    ]  # fmt: skip
    assert len(follow_ups) == 1, "no second follow-up while the first is open"


async def test_advance_timer_moves_on_and_a_stage_change_cancels_it(
    one_second_days: None,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    await open_one(pool, opportunities, uid, process=timed(advance=2), on_entry=False)
    await opportunities.change_stage(f"o-{uid}", "Needs analysis")
    await asyncio.sleep(0.5)
    await opportunities.change_stage(f"o-{uid}", "Prospect")  # cancels the advance timer
    await asyncio.sleep(2.5)
    assert (await opportunities.state(f"o-{uid}")).current_stage == "Prospect"

    await opportunities.change_stage(f"o-{uid}", "Needs analysis")

    async def advanced() -> Opportunity | None:
        state = await opportunities.state(f"o-{uid}")
        return state if state.current_stage == "Proposal" else None

    state = await eventually(advanced, seconds=10)
    entry = state.history[-1]
    assert (entry.source, entry.reason) == ("automatic", "2 days in stage 'Needs analysis'")
    assert [h.source for h in state.history].count("automatic") == 1


async def test_a_timer_survives_a_worker_restart(
    one_second_days: None,
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    async with build_worker(client, pool, task_queue):
        await open_one(pool, opportunities, uid, process=timed(advance=2), on_entry=False)
        await opportunities.change_stage(f"o-{uid}", "Needs analysis")
    await asyncio.sleep(3)  # the timer fires on the server while no worker runs
    async with build_worker(client, pool, task_queue):

        async def advanced() -> bool:
            row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
            return row is not None and row.current_stage == "Proposal"

        await eventually(advanced, seconds=15)
        entry = (await opportunities.history(f"o-{uid}"))[-1]
        assert (entry.source, entry.to_stage) == ("automatic", "Proposal")
