"""Calendar activities of calendar actions: their ids and how a new one is scheduled."""

from __future__ import annotations

from datetime import datetime, timedelta

from sales.effects import CreateCalendarActivity
from sales.opportunity import ActionState, Opportunity
from sales.process import CalendarAction


def activity_id_for(opportunity_id: str, action_id: str, generation: int) -> str:
    return f"act-{opportunity_id}-{action_id}-{generation}"


def letter_id_for(opportunity_id: str, action_id: str, generation: int) -> str:
    return f"letter-{opportunity_id}-{action_id}-{generation}"


def create_activity(
    state: Opportunity, action: ActionState, definition: CalendarAction, now: datetime
) -> CreateCalendarActivity:
    """The calendar activity of a calendar action, due `due_in_days` from now."""
    action.generation += 1
    starts_at = now + timedelta(days=definition.activity.due_in_days)
    return CreateCalendarActivity(
        opportunity_id=state.opportunity_id,
        contact_id=state.contact_id,
        action_id=action.action_id,
        generation=action.generation,
        activity_id=activity_id_for(state.opportunity_id, action.action_id, action.generation),
        activity_kind=definition.activity.kind,
        subject=definition.title,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=definition.activity.duration_minutes),
        track_outcome=definition.activity.track_outcome,
    )
