"""The bare workflows the benchmarks compare this service with, in a module of their own so
the workflow sandbox imports little.

`BareCommands` (`bench.engine`): commands into a queue, taken in order in batches of up to 50
with one no-op activity per batch (or local activity, the second reference), as the
Opportunity writes one projection per batch.

`BareOpportunity` (`bench.fleet`): one opportunity of a fleet at the least a durable command
with a side effect in a database can cost: a row for its opening and a row per command in
`bench_fleet_rows`, each by one local activity, in order; started with `"index": true`, it
also upserts the contract's search attributes as ours does (at the opening, and the owner
with each command): the reference for what indexing costs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity, workflow

from runtime import search_attributes as sa

if TYPE_CHECKING:
    import asyncpg

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


FLEET_ROWS = """
CREATE TABLE IF NOT EXISTS bench_fleet_rows (
    workflow_id text NOT NULL,
    seq         integer NOT NULL,
    name        text NOT NULL,
    payload     jsonb NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, seq)
)
"""
"""The bare opportunities' rows: seq 0 is the opening, 1, 2, ... the commands."""


@dataclass
class FleetRow:
    workflow_id: str
    seq: int
    name: str
    payload: dict[str, Any]


class FleetRows:
    """The bare opportunity's side effect, over the worker's pool; idempotent like ours."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="bare_fleet_row")
    async def write(self, row: FleetRow) -> None:
        await self.pool.execute(
            "INSERT INTO bench_fleet_rows (workflow_id, seq, name, payload)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            row.workflow_id,
            row.seq,
            row.name,
            row.payload,
        )


@workflow.defn(name="BareOpportunity")
class BareOpportunity:
    """Writes its opening row, then one row per command in arrival order; an update returns
    once its row is written. Takes `change_owner` (as signal or update), the command
    `bench.fleet` sends, with any JSON object. With `"index": true` in its start, it upserts
    the search attributes ours sets when it opens, and `OpportunityOwner` with each command."""

    def __init__(self) -> None:
        self.queue: list[dict[str, Any]] = []
        self.received = 0
        self.written = 0

    @workflow.signal(name="change_owner")
    def command_signal(self, command: dict[str, Any]) -> None:
        self.queue.append(command)
        self.received += 1

    @workflow.update(name="change_owner")
    async def command_update(self, command: dict[str, Any]) -> int:
        self.command_signal(command)
        ticket = self.received
        await workflow.wait_condition(lambda: self.written >= ticket)
        return ticket

    @workflow.run
    async def run(self, start: dict[str, Any]) -> None:
        index = bool(start.get("index"))
        await self._write(0, "open", start)
        if index:
            workflow.upsert_search_attributes([
                sa.OPPORTUNITY_STAGE.value_set("Opened"),
                sa.SALES_PROCESS.value_set(str(start.get("process_id"))),
                sa.OPPORTUNITY_STATUS.value_set("open"),
                sa.CONTACT_ID.value_set(str(start.get("contact_id"))),
                sa.OPEN_ACTIONS.value_set(0),
            ])  # fmt: skip
        while True:
            await workflow.wait_condition(lambda: bool(self.queue))
            command = self.queue.pop(0)
            await self._write(self.written + 1, "change_owner", command)
            if index:
                workflow.upsert_search_attributes(
                    [sa.OPPORTUNITY_OWNER.value_set(str(command.get("owner")))]
                )
            self.written += 1

    async def _write(self, seq: int, name: str, payload: dict[str, Any]) -> None:
        row = FleetRow(workflow.info().workflow_id, seq, name, payload)
        await workflow.execute_local_activity_method(
            FleetRows.write, row, start_to_close_timeout=timedelta(seconds=10)
        )
