"""The sales-process rules: a command applied to an opportunity gives the new opportunity, the
effects to carry out, and the result to report. Pure functions over pydantic models: no Temporal,
no I/O, no clock (the caller passes `now`), so every rule is tested directly and replays exactly.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from sales.commands import ChangeStage, Command, command_name
from sales.effects import Effect, RecordHistory
from sales.errors import CommandRejected
from sales.opportunity import (
    MAX_REJECTED,
    MAX_REQUEST_IDS,
    ActionState,
    HistoryEntry,
    HistorySource,
    Opportunity,
    Rejection,
    StageState,
    StartOpportunity,
    Status,
)
from sales.process import SalesProcess


class CommandResult(BaseModel):
    """What an update returns (and what a signal would have returned)."""

    command: str
    request_id: str | None = None
    duplicate: bool = False
    """True when the request id had already been applied: acknowledged, not applied again."""
    message: str
    current_stage: str
    status: Status


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
            StageState(name=s.name, actions=[ActionState(action=a) for a in s.actions])
            for s in definition.stages
        ],
    )
    effects = _enter_stage(state, stage, now, source="start", by=start.by, reason=None)
    return Decision(
        state=state,
        effects=effects,
        result=_result(state, "start", None, f"opened in stage {stage!r}"),
    )


def check(state: Opportunity, command: Command) -> None:
    """Raise `CommandRejected` if the command cannot be applied to this state; change nothing."""
    if state.has_applied(command.request_id):
        return
    if isinstance(command, ChangeStage):
        _check_change_stage(state, command)


def apply(state: Opportunity, command: Command, now: datetime) -> Decision:
    """Apply a command. Raises `CommandRejected` (with the state untouched) when it is invalid."""
    name = command_name(command)
    if state.has_applied(command.request_id):
        return Decision(
            state=state,
            effects=[],
            result=_result(state, name, command.request_id, "already applied", duplicate=True),
        )
    check(state, command)
    new = state.model_copy(deep=True)
    if isinstance(command, ChangeStage):
        effects, message = _change_stage(new, command, now)
    else:  # pragma: no cover - every command in COMMANDS has a branch above
        raise CommandRejected(f"command {name!r} is not implemented")
    new.revision += 1
    if command.request_id is not None:
        new.applied_request_ids = [*new.applied_request_ids, command.request_id][-MAX_REQUEST_IDS:]
    return Decision(
        state=new, effects=effects, result=_result(new, name, command.request_id, message)
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


def _check_change_stage(state: Opportunity, command: ChangeStage) -> None:
    if state.process.stage(command.stage) is None:
        raise CommandRejected(
            f"unknown stage {command.stage!r} for process {state.process_id!r}; "
            f"stages are {state.process.stage_names()}"
        )
    if command.stage == state.current_stage:
        raise CommandRejected(f"the opportunity is already in stage {command.stage!r}")
    if command.cancel_open_activities and not state.process.allow_cancel_activities:
        raise CommandRejected(
            f"process {state.process_id!r} does not allow cancelling activities on a stage "
            "change; send cancel_open_activities: false"
        )


def _change_stage(
    state: Opportunity, command: ChangeStage, now: datetime
) -> tuple[list[Effect], str]:
    left = state.current_stage
    effects = _enter_stage(
        state, command.stage, now, source="manual", by=command.by, reason=command.reason
    )
    return effects, f"moved from {left!r} to {command.stage!r}"


def _enter_stage(
    state: Opportunity,
    stage: str,
    now: datetime,
    *,
    source: HistorySource,
    by: str | None,
    reason: str | None,
) -> list[Effect]:
    """Move `state` (in place) into `stage` and say what must be recorded."""
    entry = HistoryEntry(
        seq=len(state.history) + 1,
        at=now,
        from_stage=None if source == "start" else state.current_stage,
        to_stage=stage,
        source=source,
        by=by,
        reason=reason,
    )
    state.history = [*state.history, entry]
    state.current_stage = stage
    state.stage_entered_at = now
    definition = state.process.stage(stage)
    closes_as = definition.closes_as if definition else None
    state.status = closes_as or "open"
    state.closed_at = now if closes_as else None
    return [RecordHistory(entry=entry)]


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


def replay_history(history: list[HistoryEntry]) -> str | None:
    """The stage the history ends in: what the current stage must always equal."""
    stage: str | None = None
    for entry in history:
        if entry.from_stage != stage and entry.source != "start":
            raise ValueError(
                f"history entry {entry.seq} leaves {entry.from_stage!r}, not {stage!r}"
            )
        stage = entry.to_stage
    return stage
