"""The pure sales-process rules, without Temporal or a database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sales import core
from sales.commands import ChangeStage
from sales.effects import CreateCalendarActivity, RecordHistory, RecordStageLeft
from sales.errors import CommandRejected
from sales.opportunity import (
    MAX_HISTORY,
    MAX_REASON,
    MAX_REJECTED,
    MAX_REJECTED_PAYLOAD,
    MAX_REQUEST_ID_CHARACTERS,
    MAX_REQUEST_IDS,
    StageLeft,
    StartOpportunity,
)
from sales.process import ProcessDefinition, SalesProcess
from sales.registry import parse_command
from tests.support.core import PROCESS, T0, opened
from tests.support.helpers import example_definition

STAGES = PROCESS.definition.stage_names()


def test_opens_in_the_first_stage_with_a_start_entry() -> None:
    decision = core.open_opportunity(
        StartOpportunity(opportunity_id="o-1", contact_id="c-1"), PROCESS, T0
    )
    state = decision.state
    assert state.current_stage == "Prospect" and state.status == "open"
    assert state.process_version == 3
    assert [a.action_id for a in state.stage_state("Prospect").actions] == [
        "intro-call",
        "welcome-letter",
        "seminar",
    ]
    history, create = decision.effects
    assert history == RecordHistory(entry=state.history[0])
    assert isinstance(create, CreateCalendarActivity) and create.action_id == "intro-call"
    assert state.history[0].created_activities == [create.activity_id]
    assert state.history[0].source == "start" and state.history[0].from_stage is None
    assert state.open_actions() == 3


def test_opens_in_a_given_stage() -> None:
    assert opened("Proposal").current_stage == "Proposal"


def test_unknown_initial_stage_names_the_valid_ones() -> None:
    with pytest.raises(
        CommandRejected, match=r"unknown stage 'Nope'.*'Prospect', 'Needs analysis'"
    ):
        opened("Nope")


def test_change_stage_moves_and_records_history() -> None:
    state = opened()
    decision = core.apply(
        state,
        ChangeStage(stage="Proposal", by="bob", reason="asked for a quote"),
        T0 + timedelta(hours=1),
    )
    new = decision.state
    assert new.current_stage == "Proposal" and new.stage_entered_at == T0 + timedelta(hours=1)
    entry = new.history[-1]
    assert (entry.seq, entry.from_stage, entry.to_stage, entry.source, entry.by, entry.reason) == (
        2,
        "Prospect",
        "Proposal",
        "manual",
        "bob",
        "asked for a quote",
    )
    left = StageLeft(seq=1, left_at=entry.at, duration_seconds=3600, left_for="Proposal")
    assert decision.effects == [RecordStageLeft(left=left), RecordHistory(entry=entry)], (
        "the stage left told when, and nothing created on entry to Proposal"
    )
    assert decision.result.current_stage == "Proposal"
    assert new.revision == state.revision + 1
    assert state.current_stage == "Prospect", "the input state is not mutated"


def test_backwards_and_regardless_of_completed_actions() -> None:
    state = core.apply(opened(), ChangeStage(stage="Proposal"), T0).state
    assert core.apply(state, ChangeStage(stage="Prospect"), T0).state.current_stage == "Prospect"


def test_unknown_stage_is_rejected_with_the_valid_stages() -> None:
    with pytest.raises(CommandRejected) as caught:
        core.apply(opened(), ChangeStage(stage="Negotiation"), T0)
    assert "unknown stage 'Negotiation'" in caught.value.reason
    for stage in STAGES:
        assert repr(stage) in caught.value.reason


def test_same_stage_is_rejected() -> None:
    with pytest.raises(CommandRejected, match="already in stage 'Prospect'"):
        core.apply(opened(), ChangeStage(stage="Prospect"), T0)


def test_cancel_flag_needs_a_process_that_allows_it() -> None:
    strict = SalesProcess(
        version=1,
        definition=ProcessDefinition.model_validate(
            example_definition("strict", allow_cancel_activities=False)
        ),
    )
    state = core.open_opportunity(
        StartOpportunity(opportunity_id="o", contact_id="c"), strict, T0
    ).state
    with pytest.raises(CommandRejected, match="does not allow cancelling"):
        core.apply(state, ChangeStage(stage="Proposal", cancel_open_activities=True), T0)
    assert core.apply(state, ChangeStage(stage="Proposal"), T0).state.current_stage == "Proposal"


def test_closing_stages_set_status_and_reopening_clears_it() -> None:
    won = core.apply(opened(), ChangeStage(stage="Closed won"), T0).state
    assert (won.status, won.closed_at) == ("won", T0)
    with pytest.raises(CommandRejected, match=r"closed \(won on 2026-11-28, stage 'Closed won'\)"):
        core.apply(won, ChangeStage(stage="Closed lost"), T0)
    with pytest.raises(CommandRejected, match="reopen it in one of"):
        core.reopen(won, "Closed lost", "ann", T0)
    back = core.reopen(won, "Proposal", "ann", T0 + timedelta(days=1)).state
    assert (back.status, back.closed_at, back.current_stage) == ("open", None, "Proposal")
    assert back.history[-1].source == "reopened" and back.history[-1].from_stage == "Closed won"
    with pytest.raises(CommandRejected, match="only a won or lost one can be reopened"):
        core.reopen(back, "Prospect", None, T0)


def test_request_id_applies_once() -> None:
    command = ChangeStage(stage="Proposal", request_id="req-1")
    first = core.apply(opened(), command, T0)
    again = core.apply(first.state, command, T0)
    assert again.result.duplicate and again.effects == [] and again.state == first.state
    # Even when the same command would now be invalid, the duplicate is acknowledged.
    core.check(first.state, command)


def test_rejections_are_kept_boundedly() -> None:
    state = opened()
    for index in range(MAX_REJECTED + 5):
        rejected = CommandRejected(f"reason {index}", code="unknown_stage")
        state = core.reject(state, "change_stage", {"stage": index}, rejected, T0)
    assert len(state.rejected) == MAX_REJECTED
    assert state.rejected[-1].reason == f"reason {MAX_REJECTED + 4}"
    assert state.rejected[0].reason == "reason 5"
    assert state.rejected[0].code == "unknown_stage"
    assert state.rejected[0].payload == '{"stage":5}'


def test_a_rejection_keeps_at_most_a_kibibyte_of_its_payload_and_reason() -> None:
    huge = {"stage": "x" * 1_000_000, "reason": "y" * 1_000_000}
    rejected = CommandRejected("z" * 100_000, code="invalid_payload")
    state = core.reject(opened(), "change_stage", huge, rejected, T0)
    [kept] = state.rejected
    assert len(kept.payload) == MAX_REJECTED_PAYLOAD and kept.payload.startswith('{"stage":"xxx')
    assert len(kept.reason) == MAX_REASON


def test_request_ids_are_bounded_by_count_and_size() -> None:
    state = opened()
    for n in range(MAX_REQUEST_IDS + 10):
        core.remember(state, f"r{n}")
    assert len(state.applied_request_ids) == MAX_REQUEST_IDS
    assert state.applied_request_ids[-1] == f"r{MAX_REQUEST_IDS + 9}"
    assert state.request_id_characters == sum(map(len, state.applied_request_ids))
    long = opened()
    for n in range(3000):
        core.remember(long, f"{n:04d}" + "x" * 196)
    assert long.request_id_characters == sum(map(len, long.applied_request_ids))
    assert long.request_id_characters <= MAX_REQUEST_ID_CHARACTERS
    assert len(long.applied_request_ids) == MAX_REQUEST_ID_CHARACTERS // 200
    assert long.applied_request_ids[-1].startswith("2999")


def test_trim_drops_the_oldest_rejections_then_request_ids_then_history_and_remarks() -> None:
    state = opened()
    for n in range(150):
        state = core.apply(state, ChangeStage(stage=["Proposal", "Prospect"][n % 2],
                                              request_id=f"r{n}"), T0).state  # fmt: skip
        rejected = CommandRejected(f"reason {n}", code="unknown_stage")
        state = core.reject(state, "change_stage", {"stage": "x" * 500}, rejected, T0)
    trimmed = core.trim(state, 5_000)
    assert trimmed.rejected == state.rejected[-len(trimmed.rejected) :]
    assert 0 < len(trimmed.rejected) < len(state.rejected)
    assert trimmed.applied_request_ids == state.applied_request_ids
    assert trimmed.history == state.history
    everything = core.trim(state, 10_000_000)
    assert everything.rejected == [] and everything.applied_request_ids == []
    assert everything.history == state.history[-core.KEEP_HISTORY :]
    assert state.rejected and len(state.history) == MAX_HISTORY, "the original is unchanged"
    assert [e.seq for e in state.history] == list(range(52, 152)), "numbered after evicted ones"


def test_payloads_are_validated_with_readable_reasons() -> None:
    with pytest.raises(
        CommandRejected,
        match=r"invalid change_stage payload: give exactly one of stage and next_stage: true",
    ):
        parse_command("change_stage", {"cancel_open_activities": True})
    with pytest.raises(CommandRejected, match="colour: Extra inputs are not permitted"):
        parse_command("change_stage", {"stage": "Proposal", "colour": "red"})
    with pytest.raises(CommandRejected, match="expected a JSON object, got a string"):
        parse_command("change_stage", "Proposal")
    with pytest.raises(CommandRejected, match="unknown command 'teleport'"):
        parse_command("teleport", {})


stage_names = st.sampled_from([*STAGES, "Unknown stage"])


@settings(max_examples=200, deadline=None)
@given(
    moves=st.lists(
        st.tuples(stage_names, st.booleans(), st.sampled_from([None, "r1", "r2", "r3"])),
        max_size=30,
    )
)
def test_random_stage_changes_keep_history_consistent(
    moves: list[tuple[str, bool, str | None]],
) -> None:
    state = opened()
    now = T0
    for stage, cancel, request_id in moves:
        now += timedelta(minutes=5)
        command = ChangeStage(stage=stage, cancel_open_activities=cancel, request_id=request_id)
        before = state.model_copy(deep=True)
        try:
            decision = core.apply(state, command, now)
        except CommandRejected:
            assert state.model_dump() == before.model_dump(), "a rejected command changes nothing"
            continue
        state = decision.state
        if not decision.result.duplicate:
            assert state.history[-1].to_stage == stage
    # The history always replays to the current stage, and is numbered without gaps.
    assert core.replay_history(state.history) == state.current_stage
    assert [entry.seq for entry in state.history] == list(range(1, len(state.history) + 1))
    closes = PROCESS.definition.stage(state.current_stage)
    assert state.status == ((closes.closes_as if closes else None) or "open")
    assert len(set(state.applied_request_ids)) == len(state.applied_request_ids)
