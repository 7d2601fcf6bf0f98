"""The choices a person makes when the stage changes, in the pure core: the next stage (guarded
by the stage expected), cancelling the stage left by the process's default, the details of the
activities the new stage creates, and an action whose activity was canceled."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sales import core
from sales.commands import (
    ActivityDetails,
    ChangeStage,
    CompleteActions,
    DeleteActivity,
    PerformActions,
    RecordOutcome,
)
from sales.effects import CancelCalendarActivity, CreateCalendarActivity
from sales.errors import CommandRejected
from sales.opportunity import Opportunity
from sales.process import ProcessDefinition, SalesProcess
from sales.registry import needs
from tests.support.helpers import example_definition
from tests.unit.test_core_actions import T0, opened, settled


def _process(**changes: object) -> SalesProcess:
    definition = example_definition("life")
    definition.update(changes)
    return SalesProcess(version=1, definition=ProcessDefinition.model_validate(definition))


def _in(stage: str, process: SalesProcess | None = None) -> Opportunity:
    state = opened(process) if process else opened()
    decision = core.apply(state, ChangeStage(stage=stage, cancel_open_activities=False), T0)
    return settled(decision)


def test_next_stage_moves_one_stage_on_and_creates_its_activities() -> None:
    decision = core.apply(opened(), ChangeStage(next_stage=True), T0)
    assert decision.state.current_stage == "Needs analysis"
    assert [type(e) for e in decision.effects][-1] is CreateCalendarActivity


@pytest.mark.parametrize("stage", ["Proposal", "Closed won"])
def test_next_stage_never_closes_an_opportunity(stage: str) -> None:
    state = _in(stage) if stage == "Proposal" else _in("Proposal")
    if stage == "Closed won":
        state = settled(core.apply(state, ChangeStage(stage="Closed won"), T0))
        with pytest.raises(CommandRejected) as closed:
            core.apply(state, ChangeStage(next_stage=True), T0)
        assert closed.value.code == "closed"
        return
    with pytest.raises(CommandRejected, match="followed by 'Closed won'") as last:
        core.apply(state, ChangeStage(next_stage=True), T0)
    assert last.value.code == "no_next_stage"


def test_the_expected_stage_guards_the_move() -> None:
    state = _in("Needs analysis")
    with pytest.raises(CommandRejected, match="not 'Prospect'") as moved:
        core.apply(state, ChangeStage(next_stage=True, expected_stage="Prospect"), T0)
    assert moved.value.code == "stage_changed"
    done = core.apply(state, ChangeStage(next_stage=True, expected_stage="Needs analysis"), T0)
    assert done.state.current_stage == "Proposal"


def test_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one of stage and next_stage"):
        ChangeStage(stage="Proposal", next_stage=True)
    with pytest.raises(ValueError, match="exactly one of stage and next_stage"):
        ChangeStage()


@pytest.mark.parametrize(
    ("asked", "cancel_on_advance", "canceled"),
    [(None, True, True), (None, False, False), (False, True, False), (True, False, True)],
)
def test_absent_means_the_process_default(
    asked: bool | None, cancel_on_advance: bool, canceled: bool
) -> None:
    state = opened(_process(cancel_on_advance=cancel_on_advance))
    decision = core.apply(state, ChangeStage(stage="Proposal", cancel_open_activities=asked), T0)
    cancels = [e for e in decision.effects if isinstance(e, CancelCalendarActivity)]
    assert bool(cancels) is canceled
    assert decision.state.history[-1].canceled_activities == (
        ["o/intro-call/1"] if canceled else []
    )


def test_never_cancels_where_the_process_does_not_allow_it() -> None:
    state = opened(_process(allow_cancel_activities=False, cancel_on_advance=True))
    decision = core.apply(state, ChangeStage(stage="Proposal"), T0)
    assert not [e for e in decision.effects if isinstance(e, CancelCalendarActivity)]
    with pytest.raises(CommandRejected) as refused:
        core.apply(state, ChangeStage(stage="Proposal", cancel_open_activities=True), T0)
    assert refused.value.code == "not_allowed"


def _created(decision: core.Decision) -> CreateCalendarActivity:
    [created] = [e for e in decision.effects if isinstance(e, CreateCalendarActivity)]
    return created


def test_overrides_give_the_new_stage_activity_its_details() -> None:
    due = T0 + timedelta(days=9)
    details = ActivityDetails(
        due=due, duration_minutes=90, subject="Fact find at home", assignee="bob",
        notes="bring forms", location="Leeds",
    )  # fmt: skip
    command = ChangeStage(stage="Needs analysis", overrides={"fact-finder": details})
    created = _created(core.apply(opened(), command, T0))
    assert (created.subject, created.starts_at, created.ends_at) == (
        "Fact find at home",
        due,
        due + timedelta(minutes=90),
    )
    assert (created.assignee, created.notes, created.location) == ("bob", "bring forms", "Leeds")
    assert needs(command).user_ids == ("bob",), "the assignee is looked up"


@pytest.mark.parametrize("action_id", ["intro-call", "proposal-review", "nothing"])
def test_overrides_name_only_what_the_stage_creates(action_id: str) -> None:
    command = ChangeStage(
        stage="Needs analysis", overrides={action_id: ActivityDetails(subject="x")}
    )
    with pytest.raises(
        CommandRejected, match=r"creates activities only for \['fact-finder'\]"
    ) as e:
        core.apply(opened(), command, T0)
    assert e.value.code == "unknown_action"


def test_overrides_out_of_range_are_refused() -> None:
    far = ActivityDetails(
        due=T0.replace(year=2199, month=12, day=31, hour=23), duration_minutes=600
    )
    command = ChangeStage(stage="Needs analysis", overrides={"fact-finder": far})
    with pytest.raises(CommandRejected) as refused:
        core.apply(opened(), command, T0)
    assert refused.value.code == "out_of_range"


def test_an_outcome_mapped_to_a_stage_takes_overrides_and_the_default() -> None:
    state = opened(_process(
        outcome_stages={"Interested": "Needs analysis"}, cancel_on_advance=True,
        activity_outcomes={"call": ["Interested", "No answer"]},
    ))  # fmt: skip
    details = {"fact-finder": ActivityDetails(subject="Visit")}
    recorded = core.apply(
        state,
        RecordOutcome(activity_id="o/intro-call/1", outcome="Interested", overrides=details),
        T0,
    )
    assert recorded.state.current_stage == "Needs analysis"
    assert _created(recorded).subject == "Visit"
    completed = core.apply(
        state, CompleteActions(action_ids=["intro-call"], outcome="Interested", overrides=details),
        T0,
    )  # fmt: skip
    assert _created(completed).subject == "Visit"


@pytest.mark.parametrize(
    "command",
    [
        CompleteActions(action_ids=["welcome-letter"],
                        overrides={"fact-finder": ActivityDetails(subject="x")}),
        RecordOutcome(activity_id="o/intro-call/1", outcome="Interested",
                      overrides={"fact-finder": ActivityDetails(subject="x")}),
    ],
)  # fmt: skip
def test_overrides_without_a_stage_change_are_refused(
    command: CompleteActions | RecordOutcome,
) -> None:
    with pytest.raises(CommandRejected, match="does not change the stage") as refused:
        core.apply(opened(), command, T0)
    assert refused.value.code == "not_allowed"


def _canceled_intro_call() -> Opportunity:
    """In Needs analysis, having left Prospect with its intro call canceled."""
    state = opened()
    moved = core.apply(state, ChangeStage(stage="Needs analysis", cancel_open_activities=True), T0)
    return settled(moved)


def test_performing_an_action_whose_activity_was_canceled_says_so() -> None:
    state = _canceled_intro_call()
    decision = core.apply(state, PerformActions(action_ids=["intro-call"]), T0)
    assert decision.effects == []
    [said] = decision.result.actions
    assert (said.outcome, said.code, said.activity_id) == (
        "activity_exists",
        "activity_canceled",
        "o/intro-call/1",
    )
    assert "was canceled" in said.message and "delete_activity" in said.message
    deleted = settled(core.apply(state, DeleteActivity(activity_id="o/intro-call/1"), T0))
    again = core.apply(deleted, PerformActions(action_ids=["intro-call"]), T0)
    assert _created(again).activity_id == "o/intro-call/2"


def test_entering_a_stage_whose_activity_was_canceled_says_so() -> None:
    state = _canceled_intro_call()
    back = core.apply(state, ChangeStage(stage="Prospect"), T0)
    assert not [e for e in back.effects if isinstance(e, CreateCalendarActivity)]
    [said] = back.result.actions
    assert (said.action_id, said.outcome, said.code) == (
        "intro-call",
        "activity_exists",
        "activity_canceled",
    )
