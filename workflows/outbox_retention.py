"""The outbox's retention: a Temporal schedule runs this workflow every hour, and it deletes
the events older than `OPPORTUNITIES_EVENT_RETENTION_DAYS` (default 30) that no subscription
still needs (never one a subscription has not read, nor one it holds undelivered or parked).
Every worker makes sure the schedule exists and carries the current setting at its start. The
audit trail does not depend on the outbox: the history and detail changes are kept apart."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from runtime.settings import BadSetting, setting
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


VARIABLE = "OPPORTUNITIES_EVENT_RETENTION_DAYS"


def retention_days() -> float:
    raw = setting(VARIABLE) or "30"
    try:
        days = float(raw)
    except ValueError:
        raise BadSetting(f"{VARIABLE} must be a number of days, not {raw!r}") from None
    if not 0 < days <= 36500:
        raise BadSetting(f"{VARIABLE} must be more than 0 and at most 36500, not {raw!r}")
    return days


def _schedule(task_queue: str, days: float) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "OutboxRetention",
            RetentionInput(retention_days=days),
            id=f"{SCHEDULE_ID}-run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
    )


async def ensure_schedule(client: Client, task_queue: str) -> None:
    schedule = _schedule(task_queue, retention_days())
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(update)
