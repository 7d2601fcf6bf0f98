"""What an opportunity is worth and how long it sits, through the workflow and the read model:
its value at opening and by `update_details`, the probability following the stage until set by
hand, a loss's reason from the process's list, the won amount, time in each stage, idleness and
the detail changes kept."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal

import asyncpg
import pytest
from temporalio.worker import Worker

from sales.errors import CommandRejected
from starter.client import OpportunitiesClient
from store import opportunities as stored
from tests.support.helpers import eventually, example_definition, open_one

pytestmark = pytest.mark.usefixtures("verified")

REASONS = {
    "lost_reasons": ["Price", "Timing"], "default_lost_reason": "Timing",
    "outcome_stages": {"Sale Made": "Closed won", "Reject Prospect": "Closed lost"},
}  # fmt: skip


async def _row(pool: asyncpg.Pool, opportunity_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT * FROM opportunities WHERE opportunity_id = $1", opportunity_id
    )
    assert row is not None
    return row


async def test_value_opens_changes_and_reaches_the_read_model(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    stages = example_definition("x")["stages"]
    stages[0]["probability"], stages[2]["probability"] = 10, 60
    stages[2]["forecast_category"] = "best_case"
    close = date(2027, 3, 31)
    await open_one(pool, opportunities, uid, process={"stages": stages, **REASONS},
                   amount="250000.50", currency="EUR", expected_close_date=close)  # fmt: skip
    opportunity_id = f"o-{uid}"
    state = await opportunities.state(opportunity_id)
    assert (state.amount, state.currency, state.probability) == (Decimal("250000.50"), "EUR", 10)
    assert state.forecast_category == "pipeline"

    await opportunities.change_stage(opportunity_id, "Proposal")
    state = await opportunities.state(opportunity_id)
    assert (state.probability, state.forecast_category) == (60, "best_case"), "follows the stage"
    await opportunities.update_details(opportunity_id, probability=75, amount=300000, by="ann")
    await opportunities.change_stage(opportunity_id, "Needs analysis")
    state = await opportunities.state(opportunity_id)
    assert state.probability == 75, "set by hand, it stays"
    await opportunities.update_details(opportunity_id, probability=None, name="Renamed")
    state = await opportunities.state(opportunity_id)
    assert state.probability == 30 and state.name == "Renamed", "cleared: the stage's again"

    for bad in [{"amount": "12.345"}, {"currency": "usd"}, {"probability": 101},
                {"forecast_category": "maybe"}, {"amount": 12.5}, {"amount": "-1"}]:  # fmt: skip
        with pytest.raises((CommandRejected, ValueError)):
            await opportunities.update_details(opportunity_id, **bad)
    with pytest.raises(CommandRejected, match="give one of the reasons") as refused:
        await opportunities.change_stage(opportunity_id, "Closed lost", reason="Bad luck")
    assert refused.value.code == "unknown_reason"
    await opportunities.change_stage(opportunity_id, "Closed lost", reason="Price")

    async def written() -> asyncpg.Record | None:
        row = await _row(pool, opportunity_id)
        return row if row["status"] == "lost" else None

    row = await eventually(written)
    assert (row["amount"], row["currency"], row["close_reason"]) == (
        Decimal("300000"),
        "EUR",
        "Price",
    )
    assert row["expected_close_date"] == date(2027, 3, 31)
    history = await pool.fetch(
        "SELECT seq, to_stage, at, left_at, duration_seconds FROM opportunity_history"
        " WHERE opportunity_id = $1 ORDER BY seq",
        opportunity_id,
    )
    assert [h["to_stage"] for h in history] == [
        "Prospect",
        "Proposal",
        "Needs analysis",
        "Closed lost",
    ]
    for entry, following in itertools.pairwise(history):
        assert entry["left_at"] == following["at"], "each stay ends where the next begins"
        assert entry["duration_seconds"] == int(following["at"].timestamp()) - int(
            entry["at"].timestamp()
        )
    assert history[-1]["left_at"] is None, "the stay that runs has no end"
    changes = await stored.detail_changes(pool, opportunity_id)
    assert [(c.what, c.from_value, c.to_value, c.by) for c in changes] == [
        ("amount", "250000.50", "300000", "ann"),
        ("probability", "60", "75", "ann"),
        ("probability", "75", "30", None),
        ("name", "Ada Lovelace", "Renamed", None),
    ]


async def test_an_outcome_that_loses_takes_the_default_reason_and_winning_keeps_the_amount(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, process=REASONS, amount=1000, currency="JPY")
    opportunity_id = f"o-{uid}"
    with pytest.raises(CommandRejected, match="JPY has 0"):
        await opportunities.update_details(opportunity_id, amount="1000.5")
    state = await opportunities.state(opportunity_id)
    [activity] = [a.activity_id for s in state.stages for a in s.actions if a.activity_id]
    assert activity is not None
    await opportunities.record_outcome(opportunity_id, activity, outcome="Reject Prospect")
    closed = await opportunities.state(opportunity_id)
    assert (closed.status, closed.close_reason) == ("lost", "Timing")
    await opportunities.reopen(opportunity_id, "Proposal")
    await opportunities.change_stage(opportunity_id, "Closed won")
    won = await opportunities.state(opportunity_id)
    assert won.won_amount == Decimal("1000") and won.expected_close_date == won.closed_at.date()  # type: ignore[union-attr]
    assert won.close_reason is None


async def test_an_opportunity_goes_idle_and_a_command_wakes_it(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("OPPORTUNITIES_DAY_SECONDS", "1")
    stages = example_definition("x")["stages"]
    stages[0]["idle_after_days"] = 2
    await open_one(pool, opportunities, uid, process={"stages": stages})
    opportunity_id = f"o-{uid}"

    async def idle() -> asyncpg.Record | None:
        row = await _row(pool, opportunity_id)
        return row if row["idle_since"] is not None else None

    await eventually(idle)
    await opportunities.add_remark(opportunity_id, "called back")

    async def awake() -> bool:
        return (await _row(pool, opportunity_id))["idle_since"] is None

    await eventually(awake)
    await eventually(idle)
