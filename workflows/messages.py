"""Payloads of the Opportunity workflow beyond the contract's start input: what it carries
across continue-as-new."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

from activities.opportunity_activities import ProjectionWrite
from runtime.workflow_ids import opportunity_workflow_id
from sales.authorization import Actor
from sales.commands import Command, Envelope
from sales.errors import CommandRejected
from sales.opportunity import MAX_REASON, Opportunity, StartOpportunity
from sales.registry import parse_command
from sales.validation import (
    MAX_COMMAND_BYTES,
    Bounded,
    CodeText,
    Identifier,
    IdText,
    Line,
    ShortLine,
    cut,
)
from workflows import payloads

MAX_PENDING = 2000
"""Commands a run carries to the next one (within `continue_as_new.PENDING_BUDGET` bytes)."""


class QueuedCommand(BaseModel):
    """A received command waiting for its turn; `ticket` is set for updates (they wait).
    A payload that could not be decoded is queued as its excerpt with `problem` (the
    rejection's code and reason), so that it is rejected in its turn like any other. Its
    `envelope` is read once, as it arrives (from a rejected payload too, as far as it can
    be), so that its sender can be answered."""

    name: IdText
    payload: Annotated[Any, Bounded(MAX_COMMAND_BYTES)]
    ticket: int | None = None
    problem: tuple[CodeText, Annotated[str, Field(max_length=MAX_REASON)]] | None = None
    envelope: Envelope = Envelope()
    actor: Actor | None = None
    """Who signed it, as verified when it arrived (None: unsigned, or authorization off)."""
    size: int = 0
    """The payload's size as it arrived, in bytes (for the queue's bound)."""

    _command: Command | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _parsed(self) -> QueuedCommand:
        """Validated once, as it arrives (or as a continued run takes it over): a payload
        that is no valid command is queued with its problem."""
        if self.problem is None:
            try:
                self._command = parse_command(self.name, self.payload)
            except CommandRejected as rejected:
                self.problem = (rejected.code, cut(rejected.reason, MAX_REASON))
        return self

    def rejection(self) -> CommandRejected:
        """Why it cannot be applied (for a command queued with its problem)."""
        code, reason = self.problem or ("invalid_payload", "no command")
        return CommandRejected(reason, code=code)

    def command(self) -> Command:
        """The command it carries; `CommandRejected` if there is none."""
        if self._command is None:
            raise self.rejection()
        return self._command


class Carried(BaseModel):
    """What a run hands to the next one at continue-as-new."""

    state: Opportunity
    pending: list[QueuedCommand] = Field(default_factory=list, max_length=MAX_PENDING)
    unwritten: ProjectionWrite | None = None
    """A projection whose write failed, written with the next one."""


class Reopen(BaseModel):
    """Open a won or lost opportunity again in `stage`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    stage: Line
    by: ShortLine | None = None
    """Who reopens it; kept in its `reopened` history entry."""


class ReopenOpportunity(BaseModel):
    """The input of an `Opportunity` run that reopens a won or lost opportunity: its id and
    the reopening; the run loads the state the opportunity's real run ended with."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    opportunity_id: Identifier
    reopen: Reopen


class OpportunityInput(StartOpportunity):
    """The start payload, plus what a continued run carries and what a reopening asks.

    `carried` is accepted only by a run that continues as new (the workflow checks): a run's
    state comes from Temporal, never from a client. `reopen` (the opportunity id, the stage
    and who) opens a won or lost opportunity again: the new run loads the state its real run
    ended with. `continue_as_new_after_events` lets tests and operators continue-as-new
    earlier than the server's own suggestion (which comes at thousands of events).
    """

    contact_id: Identifier | None = None  # type: ignore[assignment]
    """Required to open an opportunity; a reopening or a continued run takes it from the
    state."""
    carried: Carried | None = None
    reopen: Reopen | None = None
    continue_as_new_after_events: int | None = Field(default=None, ge=20, le=1_000_000)

    @model_validator(mode="after")
    def _opening_names_a_contact(self) -> OpportunityInput:
        if self.contact_id is None and self.carried is None and self.reopen is None:
            raise ValueError("contact_id: required to open an opportunity")
        return self


NO_INPUT = RawValue(Payload(metadata={"encoding": b"binary/null"}))
"""Stands for a start or a command without an argument, refused like any invalid input."""


def parse_start(raw: RawValue, info: Any) -> OpportunityInput:
    """The start input of an `Opportunity` run (`info`: the run's `workflow.Info`), or a
    non-retryable `InvalidInput` failure naming what is wrong with it (the workflow fails at
    once): `carried` comes only with a run that continues as new."""
    workflow_id = info.workflow_id
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
    if start.carried is not None and not info.continued_run_id:
        raise payloads.invalid_input(
            "carried is what a run hands to the run that continues it, never part of a "
            "start: open an opportunity with its contact, or reopen it with reopen"
        )
    return start
