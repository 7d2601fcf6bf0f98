"""The outbox's retention: a Temporal schedule runs this workflow every hour, and it deletes
the events older than the retention that no subscription still needs (never one a
subscription has not read, nor one it holds undelivered or parked). The audit trail does not
depend on the outbox: the history and detail changes are kept apart."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows import payloads
    from workflows.messages import NO_INPUT

SCHEDULE_ID = "opportunities-outbox-retention"


class RetentionInput(BaseModel):
    retention_days: float = Field(gt=0, le=36500)


@workflow.defn(name="OutboxRetention")
class OutboxRetentionWorkflow:
    @workflow.run
    async def run(self, raw: RawValue = NO_INPUT) -> int:
        input = payloads.parse_start(raw, RetentionInput, "OutboxRetention input")
        return await workflow.execute_activity(
            "prune_events",
            input.retention_days,
            result_type=int,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )
