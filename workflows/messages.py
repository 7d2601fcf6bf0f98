"""Payloads of the Opportunity workflow beyond the contract's start input: what it carries
across continue-as-new."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

from activities.opportunity_activities import ProjectionWrite
from runtime.workflow_ids import opportunity_workflow_id
from sales.commands import Command, parse_command
from sales.errors import CommandRejected
from sales.opportunity import Opportunity, StartOpportunity
from sales.validation import Line, ShortLine
from workflows import payloads


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

    def command(self) -> Command:
        """The command it carries; `CommandRejected` if there is none."""
        if self.problem is not None:
            code, reason = self.problem
            raise CommandRejected(reason, code=code)
        return parse_command(self.name, self.payload)


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


NO_INPUT = RawValue(Payload(metadata={"encoding": b"binary/null"}))
"""Stands for a start or a command without an argument, refused like any invalid input."""


def parse_start(raw: RawValue, workflow_id: str) -> OpportunityInput:
    """The start input of an `Opportunity` run, or a non-retryable `InvalidInput` failure
    naming what is wrong with it (the workflow fails at once)."""
    start = payloads.parse_start(
        raw,
        OpportunityInput,
        "Opportunity input",
        not_an_object="invalid Opportunity input: expected a JSON object with opportunity_id, "
        "contact_id and optionally process_id, name, owner, stage",
    )
    expected = opportunity_workflow_id(start.opportunity_id)
    if workflow_id != expected:
        raise payloads.invalid_input(
            f"workflow id {workflow_id!r} does not match opportunity_id "
            f"{start.opportunity_id!r}; start it as {expected!r}"
        )
    return start
