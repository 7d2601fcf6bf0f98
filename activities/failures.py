"""Every failure of an activity is classified, so that no input makes an effect retry forever:

- **transient** (a connection lost or refused, a timeout, a serialization conflict, a server
  restarting or out of connections, a mail server's 4xx): raised again as it is, and
  Temporal retries with backoff for as long as the activity's retry window lasts
  (`workflows.retry_policies`), long enough to ride out an outage;
- **bad data** (an invalid character, a constraint violated, a template that fails, a mail
  header or recipient refused, a missing contact, template or event): not retried; the
  workflow reports the effect `failed` with the code and the reason;
- **unclassified** (anything else): retried with backoff up to `UNCLASSIFIED_ATTEMPTS`, then
  reported `failed` with code `unclassified`, one log line and the metric
  `opportunities_activity_failures`.

Activities mark the failures they recognise themselves by raising `BadData`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import aiosmtplib
import asyncpg
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from sales.errors import describe_validation_error

UNCLASSIFIED_ATTEMPTS = 8
"""Attempts at an unclassified failure (about two minutes of backoff) before giving up."""

FAILURES_METRIC = "opportunities_activity_failures"

log = logging.getLogger("opportunities.activities")

Kind = Literal["transient", "bad_data", "unclassified"]
T = TypeVar("T")

_TRANSIENT_SQLSTATE_CLASSES = {"08", "40", "53", "55", "57", "58"}
"""Connection exception, transaction rollback (serialization, deadlock), insufficient
resources, object not in prerequisite state (lock not available), operator intervention
(shutdown, cannot connect now), system error."""
_BAD_DATA_SQLSTATE_CLASSES = {"22", "23"}
"""Data exception (invalid characters, values out of range), integrity constraint violation."""


class BadData(Exception):
    """A failure no retry can fix, with the code the action reports (`no_address`, ...)."""

    def __init__(self, message: str, code: str = "bad_data") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def classify(error: BaseException) -> Kind:
    if isinstance(error, BadData | ValidationError | UnicodeError):
        return "bad_data"
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = getattr(error, "sqlstate", None) or ""
        if isinstance(error, asyncpg.PostgresConnectionError):
            return "transient"
        if sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES:
            return "transient"
        if sqlstate[:2] in _BAD_DATA_SQLSTATE_CLASSES:
            return "bad_data"
        return "unclassified"
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return "transient" if 400 <= error.code < 500 else "bad_data"
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return "bad_data"
    if isinstance(error, OSError | asyncio.TimeoutError | asyncpg.InterfaceError):
        # Refused or lost connections (asyncpg and aiosmtplib raise OSError subclasses),
        # timeouts, and asyncpg's "connection is closed".
        return "transient" if _connection_problem(error) else "unclassified"
    return "unclassified"


def _connection_problem(error: BaseException) -> bool:
    if isinstance(error, asyncpg.InterfaceError):
        return "closed" in str(error) or "connection" in str(error).lower()
    return True


def classified(effect: str) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """Decorate an activity method so that its failures leave it classified (see above)."""

    def decorate(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(method)
        async def run(*args: Any) -> T:
            try:
                return await method(*args)
            except ApplicationError:
                raise
            except Exception as error:
                failure = _as_failure(effect, error, getattr(args[-1], "action_id", None))
                if failure is error:
                    raise
                raise failure from error

        return run

    return decorate


def _as_failure(effect: str, error: Exception, action_id: str | None) -> Exception:
    kind = classify(error)
    if kind == "transient":
        return error
    if kind == "bad_data":
        code = error.code if isinstance(error, BadData) else "bad_data"
        message = _bad_data_message(error)
        _count(effect, code)
        log.debug(  # the workflow logs the one line of an expected failure
            "%s failed: %s (workflow %s%s)",
            effect,
            code,
            activity.info().workflow_id,
            f", action {action_id}" if action_id else "",
        )
        return ApplicationError(
            message,
            {"code": code},
            type="BadData",
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,  # expected: no traceback in the log
        )
    attempt = activity.info().attempt
    if attempt < UNCLASSIFIED_ATTEMPTS:
        return error
    _count(effect, "unclassified")
    info = activity.info()
    log.error(
        "%s gave up after %d attempts: %s (workflow %s)",
        effect,
        attempt,
        type(error).__name__,
        info.workflow_id,
    )
    return ApplicationError(
        f"{effect} failed {attempt} times: {_one_line(error)}",
        {"code": "unclassified"},
        type="Unclassified",
        non_retryable=True,
    )


def _bad_data_message(error: Exception) -> str:
    if isinstance(error, BadData):
        return error.message
    if isinstance(error, ValidationError):
        return describe_validation_error(error, f"stored {error.title}")
    return _one_line(error)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 500 else text[:499] + "…"


def _count(effect: str, code: str) -> None:
    activity.metric_meter().create_counter(
        FAILURES_METRIC, "Activity failures that were not retried (further), by effect and code"
    ).add(1, {"effect": effect, "code": code})
