"""The sales-process rules: a command applied to an opportunity gives the new opportunity, the
effects to carry out, and the result to report. Pure functions over pydantic models: no Temporal,
no I/O, no clock (the caller passes `now`), so every rule is tested directly and replays exactly.

The shell calls `apply`, carries out the effects, feeds the outcome of each perform effect back
through `settle`, and reports `finish`'s result.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from sales import action_rules, stage_rules
from sales.commands import ChangeOwner, ChangeStage, Command, command_name
from sales.effects import Effect, EffectOutcome, PerformEffect
from sales.errors import CommandRejected
from sales.opportunity import (
    MAX_REJECTED,
    MAX_REQUEST_IDS,
    ActionState,
    Opportunity,
    Rejection,
    StageState,
    StartOpportunity,
)
from sales.process import SalesProcess
from sales.results import ActionResult, Change, CommandResult

__all__ = ["ActionResult", "CommandResult", "Decision", "apply", "check", "open_opportunity"]

RULES: dict[type[Command], Callable[[Opportunity, Any, datetime], Change]] = {
    ChangeStage: stage_rules.change_stage,
    ChangeOwner: stage_rules.change_owner,
    **action_rules.RULES,
}


class Decision(BaseModel):
    state: Opportunity
    effects: list[Effect]
    result: CommandResult


def open_opportunity(
    start: StartOpportunity,
    process: SalesProcess,
    now: datetime,
    *,
    contact_name: str | None = None,
    day_seconds: int = 86400,
) -> Decision:
    """The opportunity as it is created: in its initial stage, with one `start` history entry."""
    definition = process.definition
    stage = start.stage or definition.stages[0].name
    if definition.stage(stage) is None:
        raise CommandRejected(
            f"unknown stage {stage!r} for process {definition.process_id!r}; "
            f"stages are {definition.stage_names()}"
        )
    state = Opportunity(
        opportunity_id=start.opportunity_id,
        contact_id=start.contact_id,
        contact_name=contact_name,
        name=start.name,
        owner=start.owner,
        process_id=definition.process_id,
        process_version=process.version,
        process=definition,
        current_stage=stage,
        stage_entered_at=now,
        created_at=now,
        stages=[
            StageState(name=s.name, actions=[ActionState(definition=a) for a in s.actions])
            for s in definition.stages
        ],
    )
    state.day_seconds = day_seconds
    effects = stage_rules.enter_stage(state, stage, now, source="start", by=start.by, reason=None)
    return Decision(
        state=state,
        effects=effects,
        result=_result(state, "start", None, f"opened in stage {stage!r}"),
    )


def _copy(state: Opportunity) -> Opportunity:
    """The state to change, copied as deep as the rules change things in place: each stage and
    each action state (their scalars are set), but not the action definitions (replaced whole
    by `modify_action`) nor `history`, `rejected`, `applied_request_ids` (always replaced by
    new lists) nor the process definition (never changed). A full deep copy made a command's
    cost grow with the run: 2 ms per command at 5,000 request ids, 97% of applying it
    (profiled), repeated for every command whenever a run is replayed."""
    stages = [
        stage.model_copy(update={"actions": [action.model_copy() for action in stage.actions]})
        for stage in state.stages
    ]
    return state.model_copy(update={"stages": stages})


def check(state: Opportunity, command: Command) -> None:
    """Raise `CommandRejected` if the command cannot be applied to this state; change nothing."""
    apply(state, command, state.stage_entered_at)


def apply(state: Opportunity, command: Command, now: datetime) -> Decision:
    """Apply a command. Raises `CommandRejected` (with the state untouched) when it is invalid."""
    name = command_name(command)
    if state.has_applied(command.request_id):
        return Decision(
            state=state,
            effects=[],
            result=_result(state, name, command.request_id, "already applied", duplicate=True),
        )
    stage_rules.require_open(state)
    new = _copy(state)
    change = RULES[type(command)](new, command, now)
    new.revision += 1
    new.last_command_at = now
    if command.request_id is not None:
        new.applied_request_ids = [*new.applied_request_ids, command.request_id][-MAX_REQUEST_IDS:]
    result = _result(new, name, command.request_id, change.message)
    result.actions = change.actions
    return Decision(state=new, effects=change.effects, result=result)


def settle(
    state: Opportunity, effect: PerformEffect, outcome: EffectOutcome, now: datetime
) -> tuple[Opportunity, ActionResult]:
    """The state after a perform effect had `outcome` (activity created, letter sent, ...)."""
    new = _copy(state)
    return new, action_rules.settle(new, effect, outcome, now)


def follow_through(before: Opportunity, state: Opportunity, now: datetime) -> Decision | None:
    """What follows a command once its effects are settled: the automatic advance when it
    completed the last open action of the stage (None when nothing follows)."""
    if stage_rules.advance_target(before, state) is None:
        return None  # most commands: no copy needed to find that out
    new = _copy(state)
    effects = stage_rules.automatic_advance(before, new, now)
    new.revision += 1
    message = f"moved automatically from {state.current_stage!r} to {new.current_stage!r}"
    return Decision(state=new, effects=effects, result=_result(new, "advance", None, message))


def next_deadline(state: Opportunity) -> datetime | None:
    """When the next stage timer fires (None: no timer runs in this stage)."""
    return stage_rules.next_deadline(state)


def fire_timers(state: Opportunity, now: datetime) -> Decision | None:
    """The stage timers due at `now`: a follow-up activity, or the move to the next stage."""
    new = _copy(state)
    change = stage_rules.fire_timers(new, now)
    if change is None:
        return None
    new.revision += 1
    return Decision(
        state=new, effects=change.effects, result=_result(new, "timer", None, change.message)
    )


def reopen(state: Opportunity, stage: str, by: str | None, now: datetime) -> Decision:
    """A won or lost opportunity opened again in `stage` (history source `reopened`)."""
    new = _copy(state)
    change = stage_rules.reopen(new, stage, by, now)
    new.revision += 1
    new.last_command_at = now
    return Decision(
        state=new, effects=change.effects, result=_result(new, "reopen", None, change.message)
    )


def finish(
    state: Opportunity,
    result: CommandResult,
    settled: list[ActionResult],
    followed: CommandResult | None = None,
) -> CommandResult:
    """The command's result once its effects are settled (and what followed it, if anything)."""
    actions = [*result.actions, *settled]
    message = result.message or "; ".join(f"{a.action_id}: {a.outcome}" for a in actions)
    if followed is not None:
        message += f"; {followed.message}"
    return result.model_copy(
        update={
            "actions": actions,
            "created_activities": [
                a.activity_id for a in actions if a.outcome == "activity_created" and a.activity_id
            ],
            "message": message,
            "current_stage": state.current_stage,
            "status": state.status,
        }
    )


def reject(
    state: Opportunity, name: str, payload: object, reason: str, now: datetime
) -> Opportunity:
    """Keep a rejected signal in `rejected` (the newest `MAX_REJECTED`); nothing else changes."""
    new = state.model_copy()
    record = Rejection(
        command=name,
        payload=payload if isinstance(payload, dict) else {"value": payload},
        reason=reason,
        at=now,
    )
    new.rejected = [*state.rejected, record][-MAX_REJECTED:]
    return new


def _result(
    state: Opportunity,
    name: str,
    request_id: str | None,
    message: str,
    *,
    duplicate: bool = False,
) -> CommandResult:
    return CommandResult(
        command=name,
        request_id=request_id,
        duplicate=duplicate,
        message=message,
        current_stage=state.current_stage,
        status=state.status,
    )


def replay_history(history: list[Any]) -> str | None:
    """The stage the history ends in: what the current stage must always equal."""
    stage: str | None = None
    for entry in history:
        if entry.from_stage != stage and entry.source != "start":
            raise ValueError(
                f"history entry {entry.seq} leaves {entry.from_stage!r}, not {stage!r}"
            )
        stage = entry.to_stage
    return stage
