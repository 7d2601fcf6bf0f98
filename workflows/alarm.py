"""The run's one timer: armed for the next time the loop must act without a command (a stage
timer, a calendar activity falling due, a write to retry), and left running while that time
stays the same. A command that does not move the time adds no timer to the history; one
`wait_condition(timeout=...)` per loop would start and cancel a timer for every command."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow


class Alarm:
    def __init__(self) -> None:
        self.at: datetime | None = None
        self.rang = False
        self._timer: asyncio.Task[None] | None = None

    def set(self, at: datetime | None) -> None:
        """Ring at `at` (None: never); a timer already set for `at` is kept."""
        if at == self.at and not self.rang:
            return
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self.at, self.rang, self._timer = at, False, None
        if at is not None:
            self._timer = asyncio.create_task(self._ring(at))

    async def _ring(self, at: datetime) -> None:
        await workflow.sleep(max(at - workflow.now(), timedelta(0)))
        if self.at == at:
            self.rang = True
