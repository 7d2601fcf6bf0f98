"""Advancing: stage changes and their effects, automatic advance, stage timers, closing and
reopening.

Entering a stage records one history entry, cancels the open activities of the stage left when
asked (and allowed), creates the activities of actions marked `create_activity_on_entry`, and
sets the status of closing stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sales import value_rules
from sales.calendar_rules import calendar_key, new_calendar_activity
from sales.commands import (
    ActivityDetails,
    ChangeOwner,
    ChangeStage,
    MoveProcess,
    RecordExternalStatus,
)
from sales.effects import CancelCalendarActivity, Effect, RecordHistory, RecordStageLeft
from sales.errors import CommandRejected
from sales.opportunity import (
    MAX_HISTORY,
    MAX_RETIRED,
    ActionState,
    ExternalStatus,
    HistoryEntry,
    HistorySource,
    Opportunity,
    StageLeft,
    StageState,
)
from sales.process import ActivitySpec, CalendarAction, FoundProcess
from sales.results import ActionResult, Ruling
from sales.validation import EARLIEST, MAX_ACTIONS, MAX_ACTIONS_PER_STAGE, MAX_NOTES, cut


def require_stage(state: Opportunity, stage: str) -> None:
    if state.process.stage(stage) is None:
        raise CommandRejected(
            f"unknown stage {stage!r} for process {state.process_id!r}; "
            f"stages are {state.process.stage_names()}",
            code="unknown_stage",
        )


def require_open(state: Opportunity) -> None:
    if state.status != "open":
        when = f" on {state.closed_at:%Y-%m-%d}" if state.closed_at else ""
        raise CommandRejected(
            f"the opportunity is closed ({state.status}{when}, stage {state.current_stage!r}); "
            "reopen it to change it",
            code="closed",
        )


def change_stage(state: Opportunity, command: ChangeStage, now: datetime) -> Ruling:
    if command.expected_stage is not None and command.expected_stage != state.current_stage:
        raise CommandRejected(
            f"the opportunity is in stage {state.current_stage!r}, not {command.expected_stage!r}"
            " as the command expects: it has moved meanwhile; nothing changed",
            code="stage_changed",
        )
    target = command.stage if command.stage is not None else next_open_stage(state)
    require_stage(state, target)
    if target == state.current_stage:
        raise CommandRejected(
            f"the opportunity is already in stage {target!r}", code="already_in_stage"
        )
    require_cancel_allowed(state, command.cancel_open_activities)
    require_entry_overrides(state, target, command.overrides)
    definition = state.process.stage(target)
    assert definition is not None
    why = value_rules.close_reason(state, definition, command.reason, by_hand=True)
    left = state.current_stage
    blocked = blocked_on_entry(state, target)
    effects = enter_stage(
        state,
        target,
        now,
        source=command.source,
        by=command.by,
        reason=command.reason,
        cancel=cancels_on_leaving(state, command.cancel_open_activities),
        details=command.overrides,
        close_reason=why,
    )
    return Ruling(f"moved from {left!r} to {target!r}", effects, blocked)


def next_open_stage(state: Opportunity) -> str:
    """The stage after the current one; `CommandRejected` (`no_next_stage`) when there is
    none or it closes the opportunity (winning or losing is named, never "next")."""
    following = state.process.next_stage(state.current_stage)
    if following is None or following.closes_as:
        what = (
            "the last stage"
            if following is None
            else f"followed by {following.name!r}, which closes it as {following.closes_as}"
        )
        raise CommandRejected(
            f"stage {state.current_stage!r} is {what}: there is no next open stage; "
            "name the stage to move to",
            code="no_next_stage",
        )
    return following.name


def creates_on_entry(state: Opportunity, stage: str) -> list[ActionState]:
    """The actions of `stage` whose calendar activity entering it creates: calendar actions
    marked `create_activity_on_entry`, not completed and without an activity."""
    return [
        action
        for action in state.stage_state(stage).actions
        if isinstance(action.definition, CalendarAction)
        and action.definition.create_activity_on_entry
        and action.activity_id is None
        and not action.completed
    ]


def blocked_on_entry(state: Opportunity, stage: str) -> list[ActionResult]:
    """What entering `stage` cannot create because the action's activity was canceled (an
    action has one activity until it is deleted), said per action."""
    return [
        ActionResult(
            action_id=action.action_id,
            outcome="activity_exists",
            code="activity_canceled",
            activity_id=action.activity_id,
            message=f"calendar activity {action.activity_id} was canceled, so none was created"
            " on entering the stage; to create another, delete it (delete_activity), then "
            "perform the action",
        )
        for action in state.stage_state(stage).actions
        if isinstance(action.definition, CalendarAction)
        and action.definition.create_activity_on_entry
        and action.activity_status == "canceled"
        and not action.completed
    ]


def require_entry_overrides(
    state: Opportunity, stage: str, overrides: Mapping[str, ActivityDetails]
) -> None:
    """Overrides may only name actions whose activity entering `stage` creates."""
    created = [action.action_id for action in creates_on_entry(state, stage)]
    for action_id in overrides:
        if action_id not in created:
            raise CommandRejected(
                f"overrides name {action_id!r}, but entering stage {stage!r} creates "
                + (f"activities only for {created}" if created else "no calendar activity"),
                code="unknown_action",
            )


def require_cancel_allowed(state: Opportunity, cancel: bool | None) -> None:
    if cancel and not state.process.allow_cancel_activities:
        raise CommandRejected(
            f"process {state.process_id!r} does not allow cancelling activities on a stage "
            "change; send cancel_open_activities: false",
            code="not_allowed",
        )


def cancels_on_leaving(state: Opportunity, asked: bool | None) -> bool:
    """Whether moving on cancels the open activities of the stage left: as the command asks,
    else the process's `cancel_on_advance`, never beyond `allow_cancel_activities`."""
    wanted = state.process.cancel_on_advance if asked is None else asked
    return wanted and state.process.allow_cancel_activities


def record_external_status(
    state: Opportunity, command: RecordExternalStatus, now: datetime
) -> Ruling:
    """Another system's status: kept on the opportunity; a status the process maps to
    another stage moves it there (source `external`; a loss takes the process's default
    reason), any other is a history entry in the current stage."""
    state.external_status = ExternalStatus(
        source=command.source, reference=command.reference, status=command.status, at=now
    )
    said = f"{command.source} {command.reference}: {command.status}"
    target = state.process.external_status_stages.get(command.status)
    if target is None or target == state.current_stage:
        entry = note_in_history(state, now, command.by, f"external status {said}")
        return Ruling(f"external status {said} recorded", [RecordHistory(entry=entry)])
    definition = state.process.stage(target)
    assert definition is not None
    why = value_rules.close_reason(state, definition, None, by_hand=False)
    left = state.current_stage
    effects = enter_stage(
        state, target, now, source="external", by=command.by, reason=said,
        cancel=cancels_on_leaving(state, None), close_reason=why,
    )  # fmt: skip
    return Ruling(f"external status {said}: moved from {left!r} to {target!r}", effects)


def change_owner(state: Opportunity, command: ChangeOwner, now: datetime) -> Ruling:
    if command.owner == state.owner:
        raise CommandRejected(
            f"the opportunity is already owned by {command.owner!r}", code="already_owned"
        )
    previous = state.owner
    state.owner = command.owner
    return Ruling(f"owner changed from {previous!r} to {command.owner!r}")


def record(state: Opportunity, **entry: Any) -> HistoryEntry:
    """A new history entry, numbered after every earlier one; the state keeps the newest
    `MAX_HISTORY` (the read model keeps them all)."""
    state.history_entries += 1
    made = HistoryEntry(seq=state.history_entries, **entry)
    state.history = [*state.history, made][-MAX_HISTORY:]
    return made


def note_in_history(state: Opportunity, now: datetime, by: str | None, reason: str) -> HistoryEntry:
    """A history entry that stays in the current stage (a change beside the stages)."""
    return record(
        state,
        at=now,
        from_stage=state.current_stage,
        to_stage=state.current_stage,
        source="note",
        by=by,
        reason=cut(reason, MAX_NOTES + 200),
    )


def every_active_activity(state: Opportunity) -> list[ActionState]:
    """Actions of any stage whose linked activity is still active."""
    return [a for stage in state.stages for a in stage.actions if a.activity_status == "active"]


def cancel_activities(
    state: Opportunity, actions: list[ActionState]
) -> tuple[list[Effect], list[str]]:
    """Cancel the actions' linked activities (in place): the effects, and their ids."""
    effects: list[Effect] = []
    canceled: list[str] = []
    for action in actions:
        key = calendar_key(state, action)
        effects.append(CancelCalendarActivity(key=key))
        action.activity_status = "canceled"
        canceled.append(key.activity_id)
    return effects, canceled


def active_calendar_activities(state: Opportunity, stage: str) -> list[ActionState]:
    """Actions of `stage` whose linked activity is still active."""
    return [a for a in state.stage_state(stage).actions if a.activity_status == "active"]


def enter_stage(
    state: Opportunity,
    stage: str,
    now: datetime,
    *,
    source: HistorySource,
    by: str | None,
    reason: str | None,
    cancel: bool = False,
    details: Mapping[str, ActivityDetails] | None = None,
    close_reason: str | None = None,
) -> list[Effect]:
    """Move `state` (in place) into `stage` and say what must be carried out; `details` are
    the user's, per action, for the activities entering creates."""
    effects: list[Effect] = []
    canceled: list[str] = []
    if cancel and source != "start":
        effects, canceled = cancel_activities(
            state, active_calendar_activities(state, state.current_stage)
        )
    given = details or {}
    creates = [
        new_calendar_activity(state, action, action.definition, now, given.get(action.action_id))
        for action in creates_on_entry(state, stage)
        if isinstance(action.definition, CalendarAction)
    ]
    if source != "start":
        effects.append(leave_stage(state, now, stage))
    entry = record(
        state,
        at=now,
        from_stage=None if source == "start" else state.current_stage,
        to_stage=stage,
        source=source,
        by=by,
        reason=reason,
        canceled_activities=canceled,
        created_activities=[effect.activity_id for effect in creates],
    )
    if stage not in state.visited:
        state.visited = [*state.visited, stage]
    state.current_stage = stage
    state.stage_entered_at = now
    state.entered_seq = entry.seq
    definition = state.process.stage(stage)
    closes_as = definition.closes_as if definition else None
    state.status = closes_as or "open"
    state.closed_at = now if closes_as else None
    if definition is not None:
        state.close_reason = close_reason if closes_as else None
        value_rules.follow_stage(state)
        value_rules.on_closing(state, definition, now)
    return [*effects, RecordHistory(entry=entry), *creates]


MAX_STAGE_TOTALS = 200
"""Stages whose time the state totals; past it (an opportunity moved across many processes),
the oldest totals are folded into `OTHER_STAGES`."""
OTHER_STAGES = "(other stages)"


def stay_seconds(since: datetime, until: datetime) -> int:
    """Whole seconds from `since` to `until`, counted on the clock's whole seconds, so that
    consecutive stays add up to exactly the time they span."""
    return max(0, int(until.timestamp()) - int(since.timestamp()))


def leave_stage(state: Opportunity, now: datetime, to_stage: str) -> RecordStageLeft:
    """Leave the current stage for `to_stage` (in place): its stay added to the totals per
    stage, and the history entry that entered it told when it was left, for which stage, and
    how long it lasted."""
    seconds = stay_seconds(state.stage_entered_at, now)
    totals = dict(state.stage_seconds)
    totals[state.current_stage] = totals.pop(state.current_stage, 0) + seconds
    while len(totals) > MAX_STAGE_TOTALS:
        oldest = next(name for name in totals if name != OTHER_STAGES)
        totals[OTHER_STAGES] = totals.get(OTHER_STAGES, 0) + totals.pop(oldest)
    state.stage_seconds = totals
    left = StageLeft(
        seq=state.entered_seq, left_at=now, duration_seconds=seconds, left_for=to_stage
    )
    state.history = [
        entry.model_copy(update={"left_at": now, "duration_seconds": seconds, "left_for": to_stage})
        if entry.seq == left.seq
        else entry
        for entry in state.history
    ]
    return RecordStageLeft(left=left)


def time_in_stages(state: Opportunity, now: datetime) -> dict[str, int]:
    """Seconds spent in each stage so far, the current stay included."""
    totals = dict(state.stage_seconds)
    current = stay_seconds(state.stage_entered_at, now)
    totals[state.current_stage] = totals.get(state.current_stage, 0) + current
    return totals


def automatic_advance(before: Opportunity, state: Opportunity, now: datetime) -> list[Effect]:
    """Move on when a command completed the last open action of the current stage.

    Only with `change_stage_automatically`; a stage without actions never advances by itself,
    and a closing stage is neither left nor entered automatically: winning or losing a sale is
    somebody's decision.
    """
    following = advance_target(before, state)
    if following is None:
        return []
    return enter_stage(
        state,
        following,
        now,
        source="automatic",
        by=None,
        reason=f"all actions of {state.current_stage!r} completed",
        cancel=cancels_on_leaving(state, None),
    )


def advance_target(before: Opportunity, state: Opportunity) -> str | None:
    """The stage `automatic_advance` would enter, without changing anything (None: stay)."""
    if not state.process.change_stage_automatically or state.status != "open":
        return None
    if state.current_stage != before.current_stage:
        return None
    stage = state.stage_state(state.current_stage)
    if not stage.actions or before.open_actions() == 0 or state.open_actions() > 0:
        return None
    if _completed(state) <= _completed(before):
        return None  # the last open action was deleted, not completed
    following = state.process.next_stage(state.current_stage)
    if following is None or following.closes_as:
        return None
    return following.name


def _completed(state: Opportunity) -> int:
    return sum(action.completed for action in state.stage_state(state.current_stage).actions)


# --- stage timers -----------------------------------------------------------------------------


def _days(state: Opportunity, days: int) -> timedelta:
    return timedelta(seconds=days * state.day_seconds)


def _advance_due(state: Opportunity) -> datetime | None:
    definition = state.process.stage(state.current_stage)
    if definition is None or not definition.advance_after_days:
        return None
    following = state.process.next_stage(state.current_stage)
    if following is None or following.closes_as:
        return None
    return state.stage_entered_at + _days(state, definition.advance_after_days)


def _open_follow_up(state: Opportunity) -> bool:
    return any(
        a.action_id.startswith("follow-up-") and not a.completed
        for a in state.stage_state(state.current_stage).actions
    )


def _follow_up_due(state: Opportunity) -> datetime | None:
    definition = state.process.stage(state.current_stage)
    if definition is None or not definition.follow_up_after_days or _open_follow_up(state):
        return None
    idle_since = max(state.stage_entered_at, state.last_command_at or state.stage_entered_at)
    return idle_since + _days(state, definition.follow_up_after_days)


def _idle_due(state: Opportunity) -> datetime | None:
    definition = state.process.stage(state.current_stage)
    if definition is None or not definition.idle_after_days or state.idle_since is not None:
        return None
    quiet_since = max(state.stage_entered_at, state.last_command_at or state.stage_entered_at)
    return quiet_since + _days(state, definition.idle_after_days)


DUE_NOTICE_DAYS = 1
"""An active calendar activity falls due (`activity_due`) this many days before it starts, and
is overdue (`activity_overdue`) once it starts undone: the one definition of overdue
(`value_rules.overdue`)."""


def _notices(state: Opportunity) -> list[tuple[datetime, ActionState, str]]:
    """The due and overdue notices of the active calendar activities not yet made: when each
    is due, its action, and which."""
    lead = _days(state, DUE_NOTICE_DAYS)
    found = []
    for stage in state.stages:
        for action in stage.actions:
            starts = action.activity_starts_at
            if action.activity_status != "active" or starts is None:
                continue
            if action.activity_due_noted != starts:
                found.append((max(starts - lead, EARLIEST), action, "due"))
            if action.activity_overdue_noted != starts:
                found.append((starts, action, "overdue"))
    return found


def next_deadline(state: Opportunity) -> datetime | None:
    """When a timer fires next (None: no timer is running): the move on, the follow-up, the
    opportunity going idle, an activity falling due or becoming overdue."""
    if state.status != "open":
        return None
    due = [
        d for d in (_advance_due(state), _follow_up_due(state), _idle_due(state)) if d is not None
    ]
    due += [at for at, _, _ in _notices(state)]
    return min(due) if due else None


def _note_activities(state: Opportunity, now: datetime) -> Ruling | None:
    """Note every due and overdue notice that is due at `now` (in place)."""
    noted = 0
    for at, action, which in _notices(state):
        if at > now:
            continue
        noted += 1
        if which == "due":
            action.activity_due_noted = action.activity_starts_at
        else:
            action.activity_overdue_noted = action.activity_starts_at
    return Ruling(f"{noted} calendar activity notices") if noted else None


def fire_timers(state: Opportunity, now: datetime) -> Ruling | None:
    """Apply the stage timers due at `now` to `state` (in place); None if none is due."""
    advance = _advance_due(state)
    if state.status == "open" and advance is not None and advance <= now:
        days = state.process.stage(state.current_stage).advance_after_days  # type: ignore[union-attr]
        left = state.current_stage
        following = state.process.next_stage(left)
        assert following is not None
        effects = enter_stage(
            state,
            following.name,
            now,
            source="automatic",
            by=None,
            reason=f"{days} days in stage {left!r}",
        )
        return Ruling(f"moved from {left!r} to {following.name!r} after {days} days", effects)
    follow_up = _follow_up_due(state)
    if state.status == "open" and follow_up is not None and follow_up <= now:
        return _add_follow_up(state, now)
    idle = _idle_due(state)
    if state.status == "open" and idle is not None and idle <= now:
        state.idle_since = idle
        return Ruling(f"idle in stage {state.current_stage!r} since {idle.isoformat()}")
    if state.status == "open":
        return _note_activities(state, now)
    return None


def _add_follow_up(state: Opportunity, now: datetime) -> Ruling:
    """A follow-up action with its activity. A stage (or an opportunity) with no room for
    another action first drops its oldest completed follow-up; without one, none is added
    and the timer waits another idle period."""
    definition = state.process.stage(state.current_stage)
    assert definition is not None and definition.follow_up_after_days
    stage = state.stage_state(state.current_stage)
    state.last_command_at = now
    if not has_room(state, stage):
        oldest = next((a for a in stage.actions if a.action_id.startswith("follow-up-")), None)
        if oldest is None:
            return Ruling("no room for a follow-up action in this stage")
        stage.actions = [a for a in stage.actions if a is not oldest]
        retire(state, [oldest])
    taken = {a.action_id for s in state.stages for a in s.actions}
    state.follow_ups += 1
    while f"follow-up-{state.follow_ups}" in taken:
        state.follow_ups += 1
    action_id = f"follow-up-{state.follow_ups}"
    action = ActionState(
        definition=CalendarAction(
            action_id=action_id,
            type="calendar",
            title=cut(
                f"Follow up: {definition.follow_up_after_days} days without activity "
                f"in {state.current_stage}",
                500,
            ),
            activity=ActivitySpec(kind="follow-up", duration_minutes=15),
        ),
        generation=state.retired_generation(action_id),
    )
    stage.actions = [*stage.actions, action]
    effect = new_calendar_activity(state, action, action.definition, now)  # type: ignore[arg-type]
    return Ruling(f"follow-up {action.action_id} created", [effect])


def has_room(state: Opportunity, stage: StageState) -> bool:
    """Whether `stage` may take one more action (`MAX_ACTIONS_PER_STAGE`, and `MAX_ACTIONS`
    in all the opportunity's stages)."""
    total = sum(len(s.actions) for s in state.stages)
    return len(stage.actions) < MAX_ACTIONS_PER_STAGE and total < MAX_ACTIONS


def retire(state: Opportunity, actions: list[ActionState]) -> None:
    """Remember the generations of actions that leave the opportunity, so that an action
    added again under the same id never reuses a side effect's key; past `MAX_RETIRED`, the
    oldest are folded into `retired_floor`."""
    retired = dict(state.retired_generations)
    for action in actions:
        if action.generation:
            known = retired.get(action.action_id, state.retired_floor)
            retired[action.action_id] = max(known, action.generation)
    while len(retired) > MAX_RETIRED:
        state.retired_floor = max(state.retired_floor, retired.pop(next(iter(retired))))
    state.retired_generations = retired


# --- reopening --------------------------------------------------------------------------------


def reopen(state: Opportunity, stage: str, by: str | None, now: datetime) -> Ruling:
    if state.status == "open":
        raise CommandRejected(
            "the opportunity is open; only a won or lost one can be reopened", code="not_closed"
        )
    if state.status == "deleted":
        raise CommandRejected("a deleted opportunity cannot be reopened", code="not_allowed")
    require_stage(state, stage)
    definition = state.process.stage(stage)
    if definition is not None and definition.closes_as:
        raise CommandRejected(
            f"stage {stage!r} closes the opportunity; reopen it in one of "
            f"{[s.name for s in state.process.stages if not s.closes_as]}",
            code="not_allowed",
        )
    left = state.current_stage
    blocked = blocked_on_entry(state, stage)
    effects = enter_stage(state, stage, now, source="reopened", by=by, reason=None)
    return Ruling(f"reopened: moved from {left!r} to {stage!r}", effects, blocked)


# --- moving to another process ----------------------------------------------------------------


def move_process(
    state: Opportunity, command: MoveProcess, now: datetime, found: FoundProcess
) -> Ruling:
    """Into a stage of another process's latest version: the old process's active calendar
    activities are canceled, its action states dropped (their work stays in history), the new
    stage is entered as by hand."""
    target = found.process
    if target is None:
        raise CommandRejected(f"unknown process {command.process_id!r}", code="unknown_process")
    if found.retired:
        raise CommandRejected(
            f"process {command.process_id!r} is retired: it takes no opportunities",
            code="not_allowed",
        )
    definition = target.definition
    if definition.stage(command.stage) is None:
        raise CommandRejected(
            f"unknown stage {command.stage!r} for process {definition.process_id!r}; "
            f"stages are {definition.stage_names()}",
            code="unknown_stage",
        )
    if (definition.process_id, target.version) == (state.process_id, state.process_version):
        raise CommandRejected(
            f"the opportunity follows {definition.process_id} v{target.version} already; "
            "change its stage instead",
            code="not_allowed",
        )
    effects, canceled = cancel_activities(state, every_active_activity(state))
    retire(state, [a for stage in state.stages for a in stage.actions])
    left = f"{state.process_id} v{state.process_version}"
    state.process = definition
    state.process_id = definition.process_id
    state.process_version = target.version
    state.stages = [
        StageState(
            name=s.name,
            actions=[
                ActionState(definition=a, generation=state.retired_generation(a.action_id))
                for a in s.actions
            ],
        )
        for s in definition.stages
    ]
    state.visited = []
    effects += enter_stage(
        state, command.stage, now, source="manual", by=command.by,
        reason=f"moved from process {left}",
    )  # fmt: skip
    entered = state.history[-1]
    entered.canceled_activities = canceled
    return Ruling(
        f"moved to stage {command.stage!r} of {definition.process_id} v{target.version}",
        effects,
    )
