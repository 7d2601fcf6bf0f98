"""Activities of the `MassModify` workflow: freezing the selection, and finding out why an
opportunity cannot take its change (the changes themselves travel as signals)."""

from __future__ import annotations

import asyncio

import asyncpg
from temporalio import activity
from temporalio.client import Client

from activities import search
from activities.failures import BadData, classified
from activities.search import SearchFilters
from starter.client import OpportunitiesClient
from workflows.mass_messages import MAX_SELECTION, Selection


class MassActivities:
    def __init__(self, pool: asyncpg.Pool, client: Client, task_queue: str) -> None:
        self.pool = pool
        self.client = client
        self.task_queue = task_queue

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
        opportunities = OpportunitiesClient(self.client, self.task_queue)
        reasons = await asyncio.gather(*(opportunities.unreachable(i) for i in opportunity_ids))
        answers = zip(opportunity_ids, reasons, strict=True)
        return {i: reason for i, reason in answers if reason is not None}

    def all(self) -> list:
        return [self.resolve_batch, self.unreachable]
