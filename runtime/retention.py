"""The outbox's retention schedule: every hour, `OutboxRetention` deletes the events older
than `OPPORTUNITIES_EVENT_RETENTION_DAYS` (default 30) that no subscription still needs. Every
worker makes sure the schedule exists and carries the current setting at its start."""

from __future__ import annotations

from datetime import timedelta

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

from runtime.settings import BadSetting, setting
from workflows.outbox_retention import SCHEDULE_ID, RetentionInput

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
