"""Activities of the `MassModify` workflow: freezing the selection, and finding out why an
opportunity cannot take its change (the changes themselves travel as signals)."""

from __future__ import annotations

import asyncio

import asyncpg
from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.failures import BadData, classified
from runtime.workflow_ids import opportunity_workflow_id
from store import search
from store.search import SearchFilters

MAX_SELECTION = 10_000
"""Opportunities one batch may change: its frozen selection travels in its history."""


class Selection(BaseModel):
    """What a batch changes: the opportunities matching `filters`, or those of `ids`."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    filters: SearchFilters | None = None
    ids: list[str] | None = None


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


class MassActivities:
    def __init__(self, pool: asyncpg.Pool, client: Client) -> None:
        self.pool = pool
        self.client = client

    @activity.defn(name="resolve_batch")
    @classified("resolve_batch")
    async def resolve_batch(self, selection: Selection) -> list[str]:
        """The matching opportunity ids now: the batch works on this frozen list (at most
        `MAX_SELECTION` of them)."""
        if selection.ids is not None:
            ids = sorted(dict.fromkeys(selection.ids))
        else:
            ids = await search.matching_ids(self.pool, selection.filters or SearchFilters())
        if len(ids) > MAX_SELECTION:
            raise BadData(
                f"the selection holds {len(ids):,} opportunities; one batch changes at most "
                f"{MAX_SELECTION:,}: narrow the filters",
                "limit_reached",
            )
        return ids

    @activity.defn(name="unreachable")
    @classified("unreachable")
    async def unreachable(self, opportunity_ids: list[str]) -> dict[str, str]:
        """Why each of these opportunities cannot take a command (closed, unknown,
        terminated); the running ones are left out."""
        reasons = await asyncio.gather(
            *(unreachable_reason(self.client, i) for i in opportunity_ids)
        )
        answers = zip(opportunity_ids, reasons, strict=True)
        return {i: reason for i, reason in answers if reason is not None}

    def all(self) -> list:
        return [self.resolve_batch, self.unreachable]
