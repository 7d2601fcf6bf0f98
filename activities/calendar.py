"""The activity that creates a calendar activity (its row: `store.calendar`)."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from activities.failures import classified
from sales.effects import CreateCalendarActivity, EffectOutcome
from store import calendar


class CalendarActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="create_calendar_activity")
    @classified("create_calendar_activity")
    async def create_calendar_activity(self, effect: CreateCalendarActivity) -> EffectOutcome:
        row, created = await calendar.create(self.pool, effect)
        return EffectOutcome(
            status="created" if created else "exists",
            message=f"calendar activity {row.activity_id} created for "
            f"{row.starts_at:%Y-%m-%d %H:%M} UTC",
            activity_id=row.activity_id,
            created_on=row.created_on,
        )

    def all(self) -> list:
        return [self.create_calendar_activity]
