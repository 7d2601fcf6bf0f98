"""Heartbeats for activities that wait on something else (a mail server, another workflow):
with a short heartbeat timeout, Temporal notices a dead worker in seconds, not at the end of a
long start-to-close timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")


async def heartbeating(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`, heartbeating every second so that Temporal notices a dead worker quickly."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if done:
            return task.result()
        activity.heartbeat()
