"""Every collection of an opportunity's state keeps its bound by its rule (eviction or
refusal), and a state with every collection at its bound, every text at its length, still
fits what a run may carry once trimmed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sales import core, stage_rules
from sales.commands import AddAction, AddRemark, ChangeStage, DeleteAction, ModifyAction
from sales.errors import CommandRejected
from sales.opportunity import (
    MAX_HISTORY,
    MAX_REMARKS,
    MAX_RETIRED,
    EffectFailure,
    Opportunity,
    Rejection,
)
from sales.validation import MAX_ACTIONS, MAX_ACTIONS_PER_STAGE, MAX_NOTES, json_size
from tests.support.core import T0, opened
from workflows.continue_as_new import CARRIED_BUDGET


def apply(state: Opportunity, command: object) -> Opportunity:
    return core.apply(state, command, T0).state  # type: ignore[arg-type]


def letter(action_id: str) -> dict[str, object]:
    return {"action_id": action_id, "type": "letter", "title": "T", "template": "welcome"}


def test_remarks_keep_the_newest_and_number_every_one() -> None:
    state = opened()
    for n in range(2000):
        decision = core.apply(state, AddRemark(text=f"{n} " + "字" * (MAX_NOTES - 10)), T0)
        state = decision.state
    assert [r.seq for r in state.remarks] == list(range(2001 - MAX_REMARKS, 2001))
    assert state.remarks_added == 2000
    [effect] = decision.effects
    assert effect.remark.seq == 2000, "every remark goes to the read model"  # type: ignore[union-attr]


def test_history_keeps_the_newest_and_numbers_on() -> None:
    state = opened()
    for n in range(3 * MAX_HISTORY):
        state = apply(state, ChangeStage(stage=["Proposal", "Prospect"][n % 2]))
    assert len(state.history) == MAX_HISTORY
    assert [e.seq for e in state.history] == list(range(2 * MAX_HISTORY + 2, 3 * MAX_HISTORY + 2))
    assert core.replay_history(state.history) == state.current_stage
    assert state.visited_stages() == ["Prospect", "Proposal"]


def test_forgotten_generations_are_never_reused() -> None:
    state = opened()
    generations: dict[str, int] = {}
    for n in range(MAX_RETIRED + 50):
        action_id = f"x-{n}"
        state = apply(state, AddAction.model_validate({"stage": "Prospect",
                                                        "action": letter(action_id)}))  # fmt: skip
        found = state.find_action(action_id)
        assert found is not None
        found[1].generation += 3  # as if performed three times
        generations[action_id] = found[1].generation
        state = apply(state, DeleteAction(action_id=action_id))
    assert len(state.retired_generations) == MAX_RETIRED
    assert state.retired_floor >= 3
    for action_id in ("x-0", f"x-{MAX_RETIRED + 49}"):  # forgotten, and remembered
        again = apply(state, AddAction.model_validate({"stage": "Prospect",
                                                        "action": letter(action_id)}))  # fmt: skip
        found = again.find_action(action_id)
        assert found is not None and found[1].generation >= generations[action_id]


def test_an_opportunity_takes_a_bounded_number_of_actions() -> None:
    state = opened()
    stage = next(s for s in state.stages if s.name == "Prospect")
    room = MAX_ACTIONS_PER_STAGE - len(stage.actions)
    for n in range(room):
        state = apply(state, AddAction.model_validate({"stage": "Prospect",
                                                        "action": letter(f"y-{n}")}))  # fmt: skip
    with pytest.raises(CommandRejected) as refused:
        apply(state, AddAction.model_validate({"stage": "Prospect", "action": letter("z")}))
    assert refused.value.code == "limit_reached"
    for n, stage_name in enumerate(s.name for s in state.stages if not s.name.startswith("Cl")):
        while stage_rules.has_room(state, state.stage_state(stage_name)):
            action = letter(f"w-{n}-{len(state.stage_state(stage_name).actions)}")
            state = apply(state, AddAction.model_validate({"stage": stage_name, "action": action}))
    assert sum(len(s.actions) for s in state.stages) <= MAX_ACTIONS


def test_an_action_definition_is_bounded_in_bytes() -> None:
    state = opened()
    big = {**letter("big"), "title": "x" * 500}
    state = apply(state, AddAction.model_validate({"stage": "Prospect", "action": big}))
    modified = apply(state, ModifyAction(action_id="big", changes={"title": "字" * 500}))
    assert modified.find_action("big") is not None
    calendar = {"action_id": "cal", "type": "calendar", "title": "字" * 500,
                "activity": {"kind": "字" * 500}}  # fmt: skip
    with pytest.raises(CommandRejected) as refused:
        apply(state, AddAction.model_validate({"stage": "Prospect", "action": calendar}))
    assert refused.value.code == "limit_reached"


def test_follow_ups_make_room_for_themselves() -> None:
    """A stage timer's follow-up in a full stage drops the oldest follow-up; with none to
    drop, it waits another idle period instead of firing again at once."""
    state = opened()
    state.day_seconds = 1
    stage = next(s for s in state.process.stages if s.name == "Prospect")
    stages = [
        s.model_copy(update={"follow_up_after_days": 1}) if s is stage else s
        for s in state.process.stages
    ]
    process = state.process.model_copy(update={"stages": stages})
    state = state.model_copy(update={"process": process})
    now = T0
    for _ in range(3 * MAX_ACTIONS_PER_STAGE):
        now += timedelta(seconds=2)
        decision = core.fire_timers(state, now)
        assert decision is not None
        state = decision.state
        for action in state.stage_state("Prospect").actions:
            action.completed = True  # the follow-up done, so the next one may come
    actions = state.stage_state("Prospect").actions
    assert len(actions) <= MAX_ACTIONS_PER_STAGE
    assert actions[-1].action_id == f"follow-up-{state.follow_ups}"
    deadline = core.next_deadline(state)
    assert deadline is None or deadline > now


def test_a_state_at_every_bound_fits_what_a_run_carries_once_trimmed() -> None:
    """The largest state the rules allow (long texts in every field, every collection full)
    fits `CARRIED_BUDGET` after `trim`, and validates again."""
    state = opened()
    wide = "字" * 500
    for n in range(MAX_HISTORY):
        state = apply(state, ChangeStage(stage=["Proposal", "Prospect"][n % 2],
                                         reason="字" * MAX_NOTES, by="b" * 200,
                                         request_id=f"{n:04d}" + "r" * 196))  # fmt: skip
    for _ in range(MAX_REMARKS):
        state = apply(state, AddRemark(text="字" * MAX_NOTES))
    for _ in range(core.MAX_REJECTED):
        rejected = CommandRejected("字" * 5000, code="invalid_payload")
        state = core.reject(state, "c" * 300, {"x": "字" * 5000}, rejected, T0)
    for stage in state.stages:
        for action in stage.actions:
            action.activity_outcome = wide
            action.activity_assignee = wide
            action.last_error = EffectFailure(code="bad_data", message="字" * 500, at=T0)
    state.team = {f"role-{n}": "u" * 200 for n in range(MAX_ACTIONS)}
    assert isinstance(state.rejected[0], Rejection)
    trimmed = core.trim(state, json_size(state.model_dump(mode="json")) - CARRIED_BUDGET)
    assert json_size(trimmed.model_dump(mode="json")) <= CARRIED_BUDGET
    Opportunity.model_validate(trimmed.model_dump(mode="json"))
