"""Every applied command gives change records (what, from, to, who, when, why) through the
core's one call, `core.run`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sales import core
from sales.commands import (
    AddRemark,
    Assign,
    ChangeOwner,
    ChangeStage,
    Command,
    ModifyAction,
    PerformActions,
)
from sales.effects import CreateCalendarActivity, EffectOutcome, PerformEffect
from sales.registry import LookedUp
from tests.unit.test_core_actions import T0, opened


async def _perform(effect: PerformEffect) -> EffectOutcome:
    if isinstance(effect, CreateCalendarActivity):
        return EffectOutcome(status="created", activity_id=effect.activity_id)
    return EffectOutcome(status="sent")


def _run(command: Command, looked_up: LookedUp | None = None) -> core.Outcome:
    state = opened()
    return asyncio.run(
        core.run(state, command, looked_up or LookedUp(), _perform, lambda: T0 + timedelta(1))
    )


def _records(command: Command, looked_up: LookedUp | None = None) -> list[tuple[object, ...]]:
    return [(r.what, r.from_, r.to, r.by, r.why) for r in _run(command, looked_up).records]


def test_a_stage_change_records_the_stage_with_who_and_why() -> None:
    outcome = _run(ChangeStage(stage="Proposal", reason="asked for it", by="ann"))
    stage = next(r for r in outcome.records if r.what == "stage")
    assert (stage.from_, stage.to, stage.by, stage.why) == (
        "Prospect", "Proposal", "ann", "asked for it")  # fmt: skip
    assert stage.at == T0 + timedelta(1) and stage.command == "change_stage"
    assert stage.model_dump(by_alias=True)["from"] == "Prospect"


def test_each_kind_of_change_is_recorded() -> None:
    users = LookedUp(users=frozenset({"bob"}))
    assert _records(ChangeOwner(owner="bob", by="ann"), users) == [
        ("owner", None, "bob", "ann", None)
    ]
    assert _records(Assign(role="agent", user="bob"), users) == [
        ("team:agent", None, "bob", None, None)
    ]
    assert _records(AddRemark(text="called back")) == [("remark", None, "called back", None, None)]
    assert _records(PerformActions(action_ids=["welcome-letter"])) == [
        ("action:welcome-letter", "open", "completed", None, None)
    ]
    changed = ModifyAction(action_id="welcome-letter", changes={"title": "Hello"})
    assert _records(changed) == [("modify_action", None, None, None, None)]


def test_a_duplicate_records_nothing() -> None:
    state = opened()
    command = AddRemark(text="once", request_id="r-1")
    clock = lambda: T0  # noqa: E731
    first = asyncio.run(core.run(state, command, LookedUp(), _perform, clock))
    again = asyncio.run(core.run(first.state, command, LookedUp(), _perform, clock))
    assert first.records and again.result.duplicate and again.records == []
