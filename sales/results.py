"""What commands report back: one result per command, with one line per tagged action."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from sales.effects import Effect
from sales.opportunity import Status
from sales.validation import CodeText, DisplayId, IdText, LineText, MessageText, ShortLine

MAX_RESULT_ACTIONS = 500
"""Action lines a result reports (a command tags at most 100 actions; entering a stage creates
at most its actions' activities)."""

ActionOutcome = Literal[
    "activity_created",
    "activity_exists",
    "letter_sent",
    "letter_filed",
    "invited",
    "already_invited",
    "completed",
    "failed",
    "added",
    "modified",
    "deleted",
    "activity_done",
    "activity_deleted",
    "activity_modified",
]


class ActionResult(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    action_id: IdText
    outcome: ActionOutcome
    message: MessageText
    code: CodeText | None = None
    """With `failed`: why (the action's `last_error.code`); with `activity_exists`,
    `activity_canceled` when the action's activity was canceled (delete it to create
    another)."""
    activity_id: DisplayId | None = None


class CommandResult(BaseModel):
    """What an update returns (and what a signal would have returned)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    command: IdText
    request_id: IdText | None = None
    duplicate: bool = False
    """True when the request id had already been applied: acknowledged, not applied again."""
    message: MessageText
    current_stage: LineText
    status: Status
    actions: list[ActionResult] = Field(default_factory=list, max_length=MAX_RESULT_ACTIONS)
    created_activities: list[DisplayId] = Field(default_factory=list, max_length=MAX_RESULT_ACTIONS)
    """Calendar activities this command created (performed, or on entering a stage), so a
    caller can show or edit them at once."""


def cut_to(limit: int) -> Callable[[Any], Any]:
    """A validator cutting a text longer than `limit` characters to `limit` (its last one an
    ellipsis): for text a workflow builds from what it was sent, which must never fail it."""

    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            return value[: limit - 1] + "…"
        return value

    return cut


MAX_OUTCOME_REASON = 1000
"""Characters of a `CommandOutcome`'s reason; a longer one is cut."""
OutcomeName = Annotated[str, BeforeValidator(cut_to(200)), Field(max_length=200)]
OutcomeCode = Annotated[str, BeforeValidator(cut_to(100)), Field(max_length=100)]
OutcomeReason = Annotated[
    str, BeforeValidator(cut_to(MAX_OUTCOME_REASON)), Field(max_length=MAX_OUTCOME_REASON)
]


class CommandOutcome(BaseModel):
    """The `command_outcome` signal an opportunity sends to a command's `reply_to` workflow.

    Every text is bounded, so the signal stays small: the ids and the command name to 200
    characters, the code to 100, the reason to `MAX_OUTCOME_REASON`. The opportunity builds
    it from what it was sent, so a longer text is cut, never refused (the request id is
    one it read as a `ShortLine` already)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    opportunity_id: OutcomeName
    command: OutcomeName
    request_id: ShortLine | None = None
    """The command's request id: a `MassModify` batch accepts only its own (its batch id)."""
    result: Literal["applied", "duplicate", "rejected"]
    reason: OutcomeReason = ""
    """Why it was rejected (the same text an update would have raised, cut to
    `MAX_OUTCOME_REASON` characters)."""
    code: OutcomeCode | None = None
    """With `rejected`: the rejection code (decide by this, not by `reason`)."""


COMMAND_OUTCOME = "command_outcome"
"""The signal name of a `CommandOutcome`."""


@dataclass
class Ruling:
    """What a rule did to the (copied) state: effects to carry out and what to report."""

    message: str
    effects: list[Effect] = field(default_factory=list)
    actions: list[ActionResult] = field(default_factory=list)
