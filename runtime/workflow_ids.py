"""The contract's workflow ids: `opportunity-<opportunity_id>`, `mass-modify-<batch_id>`."""

from __future__ import annotations

OPPORTUNITY_PREFIX = "opportunity-"
MASS_MODIFY_PREFIX = "mass-modify-"


def opportunity_workflow_id(opportunity_id: str) -> str:
    return f"{OPPORTUNITY_PREFIX}{opportunity_id}"


def opportunity_id_of(workflow_id: str) -> str | None:
    """The opportunity id in an opportunity's workflow id (None for another workflow)."""
    if not workflow_id.startswith(OPPORTUNITY_PREFIX):
        return None
    return workflow_id.removeprefix(OPPORTUNITY_PREFIX)


def mass_modify_workflow_id(batch_id: str) -> str:
    return f"{MASS_MODIFY_PREFIX}{batch_id}"
