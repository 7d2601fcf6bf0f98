"""The published JSON Schemas under `contract/`: generated from the models, never drifting from
them, and accepting what the service really sends and receives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from sales import core
from sales.commands import ChangeStage, PerformActions
from starter.client import schemas
from tests.support.core import PROCESS, T0, opened
from tests.support.helpers import EXAMPLE_PROCESS

CONTRACT = Path(schemas.CONTRACT_DIR)


def validator(path: str) -> Draft202012Validator:
    schema = json.loads((CONTRACT / path).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_committed_schemas_are_the_generated_ones() -> None:
    generated = schemas.generate()
    committed = {p.relative_to(CONTRACT).as_posix() for p in CONTRACT.rglob("*.json")}
    assert committed == set(generated), "run `make contract` and commit contract/"
    for path, schema in generated.items():
        assert (CONTRACT / path).read_text() == schemas.render(schema), (
            f"contract/{path} drifted from the models: run `make contract` and commit it"
        )


# The examples of contract/README.md, as a backend service would send them.
COMMAND_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("perform_actions", {"action_ids": ["intro-call"]}),
    ("complete_actions", {"action_ids": ["intro-call"], "outcome": "Sale Made", "notes": "n"}),
    (
        "add_action",
        {
            "stage": "Prospect",
            "action": {"action_id": "x", "type": "letter", "title": "X", "template": "welcome"},
        },
    ),
    ("modify_action", {"action_id": "intro-call", "changes": {"title": "Call"}}),
    ("delete_action", {"action_id": "seminar"}),
    ("change_stage", {"stage": "Proposal", "cancel_open_activities": False, "reason": "r"}),
    ("record_outcome", {"activity_id": "a-1", "outcome": "Sale Made", "stage": "Proposal"}),
    ("delete_activity", {"activity_id": "a-1"}),
    ("change_owner", {"owner": "bob", "request_id": "crm-1", "by": "crm"}),
]


@pytest.mark.parametrize(("name", "payload"), COMMAND_EXAMPLES)
def test_the_contract_examples_are_valid_commands(name: str, payload: dict[str, Any]) -> None:
    validator(f"commands/{name}.json").validate(payload)


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("change_stage", {}),  # stage missing
        ("change_stage", {"stage": "Proposal", "stag": "typo"}),  # unknown field
        ("perform_actions", {"action_ids": []}),  # at least one
        ("change_stage", {"stage": "Proposal", "source": "robot"}),  # not a source
    ],
)
def test_the_schemas_refuse_what_the_workflow_refuses(name: str, payload: dict[str, Any]) -> None:
    assert not validator(f"commands/{name}.json").is_valid(payload)


def test_start_input_and_process_definition_examples_are_valid() -> None:
    validator("workflows/Opportunity.input.json").validate(
        {"opportunity_id": "opp-1001", "contact_id": "c-17", "process_id": "life-insurance",
         "name": "Term life", "owner": "ann", "stage": "Prospect"}
    )  # fmt: skip
    validator("process-definition.json").validate(json.loads(EXAMPLE_PROCESS.read_text()))


def test_what_the_workflow_returns_matches_the_result_schemas() -> None:
    state = opened()
    decision = core.apply(state, ChangeStage(stage="Proposal", by="ann"), T0)
    decision = core.apply(decision.state, PerformActions(action_ids=["proposal-review"]), T0)
    as_json = decision.state.model_dump(mode="json")
    validator("queries/state.json").validate(as_json)
    validator("workflows/Opportunity.result.json").validate(as_json)
    validator("queries/history.json").validate(as_json["history"])
    validator("updates/result.json").validate(decision.result.model_dump(mode="json"))
    assert PROCESS.definition.process_id == as_json["process_id"]
