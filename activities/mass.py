"""Activities of the `MassModify` workflow: freezing the selection, and finding out why an
opportunity cannot take its change (the changes themselves travel as signals)."""

from __future__ import annotations

import asyncio

import asyncpg
from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.client import Client

from activities.failures import BadData, classified
from runtime.opportunity_runs import unreachable_reason
from store import search
from store.search import SearchFilters

MAX_SELECTION = 10_000
"""Opportunities one batch may change: its frozen selection travels in its history."""


class Selection(BaseModel):
    """What a batch changes: the opportunities matching `filters`, or those of `ids`."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    filters: SearchFilters | None = None
    ids: list[str] | None = None


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
