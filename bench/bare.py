"""The bare workflow `bench.engine` compares this service with: commands into a queue, taken
in order in batches of up to 50 with one no-op activity per batch (or local activity, the
second reference), as the Opportunity writes one projection per batch. Its own module, so
the workflow sandbox imports little."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

MAX_BATCH = 50


@activity.defn(name="bare_effect")
async def bare_effect(commands: list[dict[str, Any]]) -> None:
    """The side effect of a batch of bare commands: nothing."""


@workflow.defn(name="BareCommands")
class BareCommands:
    """Commands into a queue, one activity per batch, in order: the engine's own cost."""

    def __init__(self) -> None:
        self.queue: list[dict[str, Any]] = []
        self.done = 0

    @workflow.signal(name="command")
    def command_signal(self, command: dict[str, Any]) -> None:
        self.queue.append(command)

    @workflow.update(name="command")
    async def command_update(self, command: dict[str, Any]) -> int:
        self.queue.append(command)
        target = self.done + len(self.queue)
        await workflow.wait_condition(lambda: self.done >= target)
        return self.done

    @workflow.query(name="done")
    def done_query(self) -> int:
        return self.done

    @workflow.run
    async def run(self, local: bool = False) -> None:
        """With `local`, each batch's activity is a local activity: the reference for ours,
        which writes the projection of a small batch by local activity."""
        while True:
            await workflow.wait_condition(lambda: bool(self.queue))
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            execute = workflow.execute_local_activity if local else workflow.execute_activity
            await execute(bare_effect, batch, start_to_close_timeout=timedelta(seconds=10))
            self.done += len(batch)
