"""Every command an opportunity accepts, each declared once: its name (the signal's and the
update's), its payload model, its rule, what it needs looked up before it is applied, whether
it leaves stages and actions untouched, and its summary (for docs and CLI help).

The workflow's handlers, the core's dispatch, the typed client, the JSON Schemas and the CLI
come from this registry or are checked against it (`tests/unit/test_registry.py`). Adding a
command is: its payload model (`sales.commands`), its rule, its declaration here, its tests
and its CLI form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sales import action_rules, stage_rules, team_rules, value_rules
from sales.commands import (
    AddAction,
    AddRemark,
    Assign,
    ChangeOwner,
    ChangeStage,
    Command,
    CompleteActions,
    DeleteAction,
    DeleteActivity,
    DeleteOpportunity,
    ModifyAction,
    ModifyActivity,
    MoveProcess,
    PerformActions,
    RecordExternalStatus,
    RecordOutcome,
    UpdateDetails,
)
from sales.errors import CommandRejected
from sales.opportunity import Opportunity
from sales.process import FoundProcess
from sales.results import Ruling
from sales.validation import validate


@dataclass(frozen=True)
class Needs:
    """What a command needs looked up outside the opportunity before it is applied."""

    process_id: str | None = None
    """A process whose latest version the command moves to."""
    user_ids: tuple[str, ...] = ()
    """Users the command names (an owner, an assignee, a team member): each must exist."""

    def __bool__(self) -> bool:
        return self.process_id is not None or bool(self.user_ids)


@dataclass(frozen=True)
class LookedUp:
    """What the shell looked up for a command's `Needs`."""

    process: FoundProcess = field(default_factory=FoundProcess)
    users: frozenset[str] | None = None
    """Of the users needed, those that exist (None: not looked up, so not checked)."""


Rule = Callable[[Opportunity, Any, datetime, LookedUp], Ruling]
"""A rule: changes the (copied) state in place, returns what it did; `CommandRejected` when
the command cannot be applied."""


@dataclass(frozen=True)
class Declaration:
    """One command, declared once."""

    name: str
    model: type[Command]
    rule: Rule
    summary: str
    needs: Callable[[Any], Needs] = lambda command: Needs()
    leaves_stages: bool = False
    """The rule changes no stage or action state (so they need no copy)."""
    cli: str = ""
    """The `opportunities` command that sends it (`action add`, ...)."""
    noted: bool = False
    """When its rule adds no history entry, the core adds one in the current stage saying
    what it changed: the history shows who changed the owner, the actions, their activities."""


def _plain(rule: Callable[[Opportunity, Any, datetime], Ruling]) -> Rule:
    """A rule that needs nothing looked up."""
    return lambda state, command, now, looked_up: rule(state, command, now)


def _users(*names: str | None) -> Needs:
    return Needs(user_ids=tuple(sorted({name for name in names if name})))


def _entry_users(command: ChangeStage | CompleteActions | RecordOutcome) -> Needs:
    """The assignees named for the activities a new stage creates."""
    return _users(*(details.assignee for details in command.overrides.values()))


DECLARATIONS = (
    Declaration(
        "change_stage", ChangeStage, _plain(stage_rules.change_stage),
        "Move the opportunity to any stage of its process, or to the next one.",
        needs=lambda c: _entry_users(c), cli="stage",
    ),
    Declaration(
        "perform_actions", PerformActions, _plain(action_rules.perform_actions),
        "Perform tagged actions: create the calendar activity, send the letter, invite.",
        needs=lambda c: _users(*(o.assignee for o in c.overrides.values())),
        noted=True, cli="perform",
    ),
    Declaration(
        "complete_actions", CompleteActions, _plain(action_rules.complete_actions),
        "Mark actions completed without performing them (the stage may move on).",
        needs=lambda c: _entry_users(c), noted=True, cli="complete",
    ),
    Declaration(
        "add_action", AddAction, _plain(action_rules.add_action),
        "Add an action to a stage of this opportunity only.", noted=True, cli="action add",
    ),
    Declaration(
        "modify_action", ModifyAction, _plain(action_rules.modify_action),
        "Change fields of an action of this opportunity only.", noted=True, cli="action modify",
    ),
    Declaration(
        "delete_action", DeleteAction, _plain(action_rules.delete_action),
        "Delete an action from this opportunity only.", noted=True, cli="action delete",
    ),
    Declaration(
        "record_outcome", RecordOutcome, _plain(action_rules.record_outcome),
        "The calendar side: a linked activity is done, with its outcome.",
        needs=lambda c: _entry_users(c), noted=True, cli="activity done",
    ),
    Declaration(
        "delete_activity", DeleteActivity, _plain(action_rules.delete_activity),
        "Delete a linked calendar activity, so that its action can create another.",
        noted=True, cli="activity delete",
    ),
    Declaration(
        "modify_activity", ModifyActivity, _plain(action_rules.modify_activity),
        "Change an active calendar activity's details.",
        needs=lambda c: _users(c.assignee), cli="activity modify",
    ),
    Declaration(
        "assign", Assign, _plain(team_rules.assign),
        "Give a role on the opportunity's team to a user.",
        needs=lambda c: _users(c.user), leaves_stages=True, cli="assign",
    ),
    Declaration(
        "move_process", MoveProcess,
        lambda state, c, now, looked_up: stage_rules.move_process(state, c, now, looked_up.process),
        "Move the opportunity to a stage of another process (its latest version).",
        needs=lambda c: Needs(process_id=c.process_id), cli="move",
    ),
    Declaration(
        "add_remark", AddRemark, _plain(team_rules.add_remark),
        "Add a dated remark to the opportunity.", leaves_stages=True, cli="remark add",
    ),
    Declaration(
        "delete_opportunity", DeleteOpportunity, _plain(team_rules.delete_opportunity),
        "End the opportunity as deleted (out of searches, kept in history).", cli="delete",
    ),
    Declaration(
        "update_details", UpdateDetails, _plain(value_rules.update_details),
        "Set or clear what the opportunity is worth, when it should close, and its name.",
        leaves_stages=True, cli="details",
    ),
    Declaration(
        "record_external_status", RecordExternalStatus,
        _plain(stage_rules.record_external_status),
        "Another system's status (a case or policy): moves the opportunity as the process maps "
        "it.", cli="external-status",
    ),
    Declaration(
        "change_owner", ChangeOwner, _plain(stage_rules.change_owner),
        "Hand the opportunity to another owner.",
        needs=lambda c: _users(c.owner), leaves_stages=True, noted=True, cli="owner",
    ),
)  # fmt: skip

REGISTRY: dict[str, Declaration] = {declaration.name: declaration for declaration in DECLARATIONS}
"""Command name to its declaration."""
_BY_MODEL: dict[type[Command], Declaration] = {d.model: d for d in DECLARATIONS}

COMMANDS: dict[str, type[Command]] = {d.name: d.model for d in DECLARATIONS}
"""Command name (signal and update name) to payload model."""


def declaration_of(command: Command) -> Declaration:
    return _BY_MODEL[type(command)]


def command_name(command: Command) -> str:
    return _BY_MODEL[type(command)].name


def needs(command: Command) -> Needs:
    """What `command` needs looked up before it is applied."""
    return _BY_MODEL[type(command)].needs(command)


def parse_command(name: str, payload: Any) -> Command:
    """Validate a decoded payload (a JSON value from any Temporal client) into a command."""
    declaration = REGISTRY.get(name)
    if declaration is None:
        raise CommandRejected(
            f"unknown command {name!r}; commands are {sorted(REGISTRY)}", code="unknown_command"
        )
    if not isinstance(payload, dict):
        raise CommandRejected(
            f"invalid {name} payload: expected a JSON object, got {_json_type(payload)}",
            code="invalid_payload",
        )
    return validate(declaration.model, payload, f"{name} payload")


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
