"""Opportunity Setup: process definitions validate with messages that name the place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sales.errors import describe_validation_error
from sales.process import CalendarAction, ProcessDefinition
from tests.support.helpers import EXAMPLE_PROCESS, example_definition


def problem(document: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        ProcessDefinition.model_validate(document)
    return describe_validation_error(caught.value, "process")


def test_example_uses_all_three_action_types() -> None:
    definition = ProcessDefinition.model_validate(json.loads(EXAMPLE_PROCESS.read_text()))
    types = {action.type for stage in definition.stages for action in stage.actions}
    assert types == {"calendar", "letter", "event"}
    first = definition.stages[0].actions[0]
    assert isinstance(first, CalendarAction)
    assert first.activity.track_outcome and first.create_activity_on_entry


def test_duplicate_stage_names_are_named() -> None:
    document = example_definition("p")
    document["stages"].append({"name": "Prospect"})
    assert "stages[5]: duplicate stage name 'Prospect'" in problem(document)


def test_duplicate_action_ids_name_both_stages() -> None:
    document = example_definition("p")
    document["stages"][2]["actions"].append(
        {"action_id": "intro-call", "type": "letter", "title": "x", "template": "t"}
    )
    message = problem(document)
    assert "duplicate action id 'intro-call'" in message
    assert "'Prospect'" in message and "'Proposal'" in message


def test_unknown_action_type_names_the_valid_ones() -> None:
    document = example_definition("p")
    document["stages"][0]["actions"][1]["type"] = "fax"
    message = problem(document)
    assert "stages[0].actions[1]" in message
    assert "'fax'" in message and "'calendar', 'letter', 'event'" in message


def test_missing_fields_are_named() -> None:
    document = example_definition("p")
    del document["stages"][0]["actions"][1]["template"]
    del document["stages"][0]["actions"][2]["event_id"]
    del document["name"]
    message = problem(document)
    assert "name: Field required" in message
    assert "stages[0].actions[1].template: Field required" in message
    assert "stages[0].actions[2].event_id: Field required" in message


def test_outcome_stage_must_exist() -> None:
    document = example_definition("p", outcome_stages={"Sale Made": "Signed"})
    message = problem(document)
    assert "outcome_stages['Sale Made'] points at unknown stage 'Signed'" in message
    assert "'Closed won'" in message


def test_empty_process_is_refused() -> None:
    assert "at least one stage" in problem({"process_id": "p", "name": "P", "stages": []})


def test_unknown_fields_are_refused() -> None:
    document = example_definition("p", change_stage_automaticaly=True)
    assert "change_stage_automaticaly: Extra inputs are not permitted" in problem(document)


def test_yaml_and_json_give_the_same_definition(tmp_path: Path) -> None:
    document = example_definition("p")
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(document))
    from_yaml = ProcessDefinition.model_validate(yaml.safe_load(path.read_text()))
    assert from_yaml == ProcessDefinition.model_validate(document)
    assert from_yaml.fingerprint() == ProcessDefinition.model_validate(document).fingerprint()


def test_fingerprint_changes_with_the_definition() -> None:
    a = ProcessDefinition.model_validate(example_definition("p"))
    b = ProcessDefinition.model_validate(example_definition("p", allow_cancel_activities=False))
    assert a.fingerprint() != b.fingerprint()
