"""Stage changes: entering a stage records history and sets the status of closing stages."""

from __future__ import annotations

from datetime import datetime

from sales.commands import ChangeStage
from sales.effects import Effect, RecordHistory
from sales.errors import CommandRejected
from sales.opportunity import HistoryEntry, HistorySource, Opportunity
from sales.results import Change


def require_stage(state: Opportunity, stage: str) -> None:
    if state.process.stage(stage) is None:
        raise CommandRejected(
            f"unknown stage {stage!r} for process {state.process_id!r}; "
            f"stages are {state.process.stage_names()}"
        )


def change_stage(state: Opportunity, command: ChangeStage, now: datetime) -> Change:
    require_stage(state, command.stage)
    if command.stage == state.current_stage:
        raise CommandRejected(f"the opportunity is already in stage {command.stage!r}")
    if command.cancel_open_activities and not state.process.allow_cancel_activities:
        raise CommandRejected(
            f"process {state.process_id!r} does not allow cancelling activities on a stage "
            "change; send cancel_open_activities: false"
        )
    left = state.current_stage
    effects = enter_stage(
        state, command.stage, now, source="manual", by=command.by, reason=command.reason
    )
    return Change(f"moved from {left!r} to {command.stage!r}", effects)


def enter_stage(
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
