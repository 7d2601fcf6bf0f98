"""Carrying out the core's effects as activities, each with its timeouts, retry policy and a
summary that makes the event history read like the opportunity's own history.

Every activity retries with backoff within a window (`RIDE_OUT`): long enough to ride out an
outage of the database or the mail server, never forever. The activities classify their own
failures (`activities.failures`): bad data is not retried, an unclassified failure only up to
a bound. What still fails becomes the effect's `failed` outcome, with a code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeout

from workflows import telemetry

with workflow.unsafe.imports_passed_through():
    from activities.calendar import CalendarActivities
    from activities.events import EventActivities
    from activities.letters import LetterActivities
    from activities.opportunity_activities import (
        OpportunityActivities,
        Setup,
        SetupRequest,
    )
    from sales.effects import (
        CreateCalendarActivity,
        EffectOutcome,
        PerformEffect,
        SendLetter,
    )
    from sales.errors import CommandRejected
    from sales.opportunity import Opportunity
    from sales.process import FoundProcess
    from sales.validation import MAX_CODE, MAX_MESSAGE, cut

T = TypeVar("T")

TIMEOUT = timedelta(seconds=10)
"""One attempt of a database activity (they take milliseconds); after a worker crash the
retry waits this long."""
SMTP_TIMEOUT = timedelta(seconds=90)
SMTP_HEARTBEAT = timedelta(seconds=5)
"""Sending heartbeats every second, so a crash mid-send is noticed in seconds, not minutes."""
RIDE_OUT = timedelta(hours=1)
"""How long an activity keeps retrying a transient failure (a database or mail server that
is down) before its effect is reported failed: an outage of minutes passes unnoticed."""
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)
"""Backoff between attempts; attempts are bounded by `RIDE_OUT`, not by a count."""


async def execute(
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
        schedule_to_close_timeout=RIDE_OUT,
        heartbeat_timeout=heartbeat,
        retry_policy=RETRY,
        summary=summary,
    )


async def load_setup(request: SetupRequest) -> Setup:
    """The contact and process a new opportunity starts with. A failure fails the start,
    non-retryably, with the activity's message and code (an id used before, an unknown
    contact, process or owner)."""
    try:
        return await execute(
            OpportunityActivities.load_setup, request, "Load contact and sales process"
        )
    except FAILED_FOR_GOOD as error:
        raise _start_refused(error) from None


async def load_closed(opportunity_id: str) -> Opportunity:
    """The state a won or lost opportunity's real run ended with (a reopening starts from
    it); a failure fails the reopening with its code (open, deleted, unknown)."""
    try:
        return await execute(
            OpportunityActivities.load_closed, opportunity_id, "Load the closed opportunity"
        )
    except FAILED_FOR_GOOD as error:
        raise _start_refused(error) from None


def _start_refused(error: Exception) -> ApplicationError:
    code, message = failure(error)
    cause = error.cause if isinstance(error, ActivityError) else error
    kind = cause.type if isinstance(cause, ApplicationError) and cause.type else code
    return ApplicationError(message, {"code": code}, type=kind, non_retryable=True)


async def find_process(process_id: str) -> FoundProcess:
    """The process a `move_process` moves to (retried like every effect); when no retry
    found it, `CommandRejected` (`unavailable`): the command is not applied."""
    try:
        return await execute(OpportunityActivities.find_process, process_id, f"Find: {process_id}")
    except FAILED_FOR_GOOD as error:
        raise _not_looked_up("the process", error) from None


async def find_users(user_ids: list[str]) -> list[str]:
    """Of the users a command names, those that exist (retried like every effect). When no
    retry found them, `CommandRejected` (`unavailable`)."""
    try:
        return await execute(OpportunityActivities.find_users, user_ids, "Find users")
    except FAILED_FOR_GOOD as error:
        raise _not_looked_up("the users", error) from None


def _not_looked_up(what: str, error: Exception) -> CommandRejected:
    code, message = failure(error)
    return CommandRejected(
        f"{what} could not be looked up ({code}: {message}); nothing was applied: send the "
        "command again later",
        code="unavailable",
    )


FAILED_FOR_GOOD = (ActivityError, ApplicationError, TemporalTimeout)
"""What awaiting an activity raises once no retry helped: `ActivityError` (its cause the
reason), or the error itself where a step raises one."""


async def perform(effect: PerformEffect) -> EffectOutcome:
    """Create the calendar activity, send the letter or invite; a failure that no retry
    fixed comes back as `failed` with its code."""
    telemetry.count_effect(effect.kind)
    try:
        if isinstance(effect, CreateCalendarActivity):
            return await execute(
                CalendarActivities.create_calendar_activity,
                effect,
                f"Calendar: {effect.action_id}",
            )
        if isinstance(effect, SendLetter):
            return await execute(
                LetterActivities.send_letter,
                effect,
                f"Letter: {effect.template}",
                start_to_close=SMTP_TIMEOUT,
                heartbeat=SMTP_HEARTBEAT,
            )
        return await execute(
            EventActivities.invite_to_event,
            effect,
            f"Invite: {effect.event_id}",
        )
    except FAILED_FOR_GOOD as error:
        code, message = failure(error)
        return EffectOutcome(
            status="failed", code=cut(code, MAX_CODE), message=cut(message, MAX_MESSAGE)
        )


def failure(error: Exception) -> tuple[str, str]:
    """The code and the reason of an activity that failed for good (`FAILED_FOR_GOOD`)."""
    cause = error.cause if isinstance(error, ActivityError) else error
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details else None
        code = details.get("code") if isinstance(details, dict) else None
        return str(code or "unclassified"), cause.message
    if isinstance(cause, TemporalTimeout):
        last = str(cause.cause) if cause.cause is not None else "no answer"
        return "unavailable", f"still failing after retrying for {RIDE_OUT}: {last}"
    return "unclassified", str(cause or error)
