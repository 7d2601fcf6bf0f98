"""What the opportunity is worth, as the rules keep it: its value set when it opens and by
`update_details`, its probability and forecast category following the stage unless set by
hand, the won amount and close date on winning, the reason of a win or a loss, and the
overdue work of its activities."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sales.commands import UpdateDetails
from sales.effects import Effect, RecordDetailChange
from sales.errors import CommandRejected
from sales.opportunity import ActionState, DetailChange, Opportunity, StartOpportunity
from sales.process import StageDefinition
from sales.results import Ruling
from sales.validation import MAX_MESSAGE, cut
from sales.value import require_scale


def open_value(state: Opportunity, start: StartOpportunity, default_currency: str) -> None:
    """The value an opportunity opens with (in place): as the start gives it, the currency
    by default the service's; probability and forecast category set by hand when given."""
    state.amount = start.amount
    state.default_currency = default_currency
    state.currency = start.currency or default_currency
    state.expected_close_date = start.expected_close_date
    state.include_in_forecast = start.include_in_forecast
    state.probability_by_hand = start.probability is not None
    state.probability = start.probability
    state.forecast_category_by_hand = start.forecast_category is not None
    state.forecast_category = start.forecast_category
    _require_scale(state)
    follow_stage(state)


def follow_stage(state: Opportunity) -> None:
    """The probability and forecast category of the current stage, unless set by hand."""
    stage = state.process.stage(state.current_stage)
    if stage is None:
        return
    if not state.probability_by_hand:
        state.probability = stage.probability
    if not state.forecast_category_by_hand:
        state.forecast_category = stage.default_forecast_category()


def on_closing(state: Opportunity, stage: StageDefinition, now: datetime) -> None:
    """Winning keeps the amount as the won amount and makes the close date the day it closed;
    a reopening clears the won amount and the reason."""
    if stage.closes_as == "won":
        state.won_amount = state.amount
        state.expected_close_date = now.date()
    elif stage.closes_as is None:
        state.won_amount = None
        state.close_reason = None


def close_reason(
    state: Opportunity, stage: StageDefinition, reason: str | None, *, by_hand: bool
) -> str | None:
    """The reason entering `stage` closes the opportunity with: one of the process's reasons
    when it lists them; a loss nobody gave a reason for (an outcome mapped to a lost stage)
    takes the process's `default_lost_reason`. `CommandRejected` (`unknown_reason`) when a
    listed reason is missing or another."""
    listed = state.process.reasons_for(stage.closes_as)
    if stage.closes_as is None:
        return None
    if reason is None and not by_hand and stage.closes_as == "lost":
        reason = state.process.default_lost_reason
    if listed and reason not in listed and (reason is not None or by_hand):
        given = "no reason was given" if reason is None else f"{reason!r} is not one of them"
        raise CommandRejected(
            f"entering {stage.name!r} closes the opportunity as {stage.closes_as}: give one of "
            f"the reasons {listed}; {given}",
            code="unknown_reason",
        )
    return reason


def update_details(state: Opportunity, command: UpdateDetails, now: datetime) -> Ruling:
    """Set (or clear, given as null) each detail given; one detail change per field that
    changed, kept in the read model (`details --history`)."""
    given = command.given()
    before = _shown(state)
    for name, value in given.items():
        if name in ("probability", "forecast_category"):
            setattr(state, f"{name}_by_hand", value is not None)
            setattr(state, name, value)
        elif name == "currency":
            state.currency = value if value is not None else state.default_currency
        elif name == "include_in_forecast":
            state.include_in_forecast = bool(value)
        else:
            setattr(state, name, value)
    follow_stage(state)
    _require_scale(state)
    after = _shown(state)
    changed = [name for name in after if after[name] != before[name]]
    effects: list[Effect] = [
        RecordDetailChange(change=detail_change(state, name, before[name], after[name],
                                                command.by, now))
        for name in changed
    ]  # fmt: skip
    if not changed:
        return Ruling("no detail changed")
    return Ruling(f"changed {', '.join(changed)}", effects)


def detail_change(
    state: Opportunity, what: str, old: str | None, new: str | None, by: str | None, at: datetime
) -> DetailChange:
    """The next detail change of `state` (numbered in place)."""
    state.detail_changes += 1
    return DetailChange(
        seq=state.detail_changes, what=what, from_value=old, to_value=new, by=by, at=at
    )


def _shown(state: Opportunity) -> dict[str, str | None]:
    """The details as text (how a change records them)."""
    values: dict[str, Any] = {
        "amount": state.amount, "currency": state.currency,
        "expected_close_date": state.expected_close_date, "probability": state.probability,
        "forecast_category": state.forecast_category,
        "include_in_forecast": state.include_in_forecast, "name": state.name,
    }  # fmt: skip
    return {
        name: None if value is None else cut(_text(value), MAX_MESSAGE)
        for name, value in values.items()
    }


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return format(value, "f") if hasattr(value, "as_tuple") else str(value)


def _require_scale(state: Opportunity) -> None:
    if state.amount is not None and state.currency is not None:
        problem = require_scale(state.amount, state.currency)
        if problem is not None:
            raise CommandRejected(f"amount: {problem}", code="invalid_payload")


def overdue(state: Opportunity, now: datetime) -> list[ActionState]:
    """The actions whose calendar activity is overdue: active, and due before `now` (the one
    definition of overdue, for `show`, searches and events)."""
    return [
        action
        for stage in state.stages
        for action in stage.actions
        if action.activity_status == "active"
        and action.activity_starts_at is not None
        and action.activity_starts_at < now
    ]
