"""Payloads of the Opportunity workflow beyond the contract's start input: what it carries
across continue-as-new."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from sales.opportunity import Opportunity, StartOpportunity


class QueuedCommand(BaseModel):
    """A received command waiting for its turn; `ticket` is set for updates (they wait)."""

    name: str
    payload: Any
    ticket: int | None = None


class Carried(BaseModel):
    state: Opportunity
    pending: list[QueuedCommand] = Field(default_factory=list)


class Reopen(BaseModel):
    stage: str
    by: str | None = None


class OpportunityInput(StartOpportunity):
    """The start payload, plus what a continued run carries.

    `continue_as_new_after_events` lets tests and operators continue-as-new earlier than the
    server's own suggestion (which comes at thousands of events).
    """

    carried: Carried | None = None
    reopen: Reopen | None = None
    """With `carried` (the closed run's state): enter this stage again."""
    continue_as_new_after_events: int | None = Field(default=None, ge=20)
