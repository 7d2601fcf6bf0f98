"""Carrying out the core's effects as activities, each with its timeout, retry policy and a
summary that makes the event history read like the opportunity's own history."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import telemetry

with workflow.unsafe.imports_passed_through():
    from activities.calendar import CalendarActivities
    from activities.events import EventActivities
    from activities.letters import LetterActivities
    from activities.opportunity_activities import OpportunityActivities, ProjectionWrite
    from sales.effects import (
        CancelCalendarActivities,
        CompleteCalendarActivity,
        CreateCalendarActivity,
        DeleteCalendarActivity,
        Effect,
        EffectOutcome,
        InviteToEvent,
        PerformEffect,
        SendLetter,
    )
    from sales.opportunity import HistoryEntry

T = TypeVar("T")

TIMEOUT = timedelta(seconds=10)
"""Database activities take milliseconds; after a worker crash the retry waits this long."""
SMTP_TIMEOUT = timedelta(seconds=90)
SMTP_HEARTBEAT = timedelta(seconds=5)
"""Sending heartbeats every second, so a crash mid-send is noticed in seconds, not minutes."""
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
"""Retried until the database (or mail server) answers: an outage never drops an effect.
Bad data raises non-retryable errors instead, which `perform` turns into a `failed` outcome."""


async def _execute(
    method: Callable[[Any, Any], Awaitable[T]],
    argument: Any,
    summary: str,
    *,
    start_to_close: timedelta = TIMEOUT,
    heartbeat: timedelta | None = None,
) -> T:
    return await workflow.execute_activity_method(
        method,
        argument,
        start_to_close_timeout=start_to_close,
        heartbeat_timeout=heartbeat,
        retry_policy=RETRY,
        summary=summary,
    )


async def perform(effect: PerformEffect) -> EffectOutcome:
    """Create the activity, send the letter or invite; bad data comes back as `failed`."""
    telemetry.count_effect(effect.kind)
    try:
        if isinstance(effect, CreateCalendarActivity):
            return await _execute(
                CalendarActivities.create_calendar_activity,
                effect,
                f"Create calendar activity {effect.subject!r}",
            )
        if isinstance(effect, SendLetter):
            return await _execute(
                LetterActivities.send_letter,
                effect,
                f"Send letter {effect.template!r} ({effect.title})",
                start_to_close=SMTP_TIMEOUT,
                heartbeat=SMTP_HEARTBEAT,
            )
        return await _execute(
            EventActivities.invite_to_event,
            effect,
            f"Invite the contact to event {effect.event_id!r}",
        )
    except ActivityError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            return EffectOutcome(status="failed", message=cause.message)
        raise


async def run(effect: Effect) -> None:
    """Carry out an effect that cannot fail for bad data (it only updates our own rows)."""
    telemetry.count_effect(effect.kind)
    if isinstance(effect, CompleteCalendarActivity):
        await _execute(
            CalendarActivities.complete_calendar_activity,
            effect,
            f"Mark calendar activity {effect.activity_id} done",
        )
    elif isinstance(effect, CancelCalendarActivities):
        await _execute(
            CalendarActivities.cancel_calendar_activities,
            effect,
            f"Cancel calendar activities {', '.join(effect.activity_ids)}",
        )
    elif isinstance(effect, DeleteCalendarActivity):
        await _execute(
            CalendarActivities.delete_calendar_activity,
            effect,
            f"Delete calendar activity {effect.activity_id}",
        )
    else:  # pragma: no cover - the shell routes the other kinds elsewhere
        raise TypeError(f"no activity for effect {effect.kind!r}")


async def project(write: ProjectionWrite, *, local: bool = False) -> None:
    """Write the read model; with `local`, as a local activity run by the worker inside the
    workflow task that asked for it (one marker in history, no round trip through the
    server), with the same timeout and retries."""
    telemetry.count_effect("project_opportunity")
    summary = _projection_summary(write.history)
    if not local:
        await _execute(OpportunityActivities.project_opportunity, write, summary)
        return
    await workflow.execute_local_activity_method(
        OpportunityActivities.project_opportunity,
        write,
        start_to_close_timeout=TIMEOUT,
        retry_policy=RETRY,
        summary=summary,
    )


def _projection_summary(history: list[HistoryEntry]) -> str:
    if not history:
        return "Update opportunity record"
    return f"Record stage change to {history[-1].to_stage!r}"


def is_perform(effect: Effect) -> bool:
    return isinstance(effect, CreateCalendarActivity | SendLetter | InviteToEvent)
