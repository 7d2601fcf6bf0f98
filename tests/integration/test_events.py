"""The outbox of opportunity events: one event per thing a command changed, numbered per
opportunity, written with what it describes; read in commit order, so that a row committed
late is read after, never skipped; `opportunities feed`."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from temporalio.worker import Worker

from sales.events import OpportunityEvent
from starter.client import OpportunitiesClient
from starter.client.read_model import ReadModel
from store import outbox
from store.opportunities import insert_events
from tests.support.helpers import add_users, eventually, open_one
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")


async def _events(pool: asyncpg.Pool, opportunity_id: str) -> list[OpportunityEvent]:
    return (await ReadModel(pool).events(opportunity_id=opportunity_id, limit=1000)).events


async def test_every_change_is_an_event_once_in_order(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, process={"outcome_stages": {}})
    opp = f"o-{uid}"
    await add_users(pool, "bob")
    await opportunities.perform_actions(opp, ["welcome-letter"])
    await opportunities.record_outcome(opp, f"{opp}/intro-call/1", outcome="Interested")
    await opportunities.change_stage(opp, "Proposal", reason="wants a quote", by="ann",
                                     cancel_open_activities=False)  # fmt: skip
    await opportunities.change_owner(opp, "bob")
    await opportunities.assign(opp, "agent", "bob")
    await opportunities.add_remark(opp, "call after six")
    await opportunities.update_details(opp, amount=1000, probability=70)
    await opportunities.change_stage(opp, "Closed lost", reason="price")
    await opportunities.reopen(opp, "Proposal")

    async def all_written() -> list[OpportunityEvent] | None:
        found = await _events(pool, opp)
        return found if found and found[-1].type == "reopened" else None

    events = await eventually(all_written)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "numbered, no gap"
    assert len({e.event_id for e in events}) == len(events)
    types = [e.type for e in events]
    assert types == [
        "action_failed",  # the letter: the test's contact has no address
        "action_completed", "activity_done",  # the outcome recorded
        "stage_changed",  # Prospect to Proposal
        "owner_changed", "team_changed", "remark_added",
        "details_changed", "details_changed",  # amount, probability
        "stage_changed", "lost",
        "stage_changed", "reopened",
    ], "\n".join(f"{e.seq} {e.type} {e.data}" for e in events)  # fmt: skip
    moved = events[types.index("stage_changed")]
    expected = {"from": "Prospect", "to": "Proposal", "source": "manual",
                "reason": "wants a quote", "by": "ann"}  # fmt: skip
    assert {key: moved.data.get(key) for key in expected} == expected

    shown = await cli("feed", "--opportunity", opp, "--type", "stage_changed,lost", "--json")
    assert shown.code == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if line.strip()]
    assert len(lines) == 4, shown.stdout
    bad = await cli("feed", "--type", "exploded")
    assert bad.code == 1 and "unknown event type 'exploded'" in bad.stderr


async def test_a_row_committed_late_is_read_after_never_skipped(
    pool: asyncpg.Pool, uid: str
) -> None:
    def event(n: int) -> OpportunityEvent:
        return OpportunityEvent(
            event_id=f"late-{uid}/{n}", type="stage_changed", opportunity_id=f"late-{uid}",
            seq=n, at=datetime.now(UTC),
        )  # fmt: skip

    read = await outbox.read(pool, opportunity_id=f"late-{uid}")
    cursor = read.cursor
    first, second = await pool.acquire(), await pool.acquire()
    try:
        early = first.transaction()
        await early.start()
        await insert_events(first, [event(1)])  # the older transaction
        async with second.transaction():
            await insert_events(second, [event(2)])  # commits first
        seen = await outbox.read(pool, after=cursor, opportunity_id=f"late-{uid}")
        assert seen.events == [], "nothing read while an older transaction runs"
        await early.commit()
    finally:
        await pool.release(first)
        await pool.release(second)
    both = await outbox.read(pool, after=cursor, opportunity_id=f"late-{uid}")
    assert [e.seq for e in both.events] == [1, 2]
    again = await outbox.read(pool, after=both.cursor, opportunity_id=f"late-{uid}")
    assert again.events == [], "the cursor moves past what was read"
    async with pool.acquire() as conn:
        await insert_events(conn, [event(1)])  # a retried write
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM opportunity_events WHERE opportunity_id = $1", f"late-{uid}"
        )
        == 2
    )


async def test_a_status_from_another_system_moves_the_opportunity_and_is_an_event(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    mapping = {"external_status_stages": {"in underwriting": "Proposal", "issued": "Closed won"}}
    await open_one(pool, opportunities, uid, process=mapping)
    opp = f"o-{uid}"
    kept = await cli("external-status", opp, "--source", "policy", "--reference", "P-77",
                     "--status", "received", "--keep-open-activities")  # fmt: skip
    assert kept.code == 2, "no such option: the command asks nothing"
    kept = await cli("external-status", opp, "--source", "policy", "--reference", "P-77",
                     "--status", "received")  # fmt: skip
    assert kept.code == 0, kept.stderr
    assert (await opportunities.state(opp)).current_stage == "Prospect"
    moved = await opportunities.record_external_status(opp, "policy", "P-77", "in underwriting")
    assert moved.current_stage == "Proposal"
    won = await opportunities.record_external_status(opp, "policy", "P-77", "issued")
    assert won.status == "won"

    async def written() -> list[OpportunityEvent] | None:
        found = await _events(pool, opp)
        return found if found and found[-1].type in ("won", "external_status") else None

    events = await eventually(written)
    external = [e for e in events if e.type == "external_status"]
    assert [(e.data["reference"], e.data["status"]) for e in external] == [
        ("P-77", "received"),
        ("P-77", "in underwriting"),
        ("P-77", "issued"),
    ]
    history = await opportunities.history(opp)
    assert [h.source for h in history][-2:] == ["external", "external"]
