"""The bare workflows the benchmarks compare this service with, in a module of their own so
the workflow sandbox imports little.

`BareCommands` (`bench.engine`): commands into a queue, taken in order in batches of up to 50
with one no-op activity per batch (or local activity, the second reference), as the
Opportunity writes one projection per batch.

`BareOpportunity` (`bench.fleet`): one opportunity of a fleet at the least a durable command
with a side effect in a database can cost: a row for its opening and a row per command in
`bench_fleet_rows`, each by one local activity, in order, and in the same local activity (one
transaction) the calendar rows the command names (`"calendar"`: a row inserted per activity
ours creates, updated per activity ours cancels or completes, deleted per activity ours
deletes, in `bench_fleet_calendar`); started with `"index": true`, it also upserts the
contract's search attributes as ours does (at the opening, and with each command those it
names in `"attributes"`, the ones ours changes): the reference for what indexing costs. It
applies no rule: `bench.fleet` tells it, command by command, the work ours does."""

from __future__ import annotations

from dataclasses import dataclass, field
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
);
CREATE TABLE IF NOT EXISTS bench_fleet_calendar (
    workflow_id text NOT NULL,
    activity_id text NOT NULL,
    status      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, activity_id)
)
"""
"""The bare opportunities' rows: seq 0 is the opening, 1, 2, ... the commands; and the calendar
rows their commands write, one per calendar activity, as ours has in `calendar_activities`."""

CALENDAR = {
    "create": "INSERT INTO bench_fleet_calendar (workflow_id, activity_id, status)"
    " VALUES ($1, $2, 'active') ON CONFLICT DO NOTHING",
    "cancel": "UPDATE bench_fleet_calendar SET status = 'canceled', updated_at = now()"
    " WHERE workflow_id = $1 AND activity_id = $2 AND status = 'active'",
    "complete": "UPDATE bench_fleet_calendar SET status = 'done', updated_at = now()"
    " WHERE workflow_id = $1 AND activity_id = $2 AND status = 'active'",
    "delete": "DELETE FROM bench_fleet_calendar WHERE workflow_id = $1 AND activity_id = $2",
}
"""The calendar row a command writes, by what it does to one calendar activity; each
idempotent like ours (only an active row is canceled or completed)."""


@dataclass
class CalendarRow:
    op: str
    """A key of `CALENDAR`."""
    activity_id: str


@dataclass
class FleetRow:
    workflow_id: str
    seq: int
    name: str
    payload: dict[str, Any]
    calendar: list[CalendarRow] = field(default_factory=list)


class FleetRows:
    """The bare opportunity's side effect, over the worker's pool; idempotent like ours."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="bare_fleet_row")
    async def write(self, row: FleetRow) -> None:
        """The command's row, alone in one statement, or with its calendar rows in one
        transaction (as ours writes a command that moves nothing, or its changes)."""
        insert = (
            "INSERT INTO bench_fleet_rows (workflow_id, seq, name, payload)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
        )
        if not row.calendar:
            await self.pool.execute(insert, row.workflow_id, row.seq, row.name, row.payload)
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(insert, row.workflow_id, row.seq, row.name, row.payload)
            for change in row.calendar:
                await conn.execute(CALENDAR[change.op], row.workflow_id, change.activity_id)


COMMANDS = (
    "change_owner", "add_action", "perform_actions", "complete_actions", "change_stage",
    "delete_activity", "delete_action",
)  # fmt: skip
"""The commands `bench.fleet` sends (each a signal and an update of the same name, as ours)."""
ATTRIBUTES = {key.name: key for key in sa.ALL}


def _handlers(name: str) -> tuple[Any, Any]:
    """The signal and the same-name update of one command: both queue it; the update returns
    once its row is written."""

    @workflow.signal(name=name)
    def on_signal(self: Any, command: dict[str, Any]) -> None:
        self.receive(name, command)

    @workflow.update(name=name)
    async def on_update(self: Any, command: dict[str, Any]) -> int:
        ticket = self.receive(name, command)
        await workflow.wait_condition(lambda: self.written >= ticket)
        return ticket

    return on_signal, on_update


@workflow.defn(name="BareOpportunity")
class BareOpportunity:
    """Writes its opening row, then one row per command in arrival order (with the calendar
    rows its `"calendar"` names); an update returns once its row is written. Takes the
    commands of `COMMANDS` (each as signal or update) with any JSON object. With `"index":
    true` in its start, it upserts the search attributes ours sets when it opens, and with
    each command those its `"attributes"` name."""

    def __init__(self) -> None:
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.received = 0
        self.written = 0

    change_owner_signal, change_owner = _handlers("change_owner")
    add_action_signal, add_action = _handlers("add_action")
    perform_actions_signal, perform_actions = _handlers("perform_actions")
    complete_actions_signal, complete_actions = _handlers("complete_actions")
    change_stage_signal, change_stage = _handlers("change_stage")
    delete_activity_signal, delete_activity = _handlers("delete_activity")
    delete_action_signal, delete_action = _handlers("delete_action")

    def receive(self, name: str, command: dict[str, Any]) -> int:
        """Queue a command; its ticket (the count received)."""
        self.queue.append((name, command))
        self.received += 1
        return self.received

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
            name, command = self.queue.pop(0)
            await self._write(self.written + 1, name, command)
            attributes = command.get("attributes") or {}
            if index and attributes:
                workflow.upsert_search_attributes(
                    [ATTRIBUTES[key].value_set(value) for key, value in attributes.items()]
                )
            self.written += 1

    async def _write(self, seq: int, name: str, payload: dict[str, Any]) -> None:
        calendar = [CalendarRow(**change) for change in payload.get("calendar") or []]
        row = FleetRow(workflow.info().workflow_id, seq, name, payload, calendar)
        await workflow.execute_local_activity_method(
            FleetRows.write, row, start_to_close_timeout=timedelta(seconds=10)
        )
