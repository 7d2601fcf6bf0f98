"""What commands report back: one result per command, with one line per tagged action."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sales.effects import Effect
from sales.opportunity import Status

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

    action_id: str
    outcome: ActionOutcome
    message: str
    code: str | None = None
    """With `failed`: why (the action's `last_error.code`)."""
    activity_id: str | None = None


class CommandResult(BaseModel):
    """What an update returns (and what a signal would have returned)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    command: str
    request_id: str | None = None
    duplicate: bool = False
    """True when the request id had already been applied: acknowledged, not applied again."""
    message: str
    current_stage: str
    status: Status
    actions: list[ActionResult] = Field(default_factory=list)
    created_activities: list[str] = Field(default_factory=list)
    """Calendar activities this command created (performed, or on entering a stage), so a
    caller can show or edit them at once."""


class CommandOutcome(BaseModel):
    """The `command_outcome` signal an opportunity sends to a command's `reply_to` workflow."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    opportunity_id: str
    command: str
    request_id: str | None = None
    result: Literal["applied", "duplicate", "rejected"]
    reason: str = ""
    """Why it was rejected (the same text an update would have raised)."""
    code: str | None = None
    """With `rejected`: the rejection code (decide by this, not by `reason`)."""


COMMAND_OUTCOME = "command_outcome"
"""The signal name of a `CommandOutcome`."""


@dataclass
class Change:
    """What a rule did to the (copied) state: effects to carry out and what to report."""

    message: str
    effects: list[Effect] = field(default_factory=list)
    actions: list[ActionResult] = field(default_factory=list)
