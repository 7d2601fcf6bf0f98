"""Activities of the `MassModify` workflow: freezing the selection, and sending one change to
one opportunity through its own workflow (so every stage-change effect applies as usual)."""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.client import Client

from activities import search
from activities.heartbeat import heartbeating
from activities.search import SearchFilters
from sales.commands import ChangeOwner, ChangeStage, Command
from sales.errors import CommandRejected
from starter.client import OpportunitiesClient, OpportunityNotFound
from workflows.mass_messages import ApplyChange, ItemOutcome, Selection


class MassActivities:
    def __init__(self, pool: asyncpg.Pool, client: Client, task_queue: str) -> None:
        self.pool = pool
        self.client = client
        self.task_queue = task_queue

    @activity.defn(name="resolve_batch")
    async def resolve_batch(self, selection: Selection) -> list[str]:
        """The matching opportunity ids now: the batch works on this frozen list."""
        if selection.ids is not None:
            return sorted(dict.fromkeys(selection.ids))
        return await search.matching_ids(self.pool, selection.filters or SearchFilters())

    @activity.defn(name="apply_change")
    async def apply_change(self, change: ApplyChange) -> ItemOutcome:
        """One opportunity's change, as an update with the batch's request id: applied once,
        however often this activity or the whole batch runs."""
        command: Command
        if change.to_stage is not None:
            command = ChangeStage(
                stage=change.to_stage,
                cancel_open_activities=change.cancel_open_activities,
                source="mass",
                by=change.by,
                request_id=change.batch_id,
            )
        else:
            command = ChangeOwner(
                owner=change.owner or "", by=change.by, request_id=change.batch_id
            )
        opportunities = OpportunitiesClient(self.client, self.task_queue)
        try:
            result = await heartbeating(opportunities.execute(change.opportunity_id, command))
        except CommandRejected as rejected:
            already = "already in stage" in rejected.reason or "already owned by" in rejected.reason
            return ItemOutcome(
                opportunity_id=change.opportunity_id,
                result="skipped" if already else "rejected",
                reason=rejected.reason,
            )
        except OpportunityNotFound as missing:
            return ItemOutcome(
                opportunity_id=change.opportunity_id, result="rejected", reason=str(missing)
            )
        if result.duplicate:
            return ItemOutcome(
                opportunity_id=change.opportunity_id,
                result="skipped",
                reason="already applied by this batch",
            )
        return ItemOutcome(opportunity_id=change.opportunity_id, result="changed")

    def all(self) -> list:
        return [self.resolve_batch, self.apply_change]
