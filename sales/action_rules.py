"""Stage actions: perform, complete, add, modify and delete them; the calendar side of linked
activities (outcome recorded, activity deleted); and settling what performing did.

Every rule works on a copy of the state and raises `CommandRejected` before changing anything
when the command cannot be applied as a whole.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from sales import value_rules
from sales.calendar_rules import (
    calendar_key,
    display_id,
    new_calendar_activity,
    require_in_range,
)
from sales.commands import (
    ActivityDetails,
    AddAction,
    CompleteActions,
    DeleteAction,
    DeleteActivity,
    ModifyAction,
    ModifyActivity,
    PerformActions,
    RecordOutcome,
)
from sales.effects import (
    CompleteCalendarActivity,
    CreateCalendarActivity,
    DeleteCalendarActivity,
    Effect,
    EffectOutcome,
    InviteToEvent,
    LetterContext,
    ModifyCalendarActivity,
    PerformEffect,
    RecordHistory,
    SendLetter,
)
from sales.errors import CommandRejected
from sales.opportunity import (
    MAX_ERROR_MESSAGE,
    ActionState,
    EffectFailure,
    Opportunity,
    StageState,
)
from sales.process import Action, CalendarAction, EventAction, LetterAction
from sales.results import ActionResult, Ruling
from sales.stage_rules import (
    blocked_on_entry,
    cancels_on_leaving,
    enter_stage,
    has_room,
    note_in_history,
    require_cancel_allowed,
    require_entry_overrides,
    require_stage,
    retire,
)
from sales.validation import (
    MAX_ACTION_BYTES,
    MAX_ACTIONS,
    MAX_ACTIONS_PER_STAGE,
    MAX_CODE,
    cut,
    json_size,
    validate,
)

_ACTION = TypeAdapter(Action)


def _tagged(state: Opportunity, action_ids: list[str]) -> list[ActionState]:
    """The tagged actions, each once, in the order given; all must be of current/previous
    stages and not completed."""
    visited = state.visited_stages()
    tagged: list[ActionState] = []
    for action_id in dict.fromkeys(action_ids):
        found = state.find_action(action_id)
        if found is None:
            available = [a.action_id for stage in visited for a in state.stage_state(stage).actions]
            raise CommandRejected(
                f"unknown action {action_id!r}; actions of the current and previous stages "
                f"are {available}",
                code="unknown_action",
            )
        stage, action = found
        if stage.name not in visited:
            raise CommandRejected(
                f"action {action_id!r} belongs to stage {stage.name!r}, which the opportunity "
                f"has not reached (current stage: {state.current_stage!r})",
                code="action_not_reached",
            )
        if action.completed:
            raise CommandRejected(
                f"action {action_id!r} is already completed", code="already_completed"
            )
        tagged.append(action)
    return tagged


def _check_overrides(tagged: list[ActionState], command: PerformActions) -> None:
    """Overrides name tagged actions, details go to calendar actions, a method to letters."""
    types = {action.action_id: action.definition.type for action in tagged}
    for action_id, given in command.overrides.items():
        kind = types.get(action_id)
        if kind is None:
            raise CommandRejected(
                f"overrides name {action_id!r}, which is not among the tagged actions "
                f"{list(types)}",
                code="unknown_action",
            )
        details = given.given()
        method = given.method
        if details and kind != "calendar":
            raise CommandRejected(
                f"{sorted(details)} are details of a calendar activity; {action_id!r} is a "
                f"{kind} action",
                code="not_allowed",
            )
        if method is not None and kind != "letter":
            raise CommandRejected(
                f"a method is a letter's correspondence option; {action_id!r} is a {kind} action",
                code="not_allowed",
            )


def perform_actions(state: Opportunity, command: PerformActions, now: datetime) -> Ruling:
    change = Ruling("")  # said by `core.finish` once the outcomes are known
    tagged = _tagged(state, command.action_ids)
    _check_overrides(tagged, command)
    for action in tagged:
        given = command.overrides.get(action.action_id)
        definition = action.definition
        if isinstance(definition, CalendarAction):
            if action.activity_status == "canceled":
                change.actions.append(
                    ActionResult(
                        action_id=action.action_id,
                        outcome="activity_exists",
                        code="activity_canceled",
                        message=f"calendar activity {action.activity_id} was canceled (created "
                        f"{action.activity_created_on:%Y-%m-%d}); an action has one activity "
                        "until it is deleted: delete it (delete_activity), then perform the "
                        "action again",
                        activity_id=action.activity_id,
                    )
                )
                continue
            if action.activity_id is not None:
                change.actions.append(
                    ActionResult(
                        action_id=action.action_id,
                        outcome="activity_exists",
                        message=f"calendar activity {action.activity_id} already exists "
                        f"(created {action.activity_created_on:%Y-%m-%d}); delete it to create "
                        "another",
                        activity_id=action.activity_id,
                    )
                )
                continue
            change.effects.append(new_calendar_activity(state, action, definition, now, given))
        elif isinstance(definition, LetterAction):
            action.generation += 1
            change.effects.append(
                SendLetter(
                    opportunity_id=state.opportunity_id,
                    contact_id=state.contact_id,
                    action_id=action.action_id,
                    generation=action.generation,
                    letter_id=display_id(state.opportunity_id, action.action_id, action.generation),
                    template=definition.template,
                    title=definition.title,
                    method=(given.method if given else None) or definition.method,
                    context=LetterContext(
                        opportunity_id=state.opportunity_id,
                        name=state.name,
                        owner=state.owner,
                        current_stage=state.current_stage,
                        process_id=state.process_id,
                        process_name=state.process.name,
                    ),
                )
            )
        elif isinstance(definition, EventAction):
            action.generation += 1
            change.effects.append(
                InviteToEvent(
                    opportunity_id=state.opportunity_id,
                    contact_id=state.contact_id,
                    action_id=action.action_id,
                    generation=action.generation,
                    event_id=definition.event_id,
                )
            )
    return change


def settle(
    state: Opportunity, effect: PerformEffect, outcome: EffectOutcome, now: datetime
) -> ActionResult:
    """Record in `state` (in place) what performing an action did."""
    found = state.find_action(effect.action_id)
    if found is None:  # deleted meanwhile: nothing to record on it
        return ActionResult(action_id=effect.action_id, outcome="failed", message="action deleted")
    _, action = found
    if outcome.status == "failed":
        action.last_error = EffectFailure(
            code=cut(outcome.code or "bad_data", MAX_CODE),
            message=cut(outcome.message, MAX_ERROR_MESSAGE),
            at=now,
        )
        return ActionResult(
            action_id=action.action_id,
            outcome="failed",
            message=outcome.message,
            code=action.last_error.code,
        )
    action.last_error = None
    action.performed_at = now
    if isinstance(effect, CreateCalendarActivity):
        action.activity_id = outcome.activity_id or effect.activity_id
        action.activity_status = "active"
        action.activity_created_on = outcome.created_on or now
        action.activity_outcome = None
        action.activity_assignee = effect.assignee
        action.activity_starts_at = effect.starts_at
        action.activity_ends_at = effect.ends_at
        return ActionResult(
            action_id=action.action_id,
            outcome="activity_created",
            message=outcome.message or f"calendar activity {action.activity_id} created",
            activity_id=action.activity_id,
        )
    _complete(action, now)
    if isinstance(effect, SendLetter):
        sent = outcome.status == "sent"
        return ActionResult(
            action_id=action.action_id,
            outcome="letter_sent" if sent else "letter_filed",
            message=outcome.message,
        )
    invited = outcome.status == "invited"
    return ActionResult(
        action_id=action.action_id,
        outcome="invited" if invited else "already_invited",
        message=outcome.message,
    )


def _complete(action: ActionState, now: datetime) -> None:
    action.completed = True
    action.completed_at = now


def complete_actions(state: Opportunity, command: CompleteActions, now: datetime) -> Ruling:
    tagged = _tagged(state, command.action_ids)
    if command.stage is not None:
        require_stage(state, command.stage)
    require_cancel_allowed(state, command.cancel_open_activities)
    outcome = command.outcome if len(tagged) == 1 else None
    _require_overrides(state, stage_moved_to(state, outcome, command.stage), command.overrides)
    if len(tagged) == 1 and command.outcome is None:
        action = tagged[0]
        definition = action.definition
        if (
            isinstance(definition, CalendarAction)
            and definition.activity.track_outcome
            and action.activity_status == "active"
        ):
            raise CommandRejected(
                f"action {action.action_id!r} has active calendar activity "
                f"{action.activity_id} which tracks outcomes: give an outcome"
                + _listed(state, action),
                code="outcome_required",
            )
    for action in tagged:
        if action.activity_status == "active":
            require_listed_outcome(state, action, command.outcome)
    change = Ruling(f"completed {[a.action_id for a in tagged]}")
    for action in tagged:
        _complete(action, now)
        message = "completed"
        if action.activity_id is not None and action.activity_status == "active":
            change.effects.append(
                CompleteCalendarActivity(
                    key=calendar_key(state, action), outcome=command.outcome, notes=command.notes
                )
            )
            action.activity_status = "done"
            action.activity_outcome = command.outcome
            message = f"completed; calendar activity {action.activity_id} marked done"
        change.actions.append(
            ActionResult(
                action_id=action.action_id,
                outcome="completed",
                message=message,
                activity_id=action.activity_id,
            )
        )
    change.effects += _outcome_stage(state, outcome, command, change, now)
    return change


def add_action(state: Opportunity, command: AddAction, now: datetime) -> Ruling:
    require_stage(state, command.stage)
    existing = state.find_action(command.action.action_id)
    if existing is not None:
        raise CommandRejected(
            f"action id {command.action.action_id!r} is already used in stage "
            f"{existing[0].name!r} of this opportunity",
            code="action_exists",
        )
    stage = state.stage_state(command.stage)
    if not has_room(state, stage):
        raise CommandRejected(
            f"stage {command.stage!r} has {len(stage.actions)} actions and the opportunity "
            f"{sum(len(s.actions) for s in state.stages)}: at most {MAX_ACTIONS_PER_STAGE} "
            f"and {MAX_ACTIONS}",
            code="limit_reached",
        )
    require_small(command.action)
    added = ActionState(
        definition=command.action,
        generation=state.retired_generation(command.action.action_id),
    )
    stage.actions = [*stage.actions, added]
    return Ruling(
        f"added action {command.action.action_id!r} to stage {command.stage!r}",
        actions=[
            ActionResult(action_id=command.action.action_id, outcome="added", message="added")
        ],
    )


def modify_action(state: Opportunity, command: ModifyAction, now: datetime) -> Ruling:
    _, action = _find(state, command.action_id)
    fixed = {"action_id", "type"} & set(command.changes)
    if fixed:
        raise CommandRejected(
            f"{sorted(fixed)} of an action cannot change; delete the action and add another",
            code="not_allowed",
        )
    merged: dict[str, Any] = {**action.definition.model_dump(), **command.changes}
    action.definition = validate(_ACTION, merged, f"changes to action {command.action_id!r}")
    require_small(action.definition)
    return Ruling(
        f"modified action {command.action_id!r}",
        actions=[
            ActionResult(
                action_id=command.action_id,
                outcome="modified",
                message=f"changed {sorted(command.changes)}",
            )
        ],
    )


def delete_action(state: Opportunity, command: DeleteAction, now: datetime) -> Ruling:
    stage, action = _find(state, command.action_id)
    if action.activity_status == "active":
        raise CommandRejected(
            f"action {command.action_id!r} has active calendar activity {action.activity_id}: "
            "delete the activity first, then the action",
            code="activity_active",
        )
    stage.actions = [a for a in stage.actions if a.action_id != command.action_id]
    retire(state, [action])
    return Ruling(
        f"deleted action {command.action_id!r} from stage {stage.name!r}",
        actions=[ActionResult(action_id=command.action_id, outcome="deleted", message="deleted")],
    )


def record_outcome(state: Opportunity, command: RecordOutcome, now: datetime) -> Ruling:
    _, action = _find_calendar_activity(state, command.activity_id)
    if action.activity_status != "active":
        raise CommandRejected(
            f"calendar activity {command.activity_id} is already {action.activity_status}",
            code="activity_not_active",
        )
    definition = action.definition
    tracks = isinstance(definition, CalendarAction) and definition.activity.track_outcome
    if tracks and command.outcome is None:
        raise CommandRejected(
            f"calendar activity {command.activity_id} tracks outcomes: give an outcome"
            + _listed(state, action),
            code="outcome_required",
        )
    require_listed_outcome(state, action, command.outcome)
    if command.stage is not None:
        require_stage(state, command.stage)
    require_cancel_allowed(state, command.cancel_open_activities)
    moved_to = stage_moved_to(state, command.outcome, command.stage)
    _require_overrides(state, moved_to, command.overrides)
    action.activity_status = "done"
    action.activity_outcome = command.outcome
    if not action.completed:
        _complete(action, now)
    change = Ruling(
        f"calendar activity {command.activity_id} done"
        + (f" with outcome {command.outcome!r}" if command.outcome else ""),
        effects=[
            CompleteCalendarActivity(
                key=calendar_key(state, action), outcome=command.outcome, notes=command.notes
            )
        ],
        actions=[
            ActionResult(
                action_id=action.action_id,
                outcome="activity_done",
                message="completed",
                activity_id=command.activity_id,
            )
        ],
    )
    change.effects += _outcome_stage(state, command.outcome, command, change, now)
    return change


def _listed(state: Opportunity, action: ActionState) -> str:
    definition = action.definition
    if not isinstance(definition, CalendarAction):
        return ""
    listed = state.process.outcomes_of(definition.activity.kind)
    return f" ({', '.join(listed)})" if listed else ""


def require_listed_outcome(state: Opportunity, action: ActionState, outcome: str | None) -> None:
    """An outcome of a kind of activity whose outcomes the process lists must be one of them."""
    definition = action.definition
    if outcome is None or not isinstance(definition, CalendarAction):
        return
    listed = state.process.outcomes_of(definition.activity.kind)
    if listed is not None and outcome not in listed:
        raise CommandRejected(
            f"{outcome!r} is not an outcome of a {definition.activity.kind!r} activity; "
            f"outcomes are {listed}",
            code="unknown_outcome",
        )


def stage_moved_to(state: Opportunity, outcome: str | None, stage: str | None) -> str | None:
    """The stage an outcome or a completion moves to: `stage`, else the stage the outcome
    maps to (None: it stays)."""
    target = stage or (state.process.outcome_stages.get(outcome) if outcome else None)
    return None if target == state.current_stage else target


def _require_overrides(
    state: Opportunity, target: str | None, overrides: dict[str, ActivityDetails]
) -> None:
    """Overrides are for the activities of a stage the command moves to."""
    if not overrides:
        return
    if target is None:
        raise CommandRejected(
            "overrides are details of the activities a new stage creates, and this command "
            "does not change the stage: give a stage, or change the activity "
            "(modify_activity) once it exists",
            code="not_allowed",
        )
    require_entry_overrides(state, target, overrides)


def _outcome_stage(
    state: Opportunity,
    outcome: str | None,
    command: CompleteActions | RecordOutcome,
    change: Ruling,
    now: datetime,
) -> list[Effect]:
    """From an activity outcome or a completion: move to the command's stage, else to the
    stage the outcome maps to, cancelling the open activities of the stage left when asked
    (or by the process's default), creating the new stage's activities with the command's
    overrides."""
    target = stage_moved_to(state, outcome, command.stage)
    if target is None:
        return []
    definition = state.process.stage(target)
    assert definition is not None
    why = value_rules.close_reason(state, definition, None, by_hand=False)
    left = state.current_stage
    change.message += f"; moved from {left!r} to {target!r}"
    change.actions += blocked_on_entry(state, target)
    return enter_stage(
        state, target, now, source="outcome", by=command.by,
        reason=outcome or "marked complete",
        cancel=cancels_on_leaving(state, command.cancel_open_activities),
        details=command.overrides, close_reason=why,
    )  # fmt: skip


def delete_activity(state: Opportunity, command: DeleteActivity, now: datetime) -> Ruling:
    _, action = _find_calendar_activity(state, command.activity_id)
    key = calendar_key(state, action)
    action.activity_id = None
    action.activity_status = None
    action.activity_created_on = None
    action.activity_outcome = None
    return Ruling(
        f"deleted calendar activity {command.activity_id}",
        effects=[DeleteCalendarActivity(key=key)],
        actions=[
            ActionResult(
                action_id=action.action_id,
                outcome="activity_deleted",
                message="the action can create a new activity",
                activity_id=command.activity_id,
            )
        ],
    )


def modify_activity(state: Opportunity, command: ModifyActivity, now: datetime) -> Ruling:
    """Change an active calendar activity's details; one history entry in the current stage
    says what changed."""
    _, action = _find_calendar_activity(state, command.activity_id)
    if action.activity_status != "active":
        raise CommandRejected(
            f"calendar activity {command.activity_id} is {action.activity_status}: only an "
            "active one can be changed",
            code="activity_not_active",
        )
    details = command.given()
    _reschedule(action, command)
    if "assignee" in details:
        action.activity_assignee = details["assignee"]
    reason = f"calendar activity {command.activity_id} changed: {', '.join(details)}"
    entry = note_in_history(state, now, command.by, reason)
    changed = ModifyCalendarActivity(
        key=calendar_key(state, action),
        starts_at=details.get("due"),
        duration_minutes=details.get("duration_minutes"),
        subject=details.get("subject"),
        assignee=details.get("assignee"),
        notes=details.get("notes"),
        location=details.get("location"),
    )
    return Ruling(
        entry.reason or "",
        effects=[RecordHistory(entry=entry), changed],
        actions=[
            ActionResult(
                action_id=action.action_id,
                outcome="activity_modified",
                message=f"changed: {', '.join(details)}",
                activity_id=command.activity_id,
            )
        ],
    )


def _reschedule(action: ActionState, command: ModifyActivity) -> None:
    """A new due keeps the duration unless one is given; the new times must lie in the
    business range (checked before anything changes)."""
    if command.due is None and command.duration_minutes is None:
        return
    starts_at = command.due or action.activity_starts_at
    if starts_at is None:  # not known to this state: the store keeps the times
        return
    minutes = command.duration_minutes
    if minutes is None:
        start, end = action.activity_starts_at, action.activity_ends_at
        minutes = 0 if start is None or end is None else (end - start) // timedelta(minutes=1)
    action.activity_ends_at = require_in_range(action.action_id, starts_at, minutes)
    action.activity_starts_at = starts_at


def require_small(action: Action) -> None:
    """An action definition an operator adds or changes is at most `MAX_ACTION_BYTES`."""
    size = json_size(action.model_dump(mode="json"))
    if size > MAX_ACTION_BYTES:
        raise CommandRejected(
            f"action {action.action_id!r} takes {size:,} bytes as JSON; at most "
            f"{MAX_ACTION_BYTES:,}",
            code="limit_reached",
        )


def _find(state: Opportunity, action_id: str) -> tuple[StageState, ActionState]:
    found = state.find_action(action_id)
    if found is None:
        every = [a.action_id for stage in state.stages for a in stage.actions]
        raise CommandRejected(
            f"unknown action {action_id!r}; actions are {every}", code="unknown_action"
        )
    return found


def _find_calendar_activity(state: Opportunity, activity_id: str) -> tuple[StageState, ActionState]:
    found = state.find_calendar_activity(activity_id)
    if found is None:
        linked = [a.activity_id for stage in state.stages for a in stage.actions if a.activity_id]
        raise CommandRejected(
            f"unknown calendar activity {activity_id!r} for this opportunity; "
            f"its linked activities are {linked}",
            code="unknown_activity",
        )
    return found
