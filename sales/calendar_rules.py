"""Calendar activities of calendar actions: their ids and keys, and how a new one is
scheduled."""

from __future__ import annotations

from datetime import datetime, timedelta

from sales.commands import ActivityDetails
from sales.effects import CalendarKey, CreateCalendarActivity
from sales.errors import CommandRejected
from sales.opportunity import ActionState, Opportunity
from sales.process import CalendarAction
from sales.validation import out_of_range

SEPARATOR = "/"
"""Joins the parts of a display id; ids cannot contain it (`sales.validation.Identifier`),
so two opportunities' display ids never collide."""


def display_id(opportunity_id: str, action_id: str, generation: int) -> str:
    """The id users see and type for a calendar activity or letter: `opp-1001/intro-call/1`
    (opportunity, action, generation: the row's key in the read model)."""
    return SEPARATOR.join((opportunity_id, action_id, str(generation)))


def calendar_key(state: Opportunity, action: ActionState) -> CalendarKey:
    """The key of the action's linked calendar activity."""
    assert action.activity_id is not None
    return CalendarKey(
        opportunity_id=state.opportunity_id,
        action_id=action.action_id,
        generation=action.generation,
        activity_id=action.activity_id,
    )


def new_calendar_activity(
    state: Opportunity,
    action: ActionState,
    definition: CalendarAction,
    now: datetime,
    details: ActivityDetails | None = None,
) -> CreateCalendarActivity:
    """The calendar activity of a calendar action: due `due_in_days` from now, lasting
    `duration_minutes`, titled like the action, unless the user's `details` say otherwise.
    `CommandRejected` (`out_of_range`) when it would end outside the business range."""
    details = details or ActivityDetails()
    starts_at = details.due or now + timedelta(days=definition.activity.due_in_days)
    minutes = details.duration_minutes or definition.activity.duration_minutes
    ends_at = require_in_range(action.action_id, starts_at, minutes)
    action.generation += 1
    return CreateCalendarActivity(
        opportunity_id=state.opportunity_id,
        contact_id=state.contact_id,
        action_id=action.action_id,
        generation=action.generation,
        activity_id=display_id(state.opportunity_id, action.action_id, action.generation),
        activity_kind=definition.activity.kind,
        subject=details.subject or definition.title,
        starts_at=starts_at,
        ends_at=ends_at,
        track_outcome=definition.activity.track_outcome,
        assignee=details.assignee or state.member(definition.role),
        notes=details.notes,
        location=details.location,
    )


def require_in_range(action_id: str, starts_at: datetime, minutes: int) -> datetime:
    """When a calendar activity starting at `starts_at` and lasting `minutes` ends, if both
    lie in the business range; else `CommandRejected` (`out_of_range`)."""
    try:
        ends_at = starts_at + timedelta(minutes=minutes)
    except OverflowError:
        ends_at = None
    problem = out_of_range(starts_at) or (
        out_of_range(ends_at) if ends_at is not None else "it ends past the calendar's end"
    )
    if problem is not None or ends_at is None:
        raise CommandRejected(
            f"the calendar activity of {action_id!r} would run from {starts_at.isoformat()} "
            f"for {minutes} minutes: {problem}",
            code="out_of_range",
        )
    return ends_at
