"""Readable errors: every rejection says what is wrong, where, and what would be valid."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

REJECTION_CODES: dict[str, str] = {
    "invalid_payload": "the payload cannot be read, or does not match the command's schema",
    "unknown_command": "no command has this name",
    "unknown_stage": "the process has no stage of this name",
    "unknown_action": "the opportunity has no action of this id",
    "unknown_activity": "the opportunity has no linked calendar activity of this id",
    "already_in_stage": "the opportunity is in this stage already",
    "already_owned": "the opportunity has this owner already",
    "already_completed": "the action is completed already",
    "activity_not_active": "the calendar activity is done or canceled already",
    "activity_active": "the action's calendar activity is active: delete the activity first",
    "action_exists": "the opportunity has an action of this id already",
    "action_not_reached": "the action belongs to a stage the opportunity has not reached",
    "outcome_required": "the calendar activity tracks outcomes: give an outcome",
    "unknown_role": "no action of the process names this role",
    "unknown_user": "no user has this id (`opportunities user add` adds one)",
    "unknown_process": "no process has this id",
    "unknown_outcome": "the process lists the outcomes of this kind of activity: give one of them",
    "closed": "the opportunity is won or lost: reopen it to change it",
    "not_closed": "the opportunity is open: only a won or lost one can be reopened",
    "not_allowed": "the process or the rules do not allow this change",
    "limit_reached": "the change would exceed a limit of the opportunity",
}
"""Every code a rejection may carry, with what it means (published in `contract/`). Callers
decide by code, never by the message text."""


class CommandRejected(Exception):
    """A command that cannot be applied to the opportunity as it is; nothing was changed.
    `code` is one of `REJECTION_CODES`."""

    def __init__(self, reason: str, *, code: str) -> None:
        assert code in REJECTION_CODES, code
        super().__init__(reason)
        self.reason = reason
        self.code = code


MAX_PROBLEMS = 5
"""Problems a validation error's message lists; the rest are counted (`and 12 more`)."""
MAX_PLACE_CHARS = 100
MAX_REASON_CHARS = 200


def describe_validation_error(error: ValidationError, subject: str = "input") -> str:
    """The problems of a validation error as one line (`describe_problems`)."""
    return describe_problems(error.errors(include_url=False), subject)


def describe_problems(problems: Sequence[ErrorDetails], subject: str = "input") -> str:
    """One line: each problem's place (the path of the offending field) and reason, at most
    `MAX_PROBLEMS` of them, each cut short, then how many more there are; so that no message
    is large, however much is wrong.

    Pydantic's own text repeats the model name and links to its docs; operators reading a CLI
    error or a rejected signal want the place and the reason, nothing else.
    """
    lines = []
    for problem in problems[:MAX_PROBLEMS]:
        place = _cut(_place(problem["loc"]), MAX_PLACE_CHARS)
        message = _cut(problem["msg"].removeprefix("Value error, "), MAX_REASON_CHARS)
        lines.append(f"{place}: {message}" if place else message)
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"and {len(problems) - MAX_PROBLEMS} more")
    return f"invalid {subject}: " + "; ".join(lines)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _place(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"calendar", "letter", "event"} and text.endswith("]"):
            # The discriminated union adds the tag to the path; the index already names the item.
            continue
        else:
            text += f".{part}" if text else str(part)
    return text
