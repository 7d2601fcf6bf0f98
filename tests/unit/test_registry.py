"""Each command is declared once (`sales.registry`); every list that names commands follows
from the declarations or agrees with them: the payload models, the workflow's signals and
updates, the typed client's methods, the published JSON Schemas and the CLI."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer.main
from temporalio.workflow import _Definition

from sales import commands
from sales.commands import Command, Envelope
from sales.registry import COMMANDS, DECLARATIONS, REGISTRY, Needs
from starter.cli import app
from starter.client import OpportunitiesClient
from workflows.opportunity import OpportunityWorkflow

CONTRACT = Path(__file__).parents[2] / "contract"
NAMES = set(REGISTRY)


def test_each_command_is_declared_once_with_its_own_model() -> None:
    assert len(DECLARATIONS) == len(NAMES) == len({d.model for d in DECLARATIONS})
    payloads = {
        model
        for _, model in inspect.getmembers(commands, inspect.isclass)
        if issubclass(model, Command) and model is not Command
    }
    assert payloads == set(COMMANDS.values()), "every payload model is a declared command's"
    for declaration in DECLARATIONS:
        assert declaration.summary.endswith("."), declaration.name
        assert declaration.cli, f"{declaration.name} has no CLI form"


def test_every_command_carries_the_envelope() -> None:
    carried = set(Command.model_fields)
    assert carried == set(Envelope.model_fields) - {"actor"}, "the actor is never sent"
    for model in COMMANDS.values():
        assert carried <= set(model.model_fields)


def test_the_workflow_takes_each_command_as_a_signal_and_an_update_and_nothing_else() -> None:
    definition = _Definition.from_class(OpportunityWorkflow)
    assert definition is not None
    signals = {name for name in definition.signals if name is not None}  # None: the catch-all
    assert signals == NAMES
    assert set(definition.updates) == NAMES
    for name in NAMES:  # what the Temporal UI shows of each
        assert definition.signals[name].description == REGISTRY[name].summary
        assert definition.updates[name].description == REGISTRY[name].summary


def test_the_client_has_a_method_per_command_taking_its_payload_fields() -> None:
    for name, model in COMMANDS.items():
        method = getattr(OpportunitiesClient, name, None)
        assert method is not None, f"OpportunitiesClient.{name} is missing"
        parameters = inspect.signature(method).parameters
        named = {
            p.name
            for p in parameters.values()
            if p.kind is not p.VAR_KEYWORD and p.name not in {"self", "opportunity_id"}
        }
        assert named <= set(model.model_fields), f"{name}: {named - set(model.model_fields)}"
        required = {f for f, info in model.model_fields.items() if info.is_required()}
        assert required <= named, f"{name} does not take {required - named}"
        assert any(p.kind is p.VAR_KEYWORD for p in parameters.values()), (
            f"{name} takes the envelope (`request_id`, `by`, `reply_to`) as keywords"
        )


def test_the_contract_publishes_a_schema_per_command() -> None:
    published = {path.stem for path in (CONTRACT / "commands").glob("*.json")}
    assert published == NAMES


def test_the_cli_sends_each_command() -> None:
    for declaration in DECLARATIONS:
        command: Any = typer.main.get_command(app)
        for word in declaration.cli.split():
            command = getattr(command, "commands", {}).get(word)
        assert command is not None, f"`opportunities {declaration.cli}` is missing"


def test_needs_are_data() -> None:
    assert not Needs()
    assert Needs(process_id="p") and Needs(user_ids=("ann",))
