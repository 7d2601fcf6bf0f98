"""Payloads of the Opportunity workflow beyond the contract's start input: what it carries
across continue-as-new."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.opportunity_activities import ProjectionWrite
from sales.opportunity import Opportunity, StartOpportunity
from sales.validation import Line, ShortLine


class QueuedCommand(BaseModel):
    """A received command waiting for its turn; `ticket` is set for updates (they wait).
    A payload that could not be decoded is queued as its excerpt with `problem` (the
    rejection's code and reason), so that it is rejected in its turn like any other, and
    with its `reply_to` and `request_id` when those could still be read."""

    name: str
    payload: Any
    ticket: int | None = None
    problem: tuple[str, str] | None = None
    reply_to: str | None = None
    request_id: str | None = None


class Carried(BaseModel):
    """What a run hands to the next one at continue-as-new."""

    state: Opportunity
    pending: list[QueuedCommand] = Field(default_factory=list)
    unwritten: ProjectionWrite | None = None
    """A projection whose write failed, written with the next one."""


class Reopen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Line
    by: ShortLine | None = None


class OpportunityInput(StartOpportunity):
    """The start payload, plus what a continued run carries.

    `continue_as_new_after_events` lets tests and operators continue-as-new earlier than the
    server's own suggestion (which comes at thousands of events).
    """

    carried: Carried | None = None
    reopen: Reopen | None = None
    """With `carried` (the closed run's state): enter this stage again."""
    continue_as_new_after_events: int | None = Field(default=None, ge=20, le=1_000_000)
