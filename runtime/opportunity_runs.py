"""Whether commands can reach an opportunity now, asked of Temporal: shared by the typed client
and `MassModify`'s activities."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from runtime.workflow_ids import opportunity_workflow_id


class Unreachable(BaseModel):
    """Why commands cannot reach an opportunity."""

    reason: str
    ended: bool = False
    """Its workflow completed: the opportunity is won or lost (or deleted), where unknown and
    terminated ones are not."""


async def unreachable(client: Client, opportunity_id: str) -> Unreachable | None:
    """Why commands cannot reach this opportunity now, or None when it is running."""
    try:
        description = await client.get_workflow_handle(
            opportunity_workflow_id(opportunity_id)
        ).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return Unreachable(reason=f"no opportunity {opportunity_id!r}")
        raise
    if description.status == WorkflowExecutionStatus.RUNNING:
        return None
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return Unreachable(
            reason=f"opportunity {opportunity_id!r} is closed; reopen it to change it", ended=True
        )
    status = description.status.name.lower() if description.status else "unknown"
    return Unreachable(reason=f"opportunity {opportunity_id!r} is not running ({status})")


async def unreachable_reason(client: Client, opportunity_id: str) -> str | None:
    """Why commands cannot reach this opportunity now, or None when it is running."""
    found = await unreachable(client, opportunity_id)
    return None if found is None else found.reason
