"""The stage-action rules of the pure core: unit tests, and a hypothesis state machine that runs
random command sequences against a simulated calendar and checks the invariants."""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sales import core, stage_rules
from sales.commands import (
    ActionOverrides,
    ActivityDetails,
    AddAction,
    AddRemark,
    Assign,
    ChangeOwner,
    ChangeStage,
    Command,
    CompleteActions,
    DeleteAction,
    DeleteActivity,
    DeleteOpportunity,
    ModifyAction,
    ModifyActivity,
    MoveProcess,
    PerformActions,
    RecordOutcome,
    UpdateDetails,
)
from sales.effects import (
    CompleteCalendarActivity,
    CreateCalendarActivity,
    DeleteCalendarActivity,
    EffectOutcome,
    InviteToEvent,
    ModifyCalendarActivity,
    PerformEffect,
    RecordHistory,
    SendLetter,
)
from sales.errors import CommandRejected
from sales.opportunity import Opportunity, StartOpportunity
from sales.process import FoundProcess, ProcessDefinition, SalesProcess
from sales.registry import LookedUp
from sales.writes import Writes
from tests.support.helpers import example_definition

T = TypeVar("T")
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
PROCESS = SalesProcess(
    version=1, definition=ProcessDefinition.model_validate(example_definition("life"))
)


def settled(decision: core.Decision, now: datetime = T0) -> Opportunity:
    """The state once every perform effect succeeded, as the shell would settle it."""
    state = decision.state
    for effect in decision.effects:
        if isinstance(effect, CreateCalendarActivity):
            outcome = EffectOutcome(status="created", activity_id=effect.activity_id)
            state, _ = core.settle(state, effect, outcome, now)
        elif isinstance(effect, SendLetter):
            state, _ = core.settle(state, effect, EffectOutcome(status="sent"), now)
        elif isinstance(effect, InviteToEvent):
            state, _ = core.settle(state, effect, EffectOutcome(status="invited"), now)
    return state


def opened(process: SalesProcess = PROCESS) -> Opportunity:
    """Open in Prospect; intro-call's activity was created on entry."""
    start = StartOpportunity(opportunity_id="o", contact_id="c")
    return settled(core.open_opportunity(start, process, T0))


def performed(state: Opportunity, action_id: str) -> tuple[Opportunity, CreateCalendarActivity]:
    decision = core.apply(state, PerformActions(action_ids=[action_id]), T0)
    [effect] = decision.effects
    assert isinstance(effect, CreateCalendarActivity)
    new, _ = core.settle(
        decision.state, effect, EffectOutcome(status="created", activity_id=effect.activity_id), T0
    )
    return new, effect


def test_opening_creates_the_activities_marked_for_entry() -> None:
    start = StartOpportunity(opportunity_id="o", contact_id="c")
    decision = core.open_opportunity(start, PROCESS, T0)
    effect = decision.effects[-1]
    assert isinstance(effect, CreateCalendarActivity)
    assert (effect.activity_id, effect.generation, effect.activity_kind) == (
        "o/intro-call/1",
        1,
        "call",
    )
    assert effect.starts_at == T0 + timedelta(days=2)
    assert effect.ends_at == effect.starts_at + timedelta(minutes=30)
    assert effect.track_outcome


def test_perform_sends_letters_and_invitations_with_their_context() -> None:
    decision = core.apply(opened(), PerformActions(action_ids=["welcome-letter", "seminar"]), T0)
    letter, invite = decision.effects
    assert isinstance(letter, SendLetter) and isinstance(invite, InviteToEvent)
    assert letter.letter_id == "o/welcome-letter/1" and letter.template == "welcome"
    assert letter.context.current_stage == "Prospect"
    assert letter.context.process_name == "Life insurance sale"
    assert invite.event_id == "seminar-2027-01"


def test_settling_a_failure_keeps_the_action_open() -> None:
    decision = core.apply(opened(), PerformActions(action_ids=["welcome-letter"]), T0)
    [letter] = decision.effects
    assert isinstance(letter, SendLetter)
    failed = EffectOutcome(status="failed", code="unknown_template", message="unknown template")
    state, result = core.settle(decision.state, letter, failed, T0)
    assert (result.outcome, result.code) == ("failed", "unknown_template")
    _, action = state.find_action("welcome-letter") or (None, None)
    assert action is not None and not action.completed and action.last_error is not None
    assert (action.last_error.code, action.last_error.message) == (
        "unknown_template",
        "unknown template",
    )
    state, result = core.settle(state, letter, EffectOutcome(status="filed"), T0)
    assert result.outcome == "letter_filed"
    _, action = state.find_action("welcome-letter") or (None, None)
    assert action is not None and action.completed and action.last_error is None


def test_an_existing_activity_is_reported_not_recreated() -> None:
    state = opened()
    _, action = state.find_action("intro-call") or (None, None)
    assert action is not None and action.activity_id == "o/intro-call/1"
    decision = core.apply(state, PerformActions(action_ids=["intro-call"]), T0)
    assert decision.effects == []
    assert decision.result.actions[0].outcome == "activity_exists"
    assert decision.result.actions[0].activity_id == action.activity_id


def test_complete_marks_the_linked_activity_done() -> None:
    state = opened()
    effect = _intro_call(state)
    with pytest.raises(CommandRejected, match="give an outcome"):
        core.apply(state, CompleteActions(action_ids=["intro-call"]), T0)
    decision = core.apply(
        state, CompleteActions(action_ids=["intro-call"], outcome="Interested"), T0
    )
    [complete] = decision.effects
    assert isinstance(complete, CompleteCalendarActivity) and complete.outcome == "Interested"
    assert (complete.key.action_id, complete.key.generation) == ("intro-call", effect.generation)
    assert complete.key.activity_id == effect.activity_id


def test_record_outcome_maps_to_a_stage() -> None:
    state = opened()
    effect = _intro_call(state)
    decision = core.apply(
        state, RecordOutcome(activity_id=effect.activity_id, outcome="Sale Made"), T0
    )
    assert decision.state.current_stage == "Closed won" and decision.state.status == "won"
    assert decision.state.history[-1].source == "outcome"
    assert any(isinstance(e, RecordHistory) for e in decision.effects)
    explicit = core.apply(
        state,
        RecordOutcome(activity_id=effect.activity_id, outcome="Sale Made", stage="Proposal"),
        T0,
    )
    assert explicit.state.current_stage == "Proposal", "an explicit stage wins over the mapping"


def test_delete_activity_lets_the_action_create_another() -> None:
    state = opened()
    first = _intro_call(state)
    state = core.apply(state, DeleteActivity(activity_id=first.activity_id), T0).state
    _, second = performed(state, "intro-call")
    assert second.generation == 2 and second.activity_id != first.activity_id


def test_an_action_deleted_and_added_again_never_reuses_a_generation() -> None:
    """Its next letter (or calendar activity) has a key of its own: perform, delete, add the
    same id again, perform."""
    decision = core.apply(opened(), PerformActions(action_ids=["welcome-letter"]), T0)
    [first] = decision.effects
    assert isinstance(first, SendLetter)
    state, _ = core.settle(decision.state, first, EffectOutcome(status="filed"), T0)
    state = core.apply(state, DeleteAction(action_id="welcome-letter"), T0).state
    again = {"action_id": "welcome-letter", "type": "letter", "title": "Second",
             "template": "proposal"}  # fmt: skip
    state = core.apply(
        state, AddAction.model_validate({"stage": "Prospect", "action": again}), T0
    ).state
    [second] = core.apply(state, PerformActions(action_ids=["welcome-letter"]), T0).effects
    assert isinstance(second, SendLetter)
    assert (first.generation, second.generation) == (1, 2)
    assert second.letter_id == "o/welcome-letter/2" != first.letter_id


def _intro_call(state: Opportunity) -> CreateCalendarActivity:
    """Stands for intro-call's linked activity (created on entry) in assertions."""
    _, action = state.find_action("intro-call") or (None, None)
    assert action is not None and action.activity_id is not None
    return CreateCalendarActivity(
        opportunity_id="o", contact_id="c", action_id="intro-call", generation=action.generation,
        activity_id=action.activity_id, activity_kind="call", subject="", starts_at=T0,
        ends_at=T0, track_outcome=True,
    )  # fmt: skip


# --- random command sequences -----------------------------------------------------------------

ACTION_IDS = ["intro-call", "welcome-letter", "seminar", "fact-finder", "proposal-review",
              "proposal-letter", "extra-call", "extra-letter", "nope"]  # fmt: skip
STAGES = [*PROCESS.definition.stage_names(), "Nowhere"]
OUTCOMES = [None, "Interested", "Sale Made", "Reject Prospect"]
EXTRA: dict[str, dict[str, Any]] = {
    "intro-call": {
        "action_id": "intro-call",
        "type": "calendar",
        "title": "Second call",
        "activity": {"kind": "call", "track_outcome": True},
    },
    "extra-call": {
        "action_id": "extra-call",
        "type": "calendar",
        "title": "Extra call",
        "activity": {"kind": "call", "track_outcome": False},
    },
    "extra-letter": {
        "action_id": "extra-letter",
        "type": "letter",
        "title": "Extra letter",
        "template": "t",
    },
}


TIMED = example_definition("timed")
TIMED["stages"][0]["follow_up_after_days"] = 1
TIMED["stages"][1]["advance_after_days"] = 2
TIMED["stages"][0]["actions"][0]["role"] = "adviser"
TIMED_PROCESS = SalesProcess(version=1, definition=ProcessDefinition.model_validate(TIMED))
OTHER_PROCESS = SalesProcess(
    version=2, definition=ProcessDefinition.model_validate(example_definition("other"))
)


def completed(work: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never waits (the simulated calendar answers at once)."""
    try:
        work.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("the simulated calendar never waits")


class OpportunityMachine(RuleBasedStateMachine):
    """Applies random commands (and the passing of time) through the core's one call
    (`core.run`, after the lookups `core.needs` asks for, as the workflow does), with a
    simulated calendar keyed like the real table standing for the activities and the
    projection."""

    @initialize()
    def open(self) -> None:
        self.now = T0
        self.fail = False
        self.calendar: dict[tuple[str, int], dict[str, Any]] = {}
        self.completed: set[str] = set()
        start = StartOpportunity(opportunity_id="o", contact_id="c")
        decision = core.open_opportunity(start, TIMED_PROCESS, T0, day_seconds=600)
        self.state = self.carry_out(decision)

    async def activities(self, effect: PerformEffect) -> EffectOutcome:
        """The activities, simulated: a calendar row created once per key; a letter or an
        invitation sent, or failed when the rule asks for a failure."""
        if isinstance(effect, CreateCalendarActivity):
            key = (effect.action_id, effect.generation)
            created = key not in self.calendar
            row = self.calendar.setdefault(
                key,
                {"activity_id": effect.activity_id, "status": "active", "subject": effect.subject},
            )
            status: Any = "created" if created else "exists"
            return EffectOutcome(status=status, activity_id=row["activity_id"])
        if self.fail:
            return EffectOutcome(status="failed", code="bad_data", message="simulated")
        return EffectOutcome(status="invited" if isinstance(effect, InviteToEvent) else "sent")

    async def find_users(self, user_ids: list[str]) -> list[str]:
        """The users, simulated: ann and bob exist."""
        return [user for user in user_ids if user in {"ann", "bob"}]

    async def find_process(self, process_id: str) -> FoundProcess:
        """The processes, simulated: `other` is the example process at version 2."""
        return FoundProcess(process=OTHER_PROCESS if process_id == "other" else None)

    def project(self, changes: Writes) -> None:
        """The projection, simulated: the changes to existing calendar rows."""
        for change in changes.calendar:
            key = (change.key.action_id, change.key.generation)
            if isinstance(change, DeleteCalendarActivity):
                self.calendar.pop(key, None)
            elif isinstance(change, ModifyCalendarActivity):
                if (row := self.calendar.get(key)) is not None and row["status"] == "active":
                    row["assignee"] = change.assignee or row.get("assignee")
            elif (row := self.calendar.get(key)) is not None and row["status"] == "active":
                done = isinstance(change, CompleteCalendarActivity)
                row["status"] = "done" if done else "canceled"

    def carry_out(self, decision: core.Decision) -> Opportunity:
        outcome = completed(core.carry_out(decision, self.activities, self.clock))
        self.project(outcome.writes)
        return outcome.state

    async def look_up(self, state: Opportunity, command: Command) -> LookedUp:
        """What the command needs, looked up as the workflow's `lookups` does."""
        needs = core.needs(state, command)
        found = FoundProcess()
        if needs.process_id is not None:
            found = await self.find_process(needs.process_id)
        users = None
        if needs.user_ids:
            users = frozenset(await self.find_users(list(needs.user_ids)))
        return LookedUp(process=found, users=users)

    async def apply(self, command: Command) -> core.Outcome:
        looked_up = await self.look_up(self.state, command)
        return await core.run(self.state, command, looked_up, self.activities, self.clock)

    def clock(self) -> datetime:
        return self.now

    def run(self, command: Command, fail: bool = False) -> None:
        self.now += timedelta(minutes=1)
        self.fail = fail
        before = self.state.model_copy(deep=True)
        try:
            done = completed(self.apply(command))
        except CommandRejected:
            assert self.state.model_dump() == before.model_dump(), (
                "a rejected command changes nothing"
            )
            return
        finally:
            self.fail = False
        self.project(done.writes)
        if done.result.duplicate:
            assert done.records == [], "an acknowledged duplicate changes nothing"
        else:
            assert done.records, "an applied command says what it changed"
            whats = {record.what for record in done.records}
            if done.state.current_stage != before.current_stage:
                assert "stage" in whats
            if done.state.owner != before.owner:
                assert "owner" in whats
        # The core copies only what its rules change in place: the state it was given, and
        # so every earlier state the workflow still holds, stays as it was.
        assert self.state.model_dump() == before.model_dump(), "only the new state changes"
        self.state = done.state
        if isinstance(command, ChangeStage) and command.cancel_open_activities:
            left = before.current_stage
            assert not [
                a for a in self.state.stage_state(left).actions if a.activity_status == "active"
            ], "no active activity remains linked to a stage left with cancel_open_activities"

    @rule(minutes=st.integers(1, 30))
    def wait(self, minutes: int) -> None:
        """Time passes; the stage timers that are due fire, as the workflow's timer would."""
        self.now += timedelta(minutes=minutes)
        for _ in range(10):
            deadline = core.next_deadline(self.state)
            if deadline is None or deadline > self.now:
                break
            decision = core.fire_timers(self.state, self.now)
            assert decision is not None, "a due deadline fires"
            self.state = self.carry_out(decision)
        deadline = core.next_deadline(self.state)
        assert deadline is None or deadline > self.now

    @rule(stage=st.sampled_from(STAGES))
    def reopen(self, stage: str) -> None:
        try:
            decision = core.reopen(self.state, stage, None, self.now)
        except CommandRejected:
            return
        self.state = self.carry_out(decision)
        assert self.state.status == "open"

    @rule(ids=st.lists(st.sampled_from(ACTION_IDS), min_size=1, max_size=3), fail=st.booleans())
    def perform(self, ids: list[str], fail: bool) -> None:
        self.run(PerformActions(action_ids=ids), fail)

    @rule(ids=st.lists(st.sampled_from(ACTION_IDS), min_size=1, max_size=3),
          outcome=st.sampled_from(OUTCOMES), stage=st.sampled_from([None, *STAGES]),
          cancel=st.sampled_from([None, True, False]), details=st.booleans())  # fmt: skip
    def complete(
        self, ids: list[str], outcome: str | None, stage: str | None, cancel: bool | None,
        details: bool,
    ) -> None:  # fmt: skip
        overrides = {}
        if details and stage is not None and self.state.process.stage(stage):
            overrides = {a.action_id: ActivityDetails(subject="Given", duration_minutes=5)
                         for a in stage_rules.creates_on_entry(self.state, stage)}  # fmt: skip
        self.run(CompleteActions(action_ids=ids, outcome=outcome, stage=stage,
                                 cancel_open_activities=cancel, overrides=overrides))  # fmt: skip

    @rule(pick=st.integers(0, 20), assignee=st.sampled_from(["ann", "bob", "zed"]),
          minutes=st.sampled_from([None, 15, 60]))  # fmt: skip
    def modify_activity(self, pick: int, assignee: str, minutes: int | None) -> None:
        known = [row["activity_id"] for row in self.calendar.values()] or ["o/none/1"]
        activity_id = known[pick % len(known)]
        before = {row["activity_id"]: row["status"] for row in self.calendar.values()}
        self.run(ModifyActivity(activity_id=activity_id, assignee=assignee,
                                duration_minutes=minutes))  # fmt: skip
        after = {row["activity_id"]: row["status"] for row in self.calendar.values()}
        assert after == before, "modifying an activity changes no activity's status"

    @rule(action_id=st.sampled_from(list(EXTRA)), stage=st.sampled_from(STAGES))  # re-adds too
    def add(self, action_id: str, stage: str) -> None:
        self.run(AddAction.model_validate({"stage": stage, "action": EXTRA[action_id]}))

    @rule(action_id=st.sampled_from(ACTION_IDS), title=st.sampled_from(["A", "B"]))
    def modify(self, action_id: str, title: str) -> None:
        self.run(ModifyAction(action_id=action_id, changes={"title": title}))

    @rule(action_id=st.sampled_from(ACTION_IDS))
    def delete(self, action_id: str) -> None:
        self.run(DeleteAction(action_id=action_id))

    @rule(pick=st.integers(0, 20), outcome=st.sampled_from(OUTCOMES),
          stage=st.sampled_from([None, *STAGES]))  # fmt: skip
    def record_outcome(self, pick: int, outcome: str | None, stage: str | None) -> None:
        known = [row["activity_id"] for row in self.calendar.values()] or ["o/none/1"]
        activity_id = known[pick % len(known)]
        self.run(RecordOutcome(activity_id=activity_id, outcome=outcome, stage=stage))

    @rule(pick=st.integers(0, 20))
    def delete_activity(self, pick: int) -> None:
        known = [row["activity_id"] for row in self.calendar.values()] or ["o/none/1"]
        self.run(DeleteActivity(activity_id=known[pick % len(known)]))

    @rule(role=st.sampled_from(["adviser", "pilot"]), user=st.sampled_from(["ann", "bob", "zed"]))
    def assign(self, role: str, user: str) -> None:
        self.run(Assign(role=role, user=user))

    @rule(process_id=st.sampled_from(["other", "unknown"]), stage=st.sampled_from(STAGES))
    def move_process(self, process_id: str, stage: str) -> None:
        before = (self.state.process_id, self.state.process_version)
        self.run(MoveProcess(process_id=process_id, stage=stage))
        if (self.state.process_id, self.state.process_version) != before:
            self.completed = set()  # the new process's actions, none completed yet

    @rule(user=st.sampled_from(["ann", "bob", "zed"]))
    def change_owner(self, user: str) -> None:
        self.run(ChangeOwner(owner=user))

    @rule(text=st.sampled_from(["call back", "prefers e-mail"]))
    def add_remark(self, text: str) -> None:
        self.run(AddRemark(text=text))

    @rule(rare=st.integers(0, 9))
    def delete_opportunity(self, rare: int) -> None:
        if rare == 0:  # now and then: it ends the run of commands
            self.run(DeleteOpportunity(reason="duplicate"))
            if self.state.status == "deleted":
                assert not [a for s in self.state.stages for a in s.actions
                            if a.activity_status == "active"]  # fmt: skip

    @rule(stage=st.sampled_from([None, *STAGES]), cancel=st.sampled_from([None, True, False]),
          expected=st.sampled_from([None, "current", "other"]),
          assignee=st.sampled_from([None, "ann", "zed"]))  # fmt: skip
    def change_stage(
        self, stage: str | None, cancel: bool | None, expected: str | None, assignee: str | None
    ) -> None:
        """By name or to the next stage, guarded or not, cancelling by choice or by the
        process's default, with details for the activities the new stage creates."""
        before = self.state
        following = before.process.next_stage(before.current_stage)
        target = stage if stage is not None else (following.name if following else None)
        overrides = {}
        if assignee is not None and target is not None and before.process.stage(target):
            overrides = {
                a.action_id: ActivityDetails(subject="Given", assignee=assignee)
                for a in stage_rules.creates_on_entry(before, target)
            }
        guard = {"current": before.current_stage, "other": "Nowhere"}.get(expected or "")
        self.run(ChangeStage(stage=stage, next_stage=stage is None, expected_stage=guard,
                             cancel_open_activities=cancel, overrides=overrides))  # fmt: skip
        moved = self.state.current_stage != before.current_stage
        if expected == "other" or (stage is None and (following is None or following.closes_as)):
            assert not moved, "a guarded or impossible next-stage move changes nothing"
        if moved and assignee == "ann":
            for action_id in overrides:
                row = self.calendar[(action_id, self.state.find_action(action_id)[1].generation)]  # type: ignore[index]
                assert row["subject"] == "Given", "the new stage's activity has the details given"

    @invariant()
    def the_state_keeps_its_declared_bounds(self) -> None:
        """What a run carries validates again (the next run would refuse it otherwise)."""
        again = Opportunity.model_validate(self.state.model_dump(mode="json"))
        assert again.model_dump() == self.state.model_dump()

    @invariant()
    def at_most_one_active_activity_per_action(self) -> None:
        active: dict[str, int] = {}
        for (action_id, _), row in self.calendar.items():
            if row["status"] == "active":
                active[action_id] = active.get(action_id, 0) + 1
        assert all(count <= 1 for count in active.values()), active

    @invariant()
    def links_match_the_calendar(self) -> None:
        rows = {row["activity_id"]: row for row in self.calendar.values()}
        for stage in self.state.stages:
            for action in stage.actions:
                if action.activity_id is not None:
                    assert rows[action.activity_id]["status"] == action.activity_status

    @invariant()
    def completed_actions_stay_completed(self) -> None:
        present = {a.action_id: a for stage in self.state.stages for a in stage.actions}
        for action_id in self.completed:
            if action_id in present:
                assert present[action_id].completed, action_id
        self.completed = {a for a, state in present.items() if state.completed}

    @invariant()
    def closed_means_a_closing_stage(self) -> None:
        closing = self.state.process.stage(self.state.current_stage)
        assert (self.state.closed_at is not None) == (self.state.status != "open")
        if self.state.status == "deleted":
            return  # deleted where it stood
        assert (self.state.status != "open") == bool(closing and closing.closes_as)

    @invariant()
    def history_replays_to_the_current_stage(self) -> None:
        assert core.replay_history(self.state.history) == self.state.current_stage
        closing = self.state.process.stage(self.state.current_stage)
        if self.state.status != "deleted":
            assert self.state.status == ((closing.closes_as if closing else None) or "open")

    @invariant()
    def activities_fall_to_the_team(self) -> None:
        """A calendar activity created for an action is its role's member's (the owner's
        when the team has none); an activity modified since may name another."""
        for stage in self.state.stages:
            for action in stage.actions:
                if action.activity_id is not None and action.activity_assignee is not None:
                    assert action.activity_assignee in {"ann", "bob", self.state.owner}


    @rule(probability=st.sampled_from([None, 0, 45, 100]),
          amount=st.sampled_from([None, "0", "12.5", "250000"]))  # fmt: skip
    def update_details(self, probability: int | None, amount: str | None) -> None:
        self.run(UpdateDetails(probability=probability, amount=amount))
        assert self.state.probability_by_hand is (probability is not None) or (
            self.state.status != "open"
        )

    @invariant()
    def time_in_stages_sums_to_the_age(self) -> None:
        """Every second since opening is in exactly one stage's total (a stage entered twice
        counts both stays)."""
        spent = stage_rules.time_in_stages(self.state, self.now)
        assert sum(spent.values()) == stage_rules.stay_seconds(self.state.created_at, self.now)
        assert all(seconds >= 0 for seconds in spent.values())

    @invariant()
    def probability_follows_the_stage_unless_set_by_hand(self) -> None:
        stage = self.state.process.stage(self.state.current_stage)
        if stage is not None and not self.state.probability_by_hand:
            assert self.state.probability == stage.probability
        if stage is not None and not self.state.forecast_category_by_hand:
            assert self.state.forecast_category == stage.default_forecast_category()


TestOpportunityMachine = OpportunityMachine.TestCase
TestOpportunityMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_mark_complete_moves_to_a_stage_and_cancels_when_asked() -> None:
    """Mark Complete takes a stage like the outcome does, and cancels the open activities
    of the stage left when asked, or by the process's `cancel_on_advance`."""
    state = opened()
    intro = _intro_call(state)
    moved = core.apply(
        state, CompleteActions(action_ids=["welcome-letter"], stage="Proposal"), T0
    ).state
    assert moved.current_stage == "Proposal" and moved.history[-1].source == "outcome"
    assert moved.history[-1].canceled_activities == []  # by default: kept
    assert moved.find_calendar_activity(intro.activity_id)[1].activity_status == "active"
    canceling = core.apply(
        state,
        CompleteActions(action_ids=["welcome-letter"], stage="Proposal",
                        cancel_open_activities=True),
        T0,
    )  # fmt: skip
    assert canceling.state.history[-1].canceled_activities == [intro.activity_id]
    with pytest.raises(CommandRejected, match="unknown stage 'Nowhere'"):
        core.apply(state, CompleteActions(action_ids=["welcome-letter"], stage="Nowhere"), T0)

    by_default = _with(cancel_on_advance=True)
    started = opened(by_default)
    default_intro = _intro_call(started)
    moved = core.apply(
        started, CompleteActions(action_ids=["welcome-letter"], stage="Proposal"), T0
    ).state
    assert moved.history[-1].canceled_activities == [default_intro.activity_id]
    kept = core.apply(
        started,
        CompleteActions(action_ids=["welcome-letter"], stage="Proposal",
                        cancel_open_activities=False),
        T0,
    ).state  # fmt: skip
    assert kept.history[-1].canceled_activities == []


def test_an_outcome_and_the_automatic_advance_cancel_within_what_the_process_allows() -> None:
    forbidden = _with(allow_cancel_activities=False, cancel_on_advance=True)
    state = opened(forbidden)
    intro = _intro_call(state)
    with pytest.raises(CommandRejected, match="does not allow cancelling") as refused:
        core.apply(
            state,
            RecordOutcome(activity_id=intro.activity_id, outcome="Interested", stage="Proposal",
                          cancel_open_activities=True),
            T0,
        )  # fmt: skip
    assert refused.value.code == "not_allowed"
    moved = core.apply(
        state,
        RecordOutcome(activity_id=intro.activity_id, outcome="Sale Made"),
        T0,
    ).state
    assert moved.status == "won" and moved.history[-1].canceled_activities == []

    assert stage_rules.cancels_on_leaving(opened(_with(cancel_on_advance=True)), None)
    assert not stage_rules.cancels_on_leaving(opened(), None)  # allowed, not the default
    assert not stage_rules.cancels_on_leaving(state, None)  # the default, not allowed
    assert not stage_rules.cancels_on_leaving(state, True)  # asked for, not allowed


def test_deleting_the_last_open_action_never_advances() -> None:
    state = opened()
    state = core.apply(state, CompleteActions(action_ids=["intro-call"], outcome="Interested"),
                       T0).state  # fmt: skip
    state = core.apply(state, CompleteActions(action_ids=["welcome-letter"]), T0).state
    decision = core.apply(state, DeleteAction(action_id="seminar"), T0)
    assert decision.state.open_actions() == 0
    assert core.follow_through(state, decision.state, T0) is None
    assert decision.state.current_stage == "Prospect"


def _with(**flags: object) -> SalesProcess:
    """The example process with other flags."""
    return SalesProcess(
        version=1,
        definition=ProcessDefinition.model_validate(example_definition("life", **flags)),
    )


def test_an_outcome_of_a_kind_with_a_list_must_be_one_of_it() -> None:
    listed = _with(activity_outcomes={"call": ["Interested", "No answer", "Sale Made"]})
    state = opened(listed)
    intro = _intro_call(state)
    with pytest.raises(CommandRejected, match="outcomes are") as refused:
        core.apply(state, RecordOutcome(activity_id=intro.activity_id, outcome="Maybe"), T0)
    assert refused.value.code == "unknown_outcome"
    with pytest.raises(CommandRejected, match=r"give an outcome \(Interested, No answer"):
        core.apply(state, RecordOutcome(activity_id=intro.activity_id), T0)
    with pytest.raises(CommandRejected, match="not an outcome of a 'call' activity"):
        core.apply(state, CompleteActions(action_ids=["intro-call"], outcome="Maybe"), T0)
    done = core.apply(state, RecordOutcome(activity_id=intro.activity_id, outcome="Sale Made"), T0)
    assert done.state.status == "won"
    free = opened()  # no list: any text
    assert core.apply(
        free, RecordOutcome(activity_id=_intro_call(free).activity_id, outcome="Maybe"), T0
    ).state.find_calendar_activity(intro.activity_id)


def test_a_process_lists_outcomes_once_each() -> None:
    with pytest.raises(ValueError, match="1 to 100 different outcomes"):
        ProcessDefinition.model_validate(
            example_definition("x", activity_outcomes={"call": ["A", "A"]})
        )


def test_performing_takes_the_activity_details_the_user_entered() -> None:
    state = opened()
    due = datetime(2027, 1, 5, 10, 0, tzinfo=UTC)
    overrides = {
        "fact-finder": ActionOverrides(due=due, duration_minutes=90, subject="At her office",
                                       assignee="bob", notes="bring forms", location="London"),
        "welcome-letter": ActionOverrides(method="document"),
    }  # fmt: skip
    state = settled(core.apply(state, ChangeStage(stage="Needs analysis"), T0))
    state = core.apply(state, DeleteActivity(activity_id="o/fact-finder/1"), T0).state
    decision = core.apply(
        state, PerformActions(action_ids=["fact-finder", "welcome-letter"], overrides=overrides),
        T0,
    )  # fmt: skip
    created, letter = decision.effects
    assert isinstance(created, CreateCalendarActivity) and isinstance(letter, SendLetter)
    assert (created.starts_at, created.ends_at) == (due, due + timedelta(minutes=90))
    assert (created.subject, created.assignee, created.notes, created.location) == (
        "At her office", "bob", "bring forms", "London")  # fmt: skip
    assert letter.method == "document"
    settled_state = settled(decision)
    assert settled_state.find_calendar_activity(created.activity_id)[1].activity_assignee == "bob"

    for wrong, code in [
        ({"seminar": ActionOverrides(assignee="bob")}, "unknown_action"),  # not tagged
        ({"welcome-letter": ActionOverrides(assignee="bob")}, "not_allowed"),
        ({"fact-finder": ActionOverrides(method="email")}, "not_allowed"),
    ]:
        with pytest.raises(CommandRejected) as refused:
            core.apply(state, PerformActions(action_ids=["fact-finder", "welcome-letter"],
                                             overrides=wrong), T0)  # fmt: skip
        assert refused.value.code == code


def test_modifying_an_active_activity_changes_it_and_is_a_history_entry() -> None:
    state = opened()
    intro = _intro_call(state)
    due = datetime(2027, 2, 1, 9, 30, tzinfo=UTC)
    decision = core.apply(
        state, ModifyActivity(activity_id=intro.activity_id, due=due, assignee="bob", by="ann"),
        T0,
    )  # fmt: skip
    entry, change = decision.effects
    assert isinstance(entry, RecordHistory) and isinstance(change, ModifyCalendarActivity)
    assert (change.starts_at, change.assignee, change.subject) == (due, "bob", None)
    assert entry.entry.from_stage == entry.entry.to_stage == "Prospect"
    assert entry.entry.reason == f"calendar activity {intro.activity_id} changed: due, assignee"
    assert decision.state.current_stage == "Prospect" and decision.state.revision == 1
    done = core.apply(state, RecordOutcome(activity_id=intro.activity_id, outcome="X"), T0).state
    with pytest.raises(CommandRejected) as refused:
        core.apply(done, ModifyActivity(activity_id=intro.activity_id, notes="late"), T0)
    assert refused.value.code == "activity_not_active"
    with pytest.raises(ValueError, match="give at least one of due"):
        ModifyActivity(activity_id=intro.activity_id)


def test_moving_to_another_process_takes_its_actions_and_keeps_the_history() -> None:
    state = opened()
    intro = _intro_call(state)
    other = SalesProcess(version=4, definition=ProcessDefinition.model_validate(
        example_definition("other", name="Pensions")))  # fmt: skip
    move = MoveProcess(process_id="other", stage="Needs analysis", by="ann")
    decision = core.apply(state, move, T0, LookedUp(process=FoundProcess(process=other)))
    moved = decision.state
    assert (moved.process_id, moved.process_version, moved.current_stage) == (
        "other", 4, "Needs analysis")  # fmt: skip
    assert moved.history[-1].reason == "moved from process life v1"
    assert moved.history[-1].canceled_activities == [intro.activity_id]
    assert [type(e).__name__ for e in decision.effects][:2] == [
        "CancelCalendarActivity", "RecordStageLeft"]  # fmt: skip
    assert any(isinstance(e, CreateCalendarActivity) for e in decision.effects)  # on entry
    assert moved.find_action("intro-call")[1].activity_id is None  # the new process's copy
    created = next(e for e in decision.effects if isinstance(e, CreateCalendarActivity))
    assert created.generation == 1  # fact-finder's first (intro-call's 1 stays retired)
    assert moved.retired_generations["intro-call"] == intro.generation
    for found, code in [
        (FoundProcess(), "unknown_process"),
        (FoundProcess(process=other, retired=True), "not_allowed"),
        (FoundProcess(process=PROCESS), "not_allowed"),  # the one it follows
    ]:
        with pytest.raises(CommandRejected) as refused:
            core.apply(state, MoveProcess(process_id="x", stage="Prospect"), T0, LookedUp(found))
        assert refused.value.code == code
    with pytest.raises(CommandRejected, match="unknown stage 'Nowhere'"):
        core.apply(state, MoveProcess(process_id="other", stage="Nowhere"), T0,
                   LookedUp(FoundProcess(process=other)))  # fmt: skip


def test_a_command_naming_a_user_that_does_not_exist_is_refused() -> None:
    state = opened()
    intro = _intro_call(state)
    for command in [
        ModifyActivity(activity_id=intro.activity_id, assignee="zed"),
        PerformActions(action_ids=["welcome-letter", "fact-finder"],
                       overrides={"fact-finder": ActionOverrides(assignee="zed")}),
    ]:  # fmt: skip
        with pytest.raises(CommandRejected, match="unknown user 'zed'") as refused:
            core.apply(state, command, T0, LookedUp(users=frozenset({"ann"})))
        assert refused.value.code == "unknown_user"
    assert core.apply(
        state, ModifyActivity(activity_id=intro.activity_id, assignee="ann"), T0,
        LookedUp(users=frozenset({"ann"})),
    ).state.find_calendar_activity(intro.activity_id)[1].activity_assignee == "ann"  # fmt: skip


def test_a_change_beside_the_stages_is_noted_in_the_history_before_the_advance_it_causes() -> (
    None
):
    """An owner change, an action's edit, a letter performed, a completion: each is a history
    entry in the current stage (source `note`) saying what changed, with its actor, and a
    completion that advances is noted before the entry of the stage it enters."""
    state = opened()
    clock = iter(T0 + timedelta(minutes=n) for n in range(1, 100))

    async def sent(effect: PerformEffect) -> EffectOutcome:
        return EffectOutcome(status="sent")

    def run(command: Any, users: frozenset[str] = frozenset()) -> core.Outcome:
        looked_up = LookedUp(users=users)
        return completed(core.run(state, command, looked_up, sent, lambda: next(clock)))

    steps: list[tuple[Any, frozenset[str]]] = [
        (ChangeOwner(owner="bob", by="ann"), frozenset({"bob"})),
        (ModifyAction(action_id="seminar", changes={"title": "Autumn seminar"}, by="ann"),
         frozenset()),
        (PerformActions(action_ids=["welcome-letter"], by="bob"), frozenset()),
        (CompleteActions(action_ids=["intro-call", "seminar"], outcome="met", by="bob"),
         frozenset()),
    ]  # fmt: skip
    for command, users in steps:
        outcome = run(command, users)
        state = outcome.state
        assert not outcome.result.duplicate
    notes = [(e.source, e.to_stage, e.by, e.reason) for e in state.history[1:]]
    assert notes[:3] == [
        ("note", "Prospect", "ann", "owner: - → bob"),
        ("note", "Prospect", "ann", "modified action 'seminar'"),
        ("note", "Prospect", "bob", "action:welcome-letter: open → completed"),
    ]
    completion, advance = notes[3], notes[4]
    assert completion[:3] == ("note", "Prospect", "bob")
    assert "action:seminar: open → completed" in completion[3]
    assert "activity:o/intro-call/1: active → done" in completion[3]
    assert advance[:2] == ("automatic", "Needs analysis")
    entered = state.history[0]
    assert (entered.left_for, entered.to_stage) == ("Needs analysis", "Prospect")
