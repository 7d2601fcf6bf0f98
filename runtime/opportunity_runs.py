"""Whether commands can reach an opportunity now, asked of Temporal: shared by the typed client
and `MassModify`'s activities."""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from runtime.workflow_ids import opportunity_workflow_id


async def unreachable_reason(client: Client, opportunity_id: str) -> str | None:
    """Why commands cannot reach this opportunity now, or None when it is running."""
    try:
        description = await client.get_workflow_handle(
            opportunity_workflow_id(opportunity_id)
        ).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return f"no opportunity {opportunity_id!r}"
        raise
    if description.status == WorkflowExecutionStatus.RUNNING:
        return None
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return f"opportunity {opportunity_id!r} is closed; reopen it to change it"
    status = description.status.name.lower() if description.status else "unknown"
    return f"opportunity {opportunity_id!r} is not running ({status})"
