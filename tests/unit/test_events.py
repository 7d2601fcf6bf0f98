"""The events of what commands change, in the pure core: one per thing, numbered without gaps,
their values cut short where they are long."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sales import core, stage_rules
from sales.commands import AddRemark, ChangeStage, CompleteActions, ModifyActivity, UpdateDetails
from sales.events import MAX_VALUE, OpportunityEvent
from sales.opportunity import Opportunity
from sales.registry import LookedUp
from tests.unit.test_core_actions import T0, completed, opened


async def _no_effect(effect: object) -> object:
    raise AssertionError("no side effect with an outcome here")


def test_events_are_numbered_and_keep_short_values_whole() -> None:
    state = opened()
    moved = completed(core.run(state, ChangeStage(stage="Proposal", reason="quote", by="ann",
                                                  cancel_open_activities=False),
                               LookedUp(), _no_effect, lambda: T0))  # type: ignore[arg-type]  # fmt: skip
    [event] = [e for e in moved.writes.events if e.type == "stage_changed"]
    assert event.data == {"from": "Prospect", "to": "Proposal", "source": "manual",
                          "reason": "quote", "by": "ann"}  # fmt: skip
    long = "x" * (MAX_VALUE + 50)
    remarked = completed(core.run(moved.state, AddRemark(text=long), LookedUp(), _no_effect,
                                  lambda: T0))  # type: ignore[arg-type]  # fmt: skip
    [remark] = remarked.writes.events
    assert remark.type == "remark_added" and remark.data["seq"] == "1"
    assert remark.data["text"] is not None and len(remark.data["text"]) == MAX_VALUE
    detailed = completed(core.run(remarked.state, UpdateDetails(probability=55), LookedUp(),
                                  _no_effect, lambda: T0))  # type: ignore[arg-type]  # fmt: skip
    seqs = [e.seq for o in (moved, remarked, detailed) for e in o.writes.events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert detailed.writes.events[-1].data == {"what": "probability", "from": "60", "to": "55",
                                               "by": None}  # fmt: skip


async def _fire_until(
    state: Opportunity, until: datetime
) -> tuple[Opportunity, list[OpportunityEvent]]:
    """The timers fired as the shell fires them (each at its deadline) until `until`."""
    events: list[OpportunityEvent] = []
    while (deadline := core.next_deadline(state)) is not None and deadline <= until:
        decision = core.fire_timers(state, deadline)
        assert decision is not None, "a deadline that passes fires"
        outcome = await core.carry_out(decision, _no_effect, lambda: deadline)  # type: ignore[arg-type]
        state = outcome.state
        events += outcome.writes.events
    return state, events


def test_an_activity_falls_due_a_day_before_and_is_overdue_once_it_starts_undone() -> None:
    state = opened()
    [call] = [a for a in stage_rules.every_active_activity(state)]
    starts = call.activity_starts_at
    assert starts is not None and starts - timedelta(days=1) > T0
    state, early = asyncio.run(_fire_until(state, starts - timedelta(days=1, seconds=1)))
    assert [e.type for e in early] == []
    state, events = asyncio.run(_fire_until(state, starts + timedelta(days=30)))
    assert [(e.type, e.at) for e in events] == [
        ("activity_due", starts - timedelta(days=1)), ("activity_overdue", starts),
    ]  # fmt: skip
    assert events[0].data == {"activity_id": call.activity_id, "due": starts.isoformat(),
                              "by": None}  # fmt: skip
    assert core.next_deadline(state) is None or core.next_deadline(state) > starts, "once each"

    # Moved to a new time: both notices again, for the new time.
    later = starts + timedelta(days=10)
    modified = completed(core.run(state, ModifyActivity(activity_id=call.activity_id,
                                                        due=later),
                                  LookedUp(), _no_effect, lambda: starts))  # type: ignore[arg-type]  # fmt: skip
    state, again = asyncio.run(_fire_until(modified.state, later + timedelta(days=1)))
    assert [e.type for e in again] == ["activity_due", "activity_overdue"]
    assert [e.seq for e in again] == [events[-1].seq + n for n in (2, 3)], "after the change's"


def test_a_done_activity_is_never_overdue() -> None:
    state = opened()
    [call] = stage_rules.every_active_activity(state)
    complete = CompleteActions(action_ids=[call.action_id], outcome="Interested")
    done = completed(core.run(state, complete, LookedUp(), _no_effect,
                              lambda: T0))  # type: ignore[arg-type]  # fmt: skip
    _, events = asyncio.run(_fire_until(done.state, T0 + timedelta(days=365)))
    assert not [e for e in events if e.type in ("activity_due", "activity_overdue")]
