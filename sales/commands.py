"""Commands an opportunity accepts, each both as a signal and as an update of the same name."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sales.errors import CommandRejected, describe_validation_error
from sales.process import Action, Identifier, Text


class Command(BaseModel):
    """Fields every command may carry."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    request_id: str | None = Field(default=None, min_length=1, max_length=200)
    """A command whose request id was already applied is acknowledged and not applied again."""
    by: str | None = Field(default=None, max_length=200)
    """Who issued the command; kept in history."""
    reply_to: str | None = Field(default=None, min_length=1, max_length=255)
    """The id of a workflow to signal `command_outcome` (a `CommandOutcome`) once this command
    is applied, acknowledged as a duplicate or rejected: how a workflow such as `MassModify`
    sends commands as signals and still learns each result."""


class ChangeStage(Command):
    stage: Text
    cancel_open_activities: bool = False
    reason: str | None = Field(default=None, max_length=2000)
    source: Literal["manual", "mass"] = "manual"
    """`mass` when a mass modification sent it (kept in history)."""


ActionIds = Annotated[list[Identifier], Field(min_length=1, max_length=100)]
Notes = Annotated[str, Field(max_length=4000)]


class PerformActions(Command):
    """Perform tagged actions: create the calendar activity, send the letter, invite."""

    action_ids: ActionIds


class CompleteActions(Command):
    action_ids: ActionIds
    outcome: Text | None = None
    notes: Notes | None = None


class AddAction(Command):
    stage: Text
    action: Action


class ModifyAction(Command):
    action_id: Identifier
    changes: dict[str, Any] = Field(min_length=1)


class DeleteAction(Command):
    action_id: Identifier


class RecordOutcome(Command):
    """The calendar side: the linked activity is done (with its outcome)."""

    activity_id: Text
    outcome: Text | None = None
    notes: Notes | None = None
    stage: Text | None = None


class DeleteActivity(Command):
    activity_id: Text


class ChangeOwner(Command):
    """Hand the opportunity to another owner (no stage change, no history entry)."""

    owner: Text


COMMANDS: dict[str, type[Command]] = {
    "change_stage": ChangeStage,
    "perform_actions": PerformActions,
    "complete_actions": CompleteActions,
    "add_action": AddAction,
    "modify_action": ModifyAction,
    "delete_action": DeleteAction,
    "record_outcome": RecordOutcome,
    "delete_activity": DeleteActivity,
    "change_owner": ChangeOwner,
}
"""Command name (signal and update name) to payload model."""


def command_name(command: Command) -> str:
    return next(name for name, model in COMMANDS.items() if type(command) is model)


def parse_command(name: str, payload: Any) -> Command:
    """Validate a raw payload (a JSON object from any Temporal client) into a command."""
    model = COMMANDS.get(name)
    if model is None:
        raise CommandRejected(f"unknown command {name!r}; commands are {sorted(COMMANDS)}")
    if not isinstance(payload, dict):
        raise CommandRejected(
            f"invalid {name} payload: expected a JSON object, got {type(payload).__name__}"
        )
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise CommandRejected(describe_validation_error(error, f"{name} payload")) from None
