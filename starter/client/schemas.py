"""The published payload contract: JSON Schemas generated from the pydantic models.

Backend services in any language validate what they send (and parse what they get) against
these files under `contract/`, so they are generated from the very models the workflows use;
`tests/test_contract.py` fails when the committed files drift from the code, and
`python -m starter.client.schemas` (or `make contract`) rewrites them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from sales.errors import FAILURE_CODES, REJECTION_CODES
from sales.events import OpportunityEvent
from sales.opportunity import HistoryEntry, Opportunity, StartOpportunity
from sales.process import ProcessDefinition
from sales.registry import COMMANDS
from sales.results import CommandOutcome, CommandResult
from workflows.mass_messages import MassModifyInput, Progress
from workflows.messages import ReopenOpportunity

CONTRACT_DIR = Path(__file__).resolve().parents[2] / "contract"


def _input(model: type[BaseModel], title: str) -> Callable[[], dict[str, Any]]:
    return lambda: _titled(model.model_json_schema(mode="validation"), title)


def _output(kind: Any, title: str) -> Callable[[], dict[str, Any]]:
    return lambda: _titled(TypeAdapter(kind).json_schema(mode="serialization"), title)


def _titled(schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": title,
    }


def _codes() -> dict[str, Any]:
    both: dict[str, list[str]] = {code: [] for code in [*REJECTION_CODES, *FAILURE_CODES]}
    for code in both:
        if code in REJECTION_CODES:
            both[code].append(f"rejection: {REJECTION_CODES[code]}")
        if code in FAILURE_CODES:
            both[code].append(f"failed side effect: {FAILURE_CODES[code]}")
    return _titled(
        {
            "description": "Every code the service gives beside a message: a rejection's (in "
            "an update's or a start's ApplicationError details, the message starting with it, "
            "in state.rejected[].code and in command_outcome.code) and a failed side effect's "
            "(an action's last_error.code, an action result's code, a refused batch's details): "
            "decide by the code, never by the message text.",
            "type": "string",
            "oneOf": [
                {"const": code, "description": "; ".join(meanings)}
                for code, meanings in both.items()
            ],
        },
        "Codes",
    )


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "rejection-codes.json": _codes,
    "workflows/Opportunity.input.json": _input(
        StartOpportunity, "Input of the Opportunity workflow"
    ),
    "workflows/Opportunity.result.json": _output(
        Opportunity, "Result of the Opportunity workflow (its state when won or lost)"
    ),
    "workflows/Opportunity.reopen.json": _input(
        ReopenOpportunity, "Input of an Opportunity run that reopens a won or lost opportunity"
    ),
    "workflows/MassModify.input.json": _input(MassModifyInput, "Input of the MassModify workflow"),
    "workflows/MassModify.result.json": _output(Progress, "Report of a MassModify workflow"),
    **{
        f"commands/{name}.json": _input(
            model, f"Payload of the {name} signal and of the {name} update"
        )
        for name, model in COMMANDS.items()
    },
    "updates/result.json": _output(CommandResult, "What every command update returns"),
    "queries/state.json": _output(Opportunity, "Result of the state query"),
    "queries/history.json": _output(list[HistoryEntry], "Result of the history query"),
    "queries/progress.json": _output(
        Progress | None, "Result of the MassModify progress query (null before it starts)"
    ),
    "signals/command_outcome.json": _input(
        CommandOutcome, "Signal sent to a command's reply_to workflow once it is answered"
    ),
    "signals/opportunity_event.json": _input(
        OpportunityEvent, "Signal a Temporal subscriber receives; also a webhook's body"
    ),
    "process-definition.json": _input(
        ProcessDefinition, "A sales process (Opportunity Setup), for `process apply`"
    ),
}
"""File under `contract/` to the function making its schema."""


def generate() -> dict[str, dict[str, Any]]:
    return {path: make() for path, make in SCHEMAS.items()}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(directory: Path = CONTRACT_DIR) -> list[Path]:
    """Write every schema under `directory`, removing files no longer generated."""
    schemas = generate()
    written = []
    for path, schema in schemas.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(schema))
        written.append(target)
    for stale in directory.rglob("*.json"):
        if stale.relative_to(directory).as_posix() not in schemas:
            stale.unlink()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else CONTRACT_DIR
    for path in write(target):
        print(path)
