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
    "unknown_reason": "entering a won or lost stage needs one of the process's reasons",
    "stage_changed": "the opportunity is no longer in the stage the command expects",
    "no_next_stage": "the current stage is the last open one: name the stage to move to",
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
    "unknown_contact": "no contact has this id",
    "unknown_outcome": "the process lists the outcomes of this kind of activity: give one of them",
    "closed": "the opportunity is won or lost: reopen it to change it",
    "not_closed": "the opportunity is open: only a won or lost one can be reopened",
    "not_allowed": "the process or the rules do not allow this change",
    "limit_reached": "the change would exceed a limit of the opportunity",
    "out_of_range": "a date or time, as given or as computed (a due date plus its duration), "
    "lies outside the business range 1900-01-01 to 2199-12-31 UTC",
    "already_exists": "an opportunity of this id exists already (any status): ids are used once",
    "unavailable": "the read model cannot be written now (a database outage); nothing was "
    "applied: send the command again later",
    "internal_error": "the command met a defect in the service (logged); nothing was changed",
    "batch_exists": "this batch id was used for another mass modification: give another one",
    "unauthenticated": "the command's signed actor (header sales-authz) is missing where "
    "authorization is enforced, or is not a valid token of a known key",
    "token_expired": "the command's token has expired, or is not valid yet",
    "token_mismatch": "the command's token was signed for another workflow, command, payload, "
    "request id, service or user",
    "key_revoked": "the command's token was signed with a revoked key",
    "forbidden": "the actor's roles do not allow this command on this opportunity",
}
"""Every code a rejection may carry, with what it means (published in `contract/`). Callers
decide by code, never by the message text."""

FAILURE_CODES: dict[str, str] = {
    "bad_data": "the side effect cannot be carried out with the data given or stored",
    "unknown_contact": "the opportunity's contact no longer exists",
    "unknown_template": "no letter template has this name (`opportunities template add`)",
    "template_error": "the letter template fails for this contact, or renders past its bounds",
    "no_address": "the contact has no e-mail address and no postal address for the letter",
    "method_unavailable": "the letter cannot go out as the correspondence option asks",
    "mail_refused": "the mail server or the e-mail's headers refuse the letter",
    "unknown_event": "no event has this id",
    "activity_canceled": "the action's calendar activity was canceled: delete it to create another",
    "unavailable": "a database or mail server stayed down longer than the retries last",
    "unclassified": "an unexpected error, retried up to a bound; the worker's log has it",
    "limit_reached": "the side effect would exceed a limit (a batch's selection)",
    "unknown_user": "a batch's owner is no user",
    "batch_exists": "a batch id used before for another mass modification",
}
"""Every code a failed side effect may carry (an action's `last_error.code`, an action
result's `code`, a refused batch), with what it means."""


def with_code(code: str, reason: str) -> str:
    """A rejection's message as every client shows it: its code first, so that even a client
    that shows only the message (the `temporal` CLI, the HTTP API) shows the code."""
    return f"{code}: {reason}"


def without_code(message: str, code: str) -> str:
    """The reason of a message made by `with_code`."""
    return message.removeprefix(f"{code}: ")


class CommandRejected(Exception):
    """A command that cannot be applied to the opportunity as it is; nothing was changed.
    `code` is one of `REJECTION_CODES`."""

    def __init__(self, reason: str, *, code: str, resend: bool = False) -> None:
        assert code in REJECTION_CODES, code
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.resend = resend
        """Not now: the same command sent again shortly may be applied (its queue was
        full)."""


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
