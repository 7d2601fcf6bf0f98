"""What one opportunity costs Temporal, PostgreSQL and the workers, measured on fresh local
servers, and the capacity model `docs/capacity.md` quotes (issue 27).

Three measurements, each with an `opportunities-worker` process of its own:

1. **Per command.** N opportunities of the process `bench` (the example process with stage
   timers, below) are opened with the typed client's `create`, then each is sent every
   command of `sales.registry` in turn by update (the client's default; `change_owner` also by
   signal), N at a time, and closed (`change_stage` to Closed won; N more are opened and
   deleted). For each step: history events and bytes added (the events themselves,
   `HistoryEvent.ByteSize`), Temporal actions as Temporal Cloud counts them
   (https://docs.temporal.io/cloud/actions, counted from the events: starts, signals,
   accepted updates, activities and their retries, local activities once per workflow task,
   timers, search-attribute upserts; queries counted at the client), visibility upserts
   (start, upsert, close, continue-as-new), PostgreSQL transactions and rows written
   (`pg_stat_database.xact_commit`, `pg_stat_user_tables.n_tup_ins+upd+del`, read once every
   backend has flushed its statistics, less the bench's own statements and the worker's
   directory reloads; autovacuum paused) and CPU (/proc of the worker, the Temporal server
   and PostgreSQL), each averaged over the N opportunities.
2. **An opportunity-year.** K opportunities live a year each, side by side, under the mix
   below, with a "day" of D seconds (`OPPORTUNITIES_DAY_SECONDS` of their worker, as the
   stage-timer tests use it; the bench gives due dates in the same compressed days). This is
   neither option the issue names: the time-skipping test server needs a download and
   answers updates and visibility its own way, and counting timers from the definition
   leaves out what a timer does once it fires (its workflow task, the projection write,
   the follow-up activity, the re-armed alarm). Here every timer fires on the real server
   and every write lands in the real database; only the clock runs faster (an opportunity's
   commands are sent at least 1.1 s apart, since search attributes are upserted at most
   once a real second: closer, each would wait for a timer that days apart never need).
   Figures: history per opportunity-year, continue-as-new runs, read-model rows kept and
   written, the gaps between an opportunity's touches (commands and timers fired: the input
   of the cache model).
3. **Replay.** Runs of about 100, 1,000 and 4,000 events (opportunities started with
   `continue_as_new_after_events`, driven by updates until their first run continues): the
   time `temporalio.worker.Replayer` takes over each first run (the workflows and
   interceptors of `tests/unit/test_replay.py`, no sandbox, as workers run), and the time a
   `state` query to that closed run takes on a worker with `max_cached_workflows=0`
   (history fetched and replayed: a command to an opportunity not in the cache).

The process `bench`: the example process (`examples/processes/life-insurance.json`) with a
follow-up after 14 days without a command and idle after 10 in each open stage. The year's
mix, per opportunity (a quarter is 13 weeks: weeks 0 to 9 busy, 10 to 12 quiet, so the
follow-up and idle timers fire once a quarter; due dates 3 days ahead):

| command | when (week of the quarter, day of the week) | per year |
| --- | --- | --- |
| change_owner | week 0, day 0 | 4 |
| complete_actions (the open follow-up) | week 0 (not the first), day 0, if one is open | 3 |
| modify_activity (schedule the introductory call) | first week, day 0 | 1 |
| add_action (a call) | busy weeks, day 0 | 40 |
| perform_actions (calendar) | busy weeks, day 0, the call just added | 40 |
| add_remark | busy weeks, day 1 | 40 |
| modify_activity (reschedule the call) | weeks 1, 5 and 9, day 1 | 12 |
| record_outcome (the call) | busy weeks, day 2, or day 4 in odd weeks (after its notices) | 40 |
| record_outcome (an entry activity) | busy weeks, day 2, those open 2 days or more | 2 |
| update_details | weeks 0, 2, 4, 6 and 8, day 3 | 20 |
| add_action (a letter) | weeks 2 and 6, day 4 | 8 |
| perform_actions (letter) | weeks 2 and 6, day 4, the letter just added | 8 |
| change_stage | weeks 2, 5 and 8, day 5, to the next open stage | 12 |

    .venv/bin/python -m bench.capacity [--per-command 20] [--year-opportunities 8]
        [--weeks 52] [--day-seconds 1] [--replay-lengths 100,1000,4000] [--json PATH]
    .venv/bin/python -m bench.capacity --model PATH   (the tables again from a saved run)
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    QueryWorkflowInput,
    SignalWorkflowInput,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateHandle,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from bench.events import TEST_SETTINGS
from bench.fleet import Cpu, _server_pid, _stat, all_events
from bench.servers import EXAMPLE, local_servers_and_url
from runtime.workflow_ids import opportunity_workflow_id
from sales.commands import ActionOverrides, ActivityDetails, ChangeOwner
from sales.contact import Contact
from sales.errors import CommandRejected
from sales.process import ProcessDefinition
from sales.registry import COMMANDS, REGISTRY
from sales.results import CommandResult
from starter.client import OpportunitiesClient
from starter.examples import prepare
from store import contacts, processes
from tests.support.worker_process import WorkerProcess, running, worker_env
from worker import SIGNED_STARTS
from workflows.authorization import Authorization
from workflows.continue_as_new import MAX_RUN_EVENTS
from workflows.indexing import INDEX_AT_MOST_EVERY
from workflows.opportunity import OpportunityWorkflow
from workflows.payloads import OneArgument

QUEUE = "bench-capacity"
YEAR_QUEUE = "bench-capacity-year"
PROCESS = "bench"
OTHER_PROCESS = "bench-2"
CONTACT = "c-capacity"
OPEN_STAGES = ("Prospect", "Needs analysis", "Proposal")
ENTRY_ACTIONS = {"Prospect": "intro-call", "Needs analysis": "fact-finder"}
"""The calendar action whose activity entering each stage creates (the example process)."""
FOLLOW_UP_DAYS = 14
IDLE_DAYS = 10
QUARTER_WEEKS = 13
BUSY_WEEKS = 10
DUE_DAYS = 3.0
RELOAD_TRANSACTIONS = 4
"""Transactions of one directory reload (`store.authorization.load_directory`: four reads),
which every worker makes every `OPPORTUNITIES_AUTHZ_RELOAD` seconds; told apart by its scan
of `signing_keys`."""
SECONDS_PER_YEAR = 365.25 * 86400
SPACING = INDEX_AT_MOST_EVERY.total_seconds() + 0.1
"""Seconds between an opportunity's answer and its next command in the year: search
attributes are upserted at most once a (real) second, and commands a compressed day apart
must not wait for a timer that days apart never need."""
DEADLINE = 300.0
"""Seconds an opportunity may take to be quiet once its command is answered."""


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def with_timers(document: dict[str, Any]) -> None:
    """The example process with a follow-up and an idle timer in each open stage."""
    for stage in document["stages"]:
        if not stage.get("closes_as"):
            stage.update(follow_up_after_days=FOLLOW_UP_DAYS, idle_after_days=IDLE_DAYS)


# --- what a history says -------------------------------------------------------------------

E = EventType
CLOSED = {
    E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT, E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED, E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}  # fmt: skip
ONE_ACTION = {
    E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "start",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
    E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity",
    E.EVENT_TYPE_TIMER_STARTED: "timer",
    E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signal out",
    E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED: "options",
}
"""Events that are one Temporal Cloud action each (a continue-as-new is its new run's start)."""
STARTED = E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
LOCAL_ACTIVITY_MARKER = "core_local_activity"
EXEMPT_ATTRIBUTE = "TemporalChangeVersion"


def tally(events: Iterable[HistoryEvent]) -> Counter[str]:
    """Events, bytes, Temporal Cloud actions (by kind), visibility upserts, tasks and timers
    in these events."""
    found: Counter[str] = Counter()
    local_tasks: set[int] = set()
    for event in events:
        kind = event.event_type
        found["events"] += 1
        found["history bytes"] += event.ByteSize()
        if kind in ONE_ACTION:
            found[f"actions: {ONE_ACTION[kind]}"] += 1
        if kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attempt = event.activity_task_started_event_attributes.attempt
            found["actions: activity retry"] += max(0, attempt - 1)
        elif kind == E.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                local_tasks.add(marker.workflow_task_completed_event_id)
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            found["workflow tasks"] += 1
            metering = event.workflow_task_completed_event_attributes.metering_metadata
            found["actions: local activity"] += metering.nonfirst_local_activity_execution_attempts
        elif kind == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            found["actions: child workflow"] += 2
        elif kind == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            found["visibility upserts"] += 1
            fields = event.upsert_workflow_search_attributes_event_attributes
            if set(fields.search_attributes.indexed_fields) != {EXEMPT_ATTRIBUTE}:
                found["actions: search-attribute upsert"] += 1
        elif kind == E.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
            found["visibility upserts"] += 1
        found["visibility upserts"] += kind in CLOSED or kind == STARTED
        found["activity tasks"] += kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        found["timers fired"] += kind == E.EVENT_TYPE_TIMER_FIRED
        found["timers canceled"] += kind == E.EVENT_TYPE_TIMER_CANCELED
        found["continued as new"] += kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        found["failed workflow tasks"] += kind == E.EVENT_TYPE_WORKFLOW_TASK_FAILED
    found["actions: local activity"] += len(local_tasks)
    return with_total(found)


def with_total(found: Counter[str]) -> Counter[str]:
    """`found` with "actions" the sum of its kinds."""
    found["actions"] = sum(v for k, v in found.items() if k.startswith("actions: "))
    return +found  # zero counts dropped


SHORT = {"search-attribute upsert": "upsert", "activity retry": "retry"}


def action_kinds(figures: dict[str, float]) -> str:
    """The actions by kind, as the tables show them: `update 1, activity 1, timer 0.5`."""
    kinds = [(k.removeprefix("actions: "), v) for k, v in figures.items()
             if k.startswith("actions: ") and v]  # fmt: skip
    return ", ".join(f"{SHORT.get(k, k)} {fmt(v)}" for k, v in sorted(kinds, key=lambda kv: -kv[1]))


# --- what the client sends, what PostgreSQL and /proc say ---------------------------------


class Calls(Interceptor):
    """Counts the calls a client makes: queries are Temporal Cloud actions that no history
    shows (the typed client's `create` polls `state` until the opportunity is open)."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Counting(next, self.count)


class _Counting(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, count: Counter[str]) -> None:
        super().__init__(next)
        self.count = count

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        self.count["queries"] += 1
        return await super().query_workflow(input)

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        self.count["signals"] += 1
        await super().signal_workflow(input)

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        self.count["updates"] += 1
        return await super().start_workflow_update(input)

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        self.count["starts"] += 1
        return await super().start_workflow(input)


class Database:
    """The bench's own connection to the service's database. Every statement it sends forces
    its statistics out as it ends (`pg_stat_force_next_flush`), so a snapshot counts exactly
    the bench's statements before it, and they are taken off."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.statements = 0
        self.turn = asyncio.Lock()  # one statement at a time on the connection

    async def row(self, sql: str, *args: Any) -> asyncpg.Record:
        async with self.turn:
            return await self._row(sql, *args)

    async def _row(self, sql: str, *args: Any) -> asyncpg.Record:
        self.statements += 1
        row = await self.conn.fetchrow(sql, *args)
        assert row is not None
        return row

    async def snapshot(self) -> Counter[str]:
        async with self.turn:
            mine = self.statements
            row = await self._row(
                "SELECT pg_stat_force_next_flush() AS flushed,"
                " (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())"
                " AS xacts,"
                " (SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)"
                "  FROM pg_stat_user_tables) AS tuples,"
                " (SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0)"
                "  FROM pg_stat_user_tables WHERE relname = 'signing_keys') AS reloads,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal"
            )
        return Counter(xacts=row["xacts"], tuples=int(row["tuples"]), reloads=int(row["reloads"]),
                       wal=int(row["wal"]), mine=mine)  # fmt: skip

    async def settle(self, seconds: float) -> None:
        """Until every other client backend of the database has been idle for `seconds`:
        a backend that flushed its statistics less than a second ago keeps the rest for
        up to ten seconds (PostgreSQL's idle flush)."""
        deadline = time.monotonic() + 120
        while seconds > 0 and time.monotonic() < deadline:
            row = await self.row(
                "SELECT pg_stat_force_next_flush() AS flushed,"
                " coalesce(bool_or(state <> 'idle'), false) AS busy,"
                " coalesce(min(extract(epoch FROM clock_timestamp() - state_change)), 1e9)"
                " AS quiet FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            if not row["busy"] and row["quiet"] >= seconds:
                return
            await asyncio.sleep(0.2 if row["busy"] else min(1.0, seconds - float(row["quiet"])))

    async def open_follow_ups(self, opportunity_id: str) -> list[str]:
        row = await self.row(
            "SELECT pg_stat_force_next_flush() AS flushed, array(SELECT action_id"
            " FROM calendar_activities WHERE opportunity_id = $1 AND status = 'active'"
            " AND action_id LIKE 'follow-up-%' ORDER BY action_id) AS ids",
            opportunity_id,
        )
        return list(row["ids"])


def database_use(before: Counter[str], after: Counter[str]) -> Counter[str]:
    """PostgreSQL's transactions (less the bench's and the directory reloads), rows written
    and WAL between two snapshots."""
    reloads = after["reloads"] - before["reloads"]
    return Counter({
        "PG transactions": after["xacts"] - before["xacts"] - (after["mine"] - before["mine"])
        - RELOAD_TRANSACTIONS * reloads,
        "PG rows written": after["tuples"] - before["tuples"],
        "PG WAL bytes": after["wal"] - before["wal"],
    })  # fmt: skip


def cpu_use(before: dict[str, float], after: dict[str, float]) -> Counter[str]:
    """CPU ms of the worker (all its threads), the Temporal server and PostgreSQL."""
    used = {name: (after[name] - before[name]) * 1000 for name in after}
    return Counter({
        "worker CPU ms": sum(v for k, v in used.items() if k.startswith("ours worker")),
        "Temporal server CPU ms": used["Temporal server"],
        "PostgreSQL CPU ms": used["PostgreSQL"],
    })  # fmt: skip


# --- the servers, workers and clients of a run ---------------------------------------------


@dataclass
class Bench:
    raw: Client
    """For the bench's own reads (describe, histories): not counted."""
    calls: Calls
    opportunities: OpportunitiesClient
    """The typed client, its calls counted."""
    pool: asyncpg.Pool
    db: Database
    address: str
    url: str
    logs: Path
    settle: float
    server_pid: int
    postmaster: int
    seen: dict[str, int] = field(default_factory=dict)
    """Events of each opportunity's history already counted."""

    def worker(self, name: str, queue: str, cache: int = 5000, **env: str) -> WorkerProcess:
        settings = worker_env(self.address, self.url, queue, cache)
        for name_ in TEST_SETTINGS:  # the service's delivery defaults, as bench.events runs
            settings.pop(name_, None)
        # Each worker makes its version current as it starts (as `make run` does), so that a
        # change to the code between two phases never leaves tasks for a stopped version.
        settings.update(OPPORTUNITIES_AUTHZ_RELOAD="50", OPPORTUNITIES_SET_CURRENT="always", **env)
        return WorkerProcess.opportunities_worker(settings, self.logs / f"{name}.log")

    def cpu(self, worker: WorkerProcess) -> Cpu:
        return Cpu({"ours": worker.pid}, self.server_pid, self.postmaster)

    def client(self, queue: str) -> OpportunitiesClient:
        return OpportunitiesClient(self.opportunities.temporal, queue)


async def quiet(client: Client, workflow_id: str) -> None:
    """Until the workflow has no workflow task, no activity and no short timer pending (the
    one that holds a search-attribute upsert back for `INDEX_AT_MOST_EVERY`), or has ended."""
    handle = client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + DEADLINE
    while True:
        description = await handle.describe()
        raw = description.raw_description
        if description.status != WorkflowExecutionStatus.RUNNING:
            return
        busy = raw.HasField("pending_workflow_task") or bool(raw.pending_activities)
        if not busy and not await short_timer(handle):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{workflow_id} still busy after {DEADLINE:.0f} s")
        await asyncio.sleep(0.05)


async def short_timer(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether a timer of at most `INDEX_AT_MOST_EVERY` is running in the current run."""
    running: dict[int, timedelta] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == E.EVENT_TYPE_TIMER_STARTED:
            timeout = event.timer_started_event_attributes.start_to_fire_timeout
            running[event.event_id] = timeout.ToTimedelta()
        elif event.event_type == E.EVENT_TYPE_TIMER_FIRED:
            running.pop(event.timer_fired_event_attributes.started_event_id, None)
        elif event.event_type == E.EVENT_TYPE_TIMER_CANCELED:
            running.pop(event.timer_canceled_event_attributes.started_event_id, None)
    return any(timeout <= INDEX_AT_MOST_EVERY for timeout in running.values())


async def new_events(bench: Bench, workflow_id: str) -> list[HistoryEvent]:
    """The events of the workflow's current run since the last call."""
    handle = bench.raw.get_workflow_handle(workflow_id)
    events = [event async for event in handle.fetch_history_events()]
    seen = bench.seen.get(workflow_id, 0)
    bench.seen[workflow_id] = len(events)
    return events[seen:]


Send = Callable[[OpportunitiesClient, str, dict[str, Any]], Awaitable[Any]]
"""Send one step's command to one opportunity (with what earlier steps noted of it)."""


async def measure(
    bench: Bench, cpu: Cpu, label: str, ids: Sequence[str], send: Send,
    notes: dict[str, dict[str, Any]],
) -> dict[str, float]:  # fmt: skip
    """One step for every opportunity at once: what it added, per opportunity."""
    calls = Counter(bench.calls.count)
    pg_before = await bench.db.snapshot()
    cpu_before = cpu.read()
    await asyncio.gather(*(send(bench.opportunities, i, notes.setdefault(i, {})) for i in ids))
    await asyncio.gather(*(quiet(bench.raw, opportunity_workflow_id(i)) for i in ids))
    used = cpu_use(cpu_before, cpu.read())
    found: Counter[str] = Counter()
    for events in await asyncio.gather(*(new_events(bench, opportunity_workflow_id(i))
                                         for i in ids)):  # fmt: skip
        found.update(tally(events))
    found["actions: query"] = bench.calls.count["queries"] - calls["queries"]
    await bench.db.settle(bench.settle)
    found.update(database_use(pg_before, await bench.db.snapshot()))
    found.update(used)
    per = {name: value / len(ids) for name, value in with_total(found).items()}
    progress(f"  {label}: {fmt(per['events'])} events, {fmt(per['actions'])} actions, "
             f"{fmt(per.get('PG transactions', 0))} PG transactions per opportunity")  # fmt: skip
    return per


# --- 1. per command ------------------------------------------------------------------------


def _activity(result: CommandResult) -> str:
    for action in result.actions:
        if action.activity_id:
            return action.activity_id
    raise AssertionError(f"no activity in {result}")


async def _opened(client: OpportunitiesClient, i: str, note: dict[str, Any]) -> None:
    await client.create(CONTACT, opportunity_id=i, process_id=PROCESS, owner="o0",
                        wait_seconds=DEADLINE)  # fmt: skip


async def _performed(client: OpportunitiesClient, i: str, note: dict[str, Any]) -> None:
    note["activity"] = _activity(await client.perform_actions(i, ["check-in"]))


CHECK_IN = {"action_id": "check-in", "type": "calendar", "title": "Check-in call",
            "activity": {"kind": "call", "duration_minutes": 15, "due_in_days": 3}}  # fmt: skip
STEPS: list[tuple[str, str, Send]] = [
    ("update_details", "update_details", lambda c, i, n: c.update_details(
        i, amount="12000.00", expected_close_date=date(2030, 6, 30))),
    ("add_remark", "add_remark", lambda c, i, n: c.add_remark(i, "prefers calls after six")),
    ("change_owner", "change_owner", lambda c, i, n: c.change_owner(i, "o1")),
    ("change_owner (signal)", "change_owner", lambda c, i, n: c.signal(
        i, ChangeOwner(owner="o2", request_id=f"{i}-signal"))),
    ("assign", "assign", lambda c, i, n: c.assign(i, "agent", "o3")),
    ("add_action", "add_action", lambda c, i, n: c.add_action(i, "Prospect", CHECK_IN)),
    ("modify_action", "modify_action", lambda c, i, n: c.modify_action(
        i, "check-in", {"title": "Check-in call (moved)"})),
    ("perform_actions (calendar)", "perform_actions", _performed),
    ("modify_activity", "modify_activity", lambda c, i, n: c.modify_activity(
        i, n["activity"], location="Her office")),
    ("delete_activity", "delete_activity", lambda c, i, n: c.delete_activity(
        i, n["activity"])),
    ("delete_action", "delete_action", lambda c, i, n: c.delete_action(i, "check-in")),
    ("perform_actions (letter)", "perform_actions", lambda c, i, n: c.perform_actions(
        i, ["welcome-letter"])),
    ("record_outcome", "record_outcome", lambda c, i, n: c.record_outcome(
        i, f"{i}/intro-call/1", outcome="Interested")),
    ("complete_actions (the stage's last: it moves on)", "complete_actions",
     lambda c, i, n: c.complete_actions(i, ["seminar"])),
    ("change_stage", "change_stage", lambda c, i, n: c.change_stage(i, "Proposal")),
    ("record_external_status", "record_external_status",
     lambda c, i, n: c.record_external_status(i, "policy", f"P-{i}", "in underwriting")),
    ("move_process", "move_process", lambda c, i, n: c.move_process(
        i, OTHER_PROCESS, "Proposal")),
    ("closing (change_stage to Closed won)", "change_stage", lambda c, i, n: c.change_stage(
        i, "Closed won")),
]  # fmt: skip
"""Each command of the registry, in an order in which each applies (label, command, send)."""
DELETING = ("delete_opportunity (closing)", "delete_opportunity",
            lambda c, i, n: c.delete_opportunity(i, "duplicate"))  # fmt: skip
assert {name for _, name, _ in [*STEPS, DELETING]} == set(REGISTRY), "a command is not measured"


async def per_command(bench: Bench, n: int) -> dict[str, dict[str, float]]:
    """Every step of `STEPS` for N opportunities, and deleting N more."""
    main = [f"cap-{i:04d}" for i in range(n)]
    deleted = [f"del-{i:04d}" for i in range(n)]
    warm = [f"warm-{i:04d}" for i in range(n)]
    worker = bench.worker("per-command", QUEUE)
    notes: dict[str, dict[str, Any]] = {}
    await bench.pool.execute("ALTER SYSTEM SET autovacuum = off")  # its transactions are
    await bench.pool.execute("SELECT pg_reload_conf()")  # not a command's
    results: dict[str, dict[str, float]] = {}
    async with running(worker):
        cpu = bench.cpu(worker)
        progress(f"per command: {n} opportunities, worker pid {worker.pid}")
        # Warm-up, not counted: first loads, and the worker's pool grown to what N at once need.
        await measure(bench, cpu, "warm-up", warm, _opened, notes)
        await measure(bench, cpu, "warm-up", warm, STEPS[0][2], notes)
        results["opening"] = await measure(bench, cpu, "opening", main + deleted, _opened, notes)
        for label, _, send in STEPS:
            results[label] = await measure(bench, cpu, label, main, send, notes)
        results[DELETING[0]] = await measure(bench, cpu, DELETING[0], deleted, DELETING[2], notes)
    await bench.pool.execute("ALTER SYSTEM RESET autovacuum")
    await bench.pool.execute("SELECT pg_reload_conf()")
    return results


# --- 2. an opportunity-year ----------------------------------------------------------------


@dataclass
class Yearling:
    """One opportunity of the year and what the bench knows of it from its results."""

    opportunity_id: str
    client: OpportunitiesClient
    db: Database
    day_seconds: float
    started: float
    """When its day 0 began (time.time())."""
    stage: str = "Prospect"
    calls: dict[int, tuple[str, datetime]] = field(default_factory=dict)
    """Each week's call: its activity and when it is due."""
    entries: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Open activities created on entering a stage: action, activity and the day created."""
    created: set[str] = field(default_factory=set)
    """Actions whose activity was created (entering their stage creates none again)."""
    sent: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    touches: list[float] = field(default_factory=list)
    """When the mix sends each command (time.time() of its day; sent up to `SPACING` later)."""

    def day(self) -> float:
        return (time.time() - self.started) / self.day_seconds

    def due(self, days: float) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=days * self.day_seconds)

    def noted(self, result: CommandResult) -> CommandResult:
        self.stage = result.current_stage
        for activity_id in result.created_activities:
            action = activity_id.split("/")[-2]
            self.created.add(action)
            if not action.startswith("call-"):
                self.entries[action] = (activity_id, self.day())
        return result


Rule = tuple[str, str, int, Callable[[int, int], bool], Callable[[int], float],
             Callable[[Yearling, int], Awaitable[int]]]  # fmt: skip
"""A line of the mix: the command as the tables name it, when (as the docstring's table
says), how many a year, in which weeks (week of the quarter, week of the year), on which
day of the week, and what it sends (the number of commands sent)."""


def _busy(w: int, week: int) -> bool:
    return w < BUSY_WEEKS


async def _owner(y: Yearling, week: int) -> int:
    y.noted(await y.client.change_owner(y.opportunity_id, f"o{week // QUARTER_WEEKS + 1}"))
    return 1


async def _follow_ups(y: Yearling, week: int) -> int:
    ids = await y.db.open_follow_ups(y.opportunity_id)
    if ids:
        y.noted(await y.client.complete_actions(y.opportunity_id, ids))
    return 1 if ids else 0


async def _schedule_intro(y: Yearling, week: int) -> int:
    intro = y.entries.get("intro-call")
    if intro is None:
        return 0
    y.noted(await y.client.modify_activity(y.opportunity_id, intro[0], due=y.due(2.0)))
    return 1


async def _add_call(y: Yearling, week: int) -> int:
    action = {
        "action_id": f"call-{week}",
        "type": "calendar",
        "title": f"Call, week {week}",
        "activity": {"kind": "call", "duration_minutes": 30, "track_outcome": True},
    }
    y.noted(await y.client.add_action(y.opportunity_id, y.stage, action))
    return 1


async def _perform_call(y: Yearling, week: int) -> int:
    due = y.due(DUE_DAYS)
    action = f"call-{week}"
    result = await y.client.perform_actions(
        y.opportunity_id, [action], overrides={action: ActionOverrides(due=due)}
    )
    y.calls[week] = (_activity(y.noted(result)), due)
    return 1


async def _remark(y: Yearling, week: int) -> int:
    y.noted(await y.client.add_remark(y.opportunity_id, f"week {week}: spoke with the client"))
    return 1


async def _reschedule(y: Yearling, week: int) -> int:
    if week not in y.calls:
        return 0
    activity, due = y.calls[week]
    due += timedelta(seconds=0.5 * y.day_seconds)
    y.noted(await y.client.modify_activity(y.opportunity_id, activity, due=due))
    y.calls[week] = (activity, due)
    return 1


async def _log_call(y: Yearling, week: int) -> int:
    if week not in y.calls:
        return 0
    activity, _ = y.calls.pop(week)
    y.noted(await y.client.record_outcome(y.opportunity_id, activity, outcome="Interested"))
    return 1


async def _log_entries(y: Yearling, week: int) -> int:
    sent = 0
    for action, (activity, created) in list(y.entries.items()):
        if y.day() - created >= 2.0:
            del y.entries[action]
            y.noted(await y.client.record_outcome(y.opportunity_id, activity, outcome="Done"))
            sent += 1
    return sent


async def _details(y: Yearling, week: int) -> int:
    closing = date(2030, 1, 1) + timedelta(days=7 * week)
    y.noted(await y.client.update_details(y.opportunity_id, amount=str(10000 + 250 * week),
                                          expected_close_date=closing))  # fmt: skip
    return 1


async def _add_letter(y: Yearling, week: int) -> int:
    action = {"action_id": f"letter-{week}", "type": "letter", "title": f"Letter, week {week}",
              "template": "welcome"}  # fmt: skip
    y.noted(await y.client.add_action(y.opportunity_id, y.stage, action))
    return 1


async def _letter(y: Yearling, week: int) -> int:
    y.noted(await y.client.perform_actions(y.opportunity_id, [f"letter-{week}"]))
    return 1


async def _move(y: Yearling, week: int) -> int:
    target = OPEN_STAGES[(OPEN_STAGES.index(y.stage) + 1) % len(OPEN_STAGES)]
    entry = ENTRY_ACTIONS.get(target)
    overrides = {} if entry is None or entry in y.created else {
        entry: ActivityDetails(due=y.due(DUE_DAYS))}  # fmt: skip
    y.noted(await y.client.change_stage(y.opportunity_id, target, overrides=overrides))
    return 1


MIX: list[Rule] = [
    ("change_owner", "week 0, day 0", 4, lambda w, week: w == 0, lambda week: 0.05, _owner),
    ("complete_actions (the open follow-up)",
     "week 0 (not the first), day 0, if one is open", 3,
     lambda w, week: w == 0 and week > 0, lambda week: 0.1, _follow_ups),
    ("modify_activity (schedule the introductory call)", "first week, day 0", 1,
     lambda w, week: week == 0, lambda week: 0.15, _schedule_intro),
    ("add_action (a call)", "busy weeks, day 0", 40, _busy, lambda week: 0.2, _add_call),
    ("perform_actions (calendar)", "busy weeks, day 0, the call just added", 40, _busy,
     lambda week: 0.3, _perform_call),
    ("add_remark", "busy weeks, day 1", 40, _busy, lambda week: 1.0, _remark),
    ("modify_activity (reschedule the call)", "weeks 1, 5 and 9, day 1", 12,
     lambda w, week: w in (1, 5, 9), lambda week: 1.5, _reschedule),
    ("record_outcome (the call)",
     "busy weeks, day 2, or day 4 in odd weeks (after its notices)", 40,
     _busy, lambda week: 2.0 if week % 2 == 0 else 4.0, _log_call),
    ("record_outcome (an entry activity)", "busy weeks, day 2, those open 2 days or more", 2,
     _busy, lambda week: 2.5, _log_entries),
    ("update_details", "weeks 0, 2, 4, 6 and 8, day 3", 20,
     lambda w, week: _busy(w, week) and w % 2 == 0, lambda week: 3.0, _details),
    ("add_action (a letter)", "weeks 2 and 6, day 4", 8, lambda w, week: w in (2, 6),
     lambda week: 4.4, _add_letter),
    ("perform_actions (letter)", "weeks 2 and 6, day 4, the letter just added", 8,
     lambda w, week: w in (2, 6), lambda week: 4.5, _letter),
    ("change_stage", "weeks 2, 5 and 8, day 5, to the next open stage", 12,
     lambda w, week: w in (2, 5, 8), lambda week: 5.0, _move),
]  # fmt: skip
"""The year's mix: the docstring's table."""


def mix_table() -> list[str]:
    """The mix as the docstring's table (its lines)."""
    lines = ["| command | when (week of the quarter, day of the week) | per year |",
             "| --- | --- | --- |"]  # fmt: skip
    return lines + [f"| {label} | {when} | {per_year} |" for label, when, per_year, *_ in MIX]


def schedule(weeks: int) -> list[tuple[float, Rule, int]]:
    """Every command of `weeks` weeks: (day, rule, week of the year), in time order."""
    steps = []
    for week in range(weeks):
        for rule in MIX:
            applies, day = rule[3], rule[4]
            if applies(week % QUARTER_WEEKS, week):
                steps.append((7 * week + day(week), rule, week))
    return sorted(steps, key=lambda step: step[0])


async def live_a_year(y: Yearling, weeks: int) -> None:
    """Open the opportunity on its day 0, send it the mix, and wait until its year is over."""
    await asyncio.sleep(max(0.0, y.started - time.time()))
    state = await y.client.create(CONTACT, opportunity_id=y.opportunity_id, process_id=PROCESS,
                                  owner="o0", wait_seconds=DEADLINE)  # fmt: skip
    for action in state.stage_state(state.current_stage).actions:
        if action.activity_id:
            y.created.add(action.action_id)
            y.entries[action.action_id] = (action.activity_id, 0.0)
    answered = time.time()
    for at, (label, _, _, _, _, send), week in schedule(weeks):
        planned = y.started + at * y.day_seconds
        await asyncio.sleep(max(0.0, max(planned, answered + SPACING) - time.time()))
        try:
            sent = await send(y, week)
        except CommandRejected as rejected:
            y.rejected[label] += 1
            progress(f"  {y.opportunity_id}: {label} rejected: {rejected}")
            continue
        y.sent[label] += sent
        if sent:
            y.touches.append(planned)
            answered = time.time()
    await asyncio.sleep(max(0.0, y.started + 7 * weeks * y.day_seconds - time.time()))


async def a_year(bench: Bench, k: int, weeks: int, day_seconds: int) -> dict[str, Any]:
    """K opportunities, each a year of the mix (their days 0 spread over one day)."""
    worker = bench.worker("year", YEAR_QUEUE, OPPORTUNITIES_DAY_SECONDS=str(day_seconds))
    client = bench.client(YEAR_QUEUE)
    async with running(worker):
        cpu = bench.cpu(worker)
        begin = time.time() + 2.0
        yearlings = [
            Yearling(f"year-{i:03d}", client, bench.db, day_seconds, begin + day_seconds * i / k)
            for i in range(k)
        ]
        progress(f"a year: {k} opportunities, {weeks} weeks of {7 * day_seconds} s, "
                 f"worker pid {worker.pid}")  # fmt: skip
        pg_before = await bench.db.snapshot()
        cpu_before = cpu.read()
        calls = Counter(bench.calls.count)
        await asyncio.gather(*(live_a_year(y, weeks) for y in yearlings))
        ids = [opportunity_workflow_id(y.opportunity_id) for y in yearlings]
        await asyncio.gather(*(quiet(bench.raw, i) for i in ids))
        used = cpu_use(cpu_before, cpu.read())
        await bench.db.settle(bench.settle)
        pg = database_use(pg_before, await bench.db.snapshot())
    found: Counter[str] = Counter()
    gaps: list[float] = []
    for y, workflow_id in zip(yearlings, ids, strict=True):
        events = await all_events(bench.raw, workflow_id)
        found.update(tally(events))
        fired = [e.event_time.ToDatetime(UTC).timestamp() for e in events
                 if e.event_type == E.EVENT_TYPE_TIMER_FIRED]  # fmt: skip
        touches = sorted(y.touches + fired)
        gaps += [(b - a) / day_seconds for a, b in itertools.pairwise(touches)]
    found["actions: query"] = bench.calls.count["queries"] - calls["queries"]
    found.update(pg)
    found.update(used)
    found["commands"] = sum(sum(y.sent.values()) for y in yearlings)
    found["rejected commands"] = sum(sum(y.rejected.values()) for y in yearlings)
    kept = await rows_kept(bench.pool, [y.opportunity_id for y in yearlings])
    found["read-model bytes kept"] = sum(b for t, (_, b) in kept.items() if t != OUTBOX)
    found["outbox bytes"] = sum(b for t, (_, b) in kept.items() if t == OUTBOX)
    scale = 52 / weeks / k  # per opportunity-year
    sent: Counter[str] = Counter()
    for y in yearlings:
        sent.update(y.sent)
    return {
        "per_year": {name: value * scale for name, value in with_total(found).items()},
        "mix": {label: sent[label] * scale for label, *_ in MIX},
        "rows_kept": {table: rows * scale for table, (rows, _) in kept.items()},
        "gaps_days": sorted(round(g, 4) for g in gaps),
        "opportunities": k, "weeks": weeks, "day_seconds": day_seconds,
    }  # fmt: skip


OUTBOX = "opportunity_events"
"""The outbox: its events are deleted 30 days on (`OPPORTUNITIES_EVENT_RETENTION_DAYS`)."""
INDEX_ENTRY_BYTES = 40
ROW_OVERHEAD_BYTES = 28
"""A heap row's header and line pointer."""


async def rows_kept(pool: asyncpg.Pool, opportunity_ids: list[str]) -> dict[str, list[int]]:
    """Rows of these opportunities in each read-model table (those with an opportunity id),
    and their bytes: each row as stored (`pg_column_size`) with its header and line pointer,
    and `INDEX_ENTRY_BYTES` per index of its table."""
    tables = await pool.fetch(
        "SELECT c.table_name, (SELECT count(*) FROM pg_index i"
        "  WHERE i.indrelid = format('%I', c.table_name)::regclass) AS indexes"
        " FROM information_schema.columns c WHERE c.table_schema = 'public'"
        " AND c.column_name = 'opportunity_id' ORDER BY c.table_name"
    )
    kept = {}
    for table in tables:
        row = await pool.fetchrow(
            f"SELECT count(*) AS rows, coalesce(sum(pg_column_size(t.*)), 0) AS bytes"
            f' FROM "{table["table_name"]}" t WHERE opportunity_id = ANY($1)',
            opportunity_ids,
        )
        assert row is not None
        if row["rows"]:
            overhead = ROW_OVERHEAD_BYTES + INDEX_ENTRY_BYTES * table["indexes"]
            kept[table["table_name"]] = [row["rows"], int(row["bytes"]) + overhead * row["rows"]]
    return kept


# --- 3. replay -----------------------------------------------------------------------------


async def long_run(client: OpportunitiesClient, opportunity_id: str, limit: int) -> str:
    """An opportunity started to continue as new at `limit` events, sent updates (a remark,
    an owner, its details, a stage in turn) until it has: its first run's id."""
    handle = await client.temporal.start_workflow(
        "Opportunity",
        {"opportunity_id": opportunity_id, "contact_id": CONTACT, "process_id": PROCESS,
         "owner": "o0", "continue_as_new_after_events": limit},
        id=opportunity_workflow_id(opportunity_id),
        task_queue=client.task_queue,
    )  # fmt: skip
    first = handle.result_run_id
    assert first is not None
    deadline = time.monotonic() + DEADLINE
    stage, n = "Prospect", 0
    while (await client.handle(opportunity_id).describe()).run_id == first:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{opportunity_id} did not reach {limit} events")
        for _ in range(5):
            n += 1
            if n % 4 == 0:
                await client.add_remark(opportunity_id, f"remark {n}")
            elif n % 4 == 1:
                await client.change_owner(opportunity_id, f"o{n % 50}")
            elif n % 4 == 2:
                await client.update_details(opportunity_id, probability=n * 7 % 100)
            else:
                stage = OPEN_STAGES[(OPEN_STAGES.index(stage) + 1) % len(OPEN_STAGES)]
                stage = (await client.change_stage(opportunity_id, stage)).current_stage
    return first


async def replay_times(histories: list[WorkflowHistory], repeat: int) -> list[list[float]]:
    """Seconds `Replayer` takes over each history, `repeat` times each (one replay worker)."""
    replayer = Replayer(
        workflows=[OpportunityWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),
        interceptors=[OneArgument(COMMANDS), Authorization(COMMANDS, SIGNED_STARTS)],
    )
    queue: asyncio.Queue[WorkflowHistory | None] = asyncio.Queue()

    async def fed() -> AsyncIterator[WorkflowHistory]:
        while (history := await queue.get()) is not None:
            yield history

    times: list[list[float]] = [[] for _ in histories]
    async with replayer.workflow_replay_iterator(fed()) as results:
        replayed = aiter(results)
        for _ in range(repeat):
            for n, history in enumerate(histories):
                started = time.perf_counter()
                await queue.put(history)
                result = await anext(replayed)
                times[n].append(time.perf_counter() - started)
                if result.replay_failure is not None:
                    raise result.replay_failure
        await queue.put(None)
        async for _ in replayed:
            pass
    return times


async def replay(
    bench: Bench, lengths: list[int], runs: int, repeat: int
) -> dict[str, dict[str, float]]:
    """Runs of each length, replayed by `Replayer` and queried on a worker without a cache."""
    client = bench.client(QUEUE)
    builder = bench.worker("replay-build", QUEUE)
    ids = {length: [f"replay-{length}-{r}" for r in range(runs)] for length in lengths}
    async with running(builder):
        progress(f"replay: building {runs} run(s) of {lengths} events")
        firsts = dict(zip(
            [i for length in lengths for i in ids[length]],
            await asyncio.gather(*(long_run(client, i, length)
                                   for length in lengths for i in ids[length])),
            strict=True,
        ))  # fmt: skip
    histories = {
        i: await bench.raw.get_workflow_handle(
            opportunity_workflow_id(i), run_id=run
        ).fetch_history()
        for i, run in firsts.items()
    }
    progress("replay: Replayer")
    order = list(histories)
    timed = dict(zip(order, await replay_times([histories[i] for i in order], repeat),
                     strict=True))  # fmt: skip
    uncached = bench.worker("replay-uncached", QUEUE, cache=0)
    queried: dict[str, list[float]] = {i: [] for i in order}
    async with running(uncached):
        progress(f"replay: queries to a worker without a cache (pid {uncached.pid})")
        for _ in range(repeat):
            for i in order:
                handle = bench.raw.get_workflow_handle(opportunity_workflow_id(i), run_id=firsts[i])
                started = time.perf_counter()
                await handle.query("state")
                queried[i].append(time.perf_counter() - started)
    results = {}
    for length in lengths:
        events = [len(histories[i].events) for i in ids[length]]
        results[str(length)] = {
            "events": statistics.median(events),
            "runs": len(events),
            "replayer p50 ms": 1000 * statistics.median(t for i in ids[length] for t in timed[i]),
            "query p50 ms": 1000 * statistics.median(t for i in ids[length] for t in queried[i]),
        }
    return results


# --- the capacity model --------------------------------------------------------------------


@dataclass(frozen=True)
class Assumptions:
    """What the model takes beyond the measured figures."""

    lifetime_weeks: float = 26.0
    """An opportunity is open for half a year: each open opportunity's place sees 2 openings
    and 2 closings a year."""
    peak: float = 10.0
    """The peak rate over the average."""
    retention_days: float = 30.0
    """Closed runs' histories and visibility rows kept this long (Temporal Cloud's default)."""
    aps_limit: float = 500.0
    """Temporal Cloud's default actions per second per namespace
    (https://docs.temporal.io/cloud/limits)."""
    visibility_row_bytes: float = 1024.0
    """One run's visibility row, its search attributes and summary included."""
    cached_kib: float = 114.8
    """Worker memory per cached opportunity (`bench.memory`, bench/README.md)."""
    worker_rate: float = 31.2
    """Commands per second one worker process takes: `bench.fleet`'s ours side in its
    owner-only run (`--mix owner`), on 2 cores it shared with the Temporal server and
    PostgreSQL, as docs/operate.md plans (about 30); the mixed run took 66.4 (bench/README.md),
    and a worker with a core of its own takes more."""
    worker_cache_gib: float = 4.0
    """Memory per worker process for its cache of opportunities."""
    run_limit: float = MAX_RUN_EVENTS
    """The history length at which a run continues as new (`workflows/continue_as_new.py`)."""


SCENARIOS = [(n, c) for n in (10_000, 100_000, 1_000_000) for c in (1, 10)]
"""Open opportunities and commands per opportunity per week."""


def hit_rate(gaps: Sequence[float], cached: float) -> float:
    """The share of touches that find their opportunity in an LRU cache holding `cached`
    (a share of every open opportunity), with the gaps between an opportunity's touches
    distributed as measured: the cache holds those touched within the last T (its
    characteristic time), so `cached` = E[min(gap, T)] / E[gap], and a touch hits when its
    gap is at most T. The same at any rate: gaps and T scale alike."""
    if cached >= 1:
        return 1.0
    if not gaps:
        return cached
    mean = sum(gaps) / len(gaps)
    low, high = 0.0, max(gaps)
    for _ in range(60):
        middle = (low + high) / 2
        if sum(min(g, middle) for g in gaps) / len(gaps) / mean < cached:
            low = middle
        else:
            high = middle
    return bisect.bisect_right(sorted(gaps), high) / len(gaps)


def replay_seconds(replays: dict[str, dict[str, float]], events: float) -> float:
    """The query to an uncached run of `events` events, interpolated between the measured
    lengths (in proportion below the shortest, along the last two beyond the longest)."""
    points = sorted((p["events"], p["query p50 ms"] / 1000) for p in replays.values())
    if not points:
        return 0.0
    if len(points) == 1 or events <= points[0][0]:
        return points[0][1] * events / points[0][0]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if events <= x1 or (x1, y1) == points[-1]:
            return y0 + (y1 - y0) * (events - x0) / (x1 - x0)
    raise AssertionError("unreachable")


def capacity(figures: dict[str, Any], a: Assumptions) -> tuple[list[str], list[list[str]]]:
    """The model's table: a column per scenario, a row per figure.

    Per open opportunity and year at c commands a week, a figure X is
    (X_year - X_opening) * c / R + (X_opening + X_closing) * 52 / lifetime, where X_year is
    the measured opportunity-year (R commands a week, its opening included) and X_opening,
    X_closing the per-command table's. Rates are N * X / year, peaks `peak` times that."""
    year, steps = figures["year"]["per_year"], figures["per_command"]
    opening, closing = steps["opening"], steps["closing (change_stage to Closed won)"]
    rate = year["commands"] / 52
    turnover = 52 / a.lifetime_weeks
    gaps = figures["year"]["gaps_days"]
    per_cache = math.floor(a.worker_cache_gib * 2**30 / (a.cached_kib * 1024))
    header = [f"{human(n)} open, {c}/week" for n, c in SCENARIOS]
    rows: dict[str, list[str]] = {}

    def put(name: str, value: str) -> None:
        rows.setdefault(name, []).append(value)

    for n, c in SCENARIOS:

        def x(name: str, n: int = n, c: int = c) -> float:
            opened = opening.get(name, 0.0)
            return ((year.get(name, 0.0) - opened) * c / rate
                    + (opened + closing.get(name, 0.0)) * turnover)  # fmt: skip

        def per_second(name: str, n: int = n) -> float:
            return n * x(name) / SECONDS_PER_YEAR

        commands = per_second("commands")
        put("commands/s (average / peak)", f"{fmt(commands, 2)} / {fmt(commands * a.peak, 1)}")
        put("Temporal actions per month", human(n * x("actions") / 12))
        aps = per_second("actions")
        put("actions/s (average / peak)", f"{fmt(aps, 1)} / {fmt(aps * a.peak, 0)}")
        put(f"peak / {fmt(a.aps_limit, 0)} APS (Temporal Cloud default)",
            f"{aps * a.peak / a.aps_limit:.0%}")  # fmt: skip
        events = per_second("events")
        put("history events/s (average / peak)", f"{fmt(events, 1)} / {fmt(events * a.peak, 0)}")
        put("history written per month", human_bytes(n * x("history bytes") / 12))
        life_events = x("events") / turnover
        run_events = min(life_events, a.run_limit) / 2  # a current run's length, on average
        per_event = year["history bytes"] / year["events"]
        put("history of the open runs (active storage)", human_bytes(n * run_events * per_event))
        put(f"history of closed runs kept {fmt(a.retention_days, 0)} days (retained storage)",
            human_bytes(n * x("history bytes") * a.retention_days / 365.25))  # fmt: skip
        put("continue-as-new runs per opportunity-year", fmt(x("events") / a.run_limit, 2))
        visibility = per_second("visibility upserts")
        put("visibility upserts/s (average / peak)",
            f"{fmt(visibility, 1)} / {fmt(visibility * a.peak, 0)}")  # fmt: skip
        closed_runs = n * (turnover + x("events") / a.run_limit) * a.retention_days / 365.25
        put(
            "visibility rows (open runs + closed runs kept) and storage",
            f"{human(n + closed_runs)}, {human_bytes((n + closed_runs) * a.visibility_row_bytes)}",
        )
        tps = per_second("PG transactions")
        put("PostgreSQL transactions/s (average / peak)", f"{fmt(tps, 1)} / {fmt(tps * a.peak, 0)}")
        put("PostgreSQL rows written/s (average / peak)",
            f"{fmt(per_second('PG rows written'), 1)} / "
            f"{fmt(per_second('PG rows written') * a.peak, 0)}")  # fmt: skip
        put(
            "PostgreSQL: growth per year (rows kept) + the outbox's 30 days",
            f"{human_bytes(n * x('read-model bytes kept'))} + "
            f"{human_bytes(n * x('outbox bytes') * 30 / 365.25)}",
        )
        put("PostgreSQL CPU at peak (cores)",
            fmt(per_second("PostgreSQL CPU ms") / 1000 * a.peak, 2))  # fmt: skip
        put("Temporal server CPU at peak (cores; dev server, SQLite)",
            fmt(per_second("Temporal server CPU ms") / 1000 * a.peak, 2))  # fmt: skip
        put("worker CPU at peak (cores, measured per command)",
            fmt(per_second("worker CPU ms") / 1000 * a.peak, 2))  # fmt: skip
        tasks = commands + per_second("timers fired") + 2 * n * turnover / SECONDS_PER_YEAR
        replay = replay_seconds(figures["replay"], run_events)
        workers, cache, hit = sized(tasks * a.peak, n, per_cache, gaps, replay, a.worker_rate)
        put("worker tasks/s at peak (commands, timers fired, openings, closings)",
            fmt(tasks * a.peak, 1))  # fmt: skip
        put(f"workers ({fmt(a.worker_rate, 0)} tasks/s each, less replays on misses)", str(workers))
        put(f"cache per worker (max {human(per_cache)} in {fmt(a.worker_cache_gib, 0)} GiB)",
            human(cache))  # fmt: skip
        put("cache hit rate (touches finding their opportunity cached)", f"{hit:.1%}")
        put("replay on a miss (the average open run)",
            f"{fmt(replay * 1000, 0)} ms ({human(run_events)} events)")  # fmt: skip
        put("workers to cache every open opportunity", str(math.ceil(n / per_cache)))
    return header, [[name, *values] for name, values in rows.items()]


def sized(
    peak_tasks: float, n: int, per_cache: int, gaps: Sequence[float], replay: float, rate: float
) -> tuple[int, int, float]:
    """The fewest workers that take the peak once the replays of cache misses are paid for:
    (workers, cache per worker, hit rate)."""
    workers = max(1, math.ceil(peak_tasks / rate))
    while True:
        cache = min(per_cache, math.ceil(n / workers))
        hit = hit_rate(gaps, workers * cache / n)
        if workers * cache >= n or workers / (1 / rate + (1 - hit) * replay) >= peak_tasks:
            return workers, cache, hit
        workers += 1


# --- output ----------------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    text = f"{value:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def human(value: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{fmt(value / size, 1)}{unit}"
    return fmt(value, 0)


def human_bytes(value: float) -> str:
    for size, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if value >= size:
            return f"{fmt(value / size, 1)} {unit}"
    return f"{fmt(value, 0)} B"


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    return [f"| {' | '.join(header)} |", f"|{' --- |' * len(header)}",
            *(f"| {' | '.join(row)} |" for row in rows)]  # fmt: skip


COLUMNS = ["events", "history bytes", "actions", "visibility upserts", "PG transactions",
           "PG rows written", "worker CPU ms", "Temporal server CPU ms",
           "PostgreSQL CPU ms"]  # fmt: skip


def weighted(figures: dict[str, Any]) -> dict[str, float]:
    """The per-command table averaged with the year's mix as weights (each mix line taken
    as the step of its command)."""
    steps, mix = figures["per_command"], figures["year"]["mix"]
    first_step = {name: label for label, name, _ in reversed(STEPS)}
    total: Counter[str] = Counter()
    for label, count in mix.items():
        step = label if label in steps else first_step[label.split(" (")[0]]
        for name in COLUMNS:
            total[name] += steps[step].get(name, 0.0) * count
    commands = sum(mix.values())
    return {name: value / commands for name, value in total.items()}


def report(figures: dict[str, Any], a: Assumptions) -> list[str]:
    """Every table of a run, as Markdown lines."""
    s = figures["settings"]
    lines = [f"Per command: {s['per_command']} opportunities each; the year: "
             f"{s['year_opportunities']} opportunities, {s['weeks']} weeks, a day of "
             f"{s['day_seconds']} s; replay: {s['replay_runs']} run(s) per length, "
             f"{s['replays']} times each.", ""]  # fmt: skip
    rows = []
    for label, per in figures["per_command"].items():
        rows.append([label, fmt(per.get("events", 0)), fmt(per.get("history bytes", 0), 0),
                     fmt(per.get("actions", 0)), action_kinds(per),
                     fmt(per.get("visibility upserts", 0)), fmt(per.get("PG transactions", 0)),
                     fmt(per.get("PG rows written", 0)), fmt(per.get("worker CPU ms", 0)),
                     fmt(per.get("Temporal server CPU ms", 0)),
                     fmt(per.get("PostgreSQL CPU ms", 0))])  # fmt: skip
    lines += markdown(["per opportunity", "events", "history bytes", "Temporal actions",
                       "of which", "visibility upserts", "PG transactions", "PG rows written",
                       "worker CPU ms", "server CPU ms", "PG CPU ms"], rows)  # fmt: skip
    year = figures["year"]
    y = year["per_year"]
    lines += ["", "The mix (per opportunity; sent: as measured, per opportunity-year):", ""]
    planned = {label: per_year for label, _, per_year, *_ in MIX}
    lines += markdown(["command", "planned per year", "sent per opportunity-year"],
                      [[label, str(planned.get(label, "")), fmt(count)]
                       for label, count in year["mix"].items()])  # fmt: skip
    mixed = weighted(figures)
    less_opening = {name: (y.get(name, 0.0) - figures["per_command"]["opening"].get(name, 0.0))
                    / y["commands"] for name in COLUMNS}  # fmt: skip
    lines += ["", "One opportunity-year (its opening included, not its closing):", ""]
    year_rows = [
        ["commands sent (per week)", f"{fmt(y['commands'])} ({fmt(y['commands'] / 52, 2)})"],
        ["history events / bytes", f"{fmt(y['events'], 0)} / {human_bytes(y['history bytes'])}"],
        ["Temporal actions", f"{fmt(y['actions'], 0)} ({action_kinds(y)})"],
        ["visibility upserts", fmt(y.get("visibility upserts", 0), 0)],
        ["timers started / fired / canceled",
         f"{fmt(y.get('actions: timer', 0), 0)} / {fmt(y.get('timers fired', 0), 0)} / "
         f"{fmt(y.get('timers canceled', 0), 0)}"],
        ["workflow tasks / activity tasks",
         f"{fmt(y.get('workflow tasks', 0), 0)} / {fmt(y.get('activity tasks', 0), 0)}"],
        ["continue-as-new runs", fmt(y.get("continued as new", 0), 2)],
        ["PostgreSQL transactions / rows written / WAL",
         f"{fmt(y.get('PG transactions', 0), 0)} / {fmt(y.get('PG rows written', 0), 0)} / "
         f"{human_bytes(y.get('PG WAL bytes', 0))}"],
        ["read-model rows kept", ", ".join(f"{t} {fmt(v, 0)}"
                                           for t, v in year["rows_kept"].items())],
        ["read-model bytes kept (the outbox apart, kept 30 days)",
         f"{human_bytes(y.get('read-model bytes kept', 0))} "
         f"({human_bytes(y.get('outbox bytes', 0))})"],
        ["CPU s: worker / Temporal server / PostgreSQL",
         f"{fmt(y.get('worker CPU ms', 0) / 1000, 1)} / "
         f"{fmt(y.get('Temporal server CPU ms', 0) / 1000, 1)} / "
         f"{fmt(y.get('PostgreSQL CPU ms', 0) / 1000, 1)}"],
        ["touches (commands and timers fired) and their median gap",
         f"{fmt(len(year['gaps_days']) * 52 / s['weeks'] / s['year_opportunities'], 0)}, "
         f"{fmt(statistics.median(year['gaps_days']) if year['gaps_days'] else 0, 2)} days"],
        ["rejected commands (should be 0)", fmt(y.get("rejected commands", 0), 0)],
    ]  # fmt: skip
    lines += markdown(["per opportunity-year", "value"], year_rows)
    lines += ["", "Per command: the table above weighted by the mix, against the year (its "
              "opening taken off; timers firing included):", ""]  # fmt: skip
    lines += markdown(["per command", "mix-weighted", "the year"],
                      [[name, fmt(mixed.get(name, 0)), fmt(less_opening[name])]
                       for name in COLUMNS])  # fmt: skip
    lines += ["", "Replay of a run that is not cached:", ""]
    lines += markdown(
        ["run length (events)", "runs", "Replayer p50 (ms)",
         "query, worker without cache, p50 (ms)"],
        [[fmt(r["events"], 0), str(r["runs"]), fmt(r["replayer p50 ms"], 0),
          fmt(r["query p50 ms"], 0)] for r in figures["replay"].values()],
    )  # fmt: skip
    header, model = capacity(figures, a)
    lines += ["", "The capacity model (formula and assumptions below):", ""]
    lines += markdown(["figure", *header], model)
    lines += ["", "Assumptions: " + "; ".join(f"{k} = {v}" for k, v in asdict(a).items()) + "."]
    return lines


# --- the run -------------------------------------------------------------------------------


async def setup(pool: asyncpg.Pool, url: str) -> None:
    """The example's templates and event, the second process, and a contact with a postal
    address (letters are filed for printing)."""
    await prepare(url, [EXAMPLE], say=lambda text: None)
    document = json.loads(EXAMPLE.read_text())
    with_timers(document)
    document.update(process_id=OTHER_PROCESS, default=False)
    await processes.apply_process(pool, ProcessDefinition.model_validate(document))
    await contacts.add_contact(pool, Contact(
        contact_id=CONTACT, first_name="Ada", last_name="Lovelace",
        street="12 St James's Square", city="London", postal_code="SW1Y 4JH", country="UK",
    ))  # fmt: skip


async def measure_all(arguments: argparse.Namespace) -> dict[str, Any]:
    lengths = [int(n) for n in arguments.replay_lengths.split(",")]
    async with local_servers_and_url(with_timers) as (pool, env, url):
        await setup(pool, url)
        conn = await asyncpg.connect(url)
        calls = Calls()
        config = env.client.config()
        config["interceptors"] = [calls]
        counted = Client(**config)
        address = env.client.service_client.config.target_host
        backend = await pool.fetchval("SELECT pg_backend_pid()")
        with tempfile.TemporaryDirectory(prefix="bench-capacity-") as logs:
            bench = Bench(
                env.client, calls, OpportunitiesClient(counted, QUEUE), pool, Database(conn),
                address, url, Path(logs), arguments.pg_settle,
                _server_pid(address.rpartition(":")[2]), int(_stat(f"/proc/{backend}/stat")[1]),
            )  # fmt: skip
            steps = await per_command(bench, arguments.per_command)
            replays = await replay(bench, lengths, arguments.replay_runs, arguments.replays)
            year = await a_year(bench, arguments.year_opportunities, arguments.weeks,
                                arguments.day_seconds)  # fmt: skip
        await conn.close()
    settings = {k: getattr(arguments, k) for k in (
        "per_command", "year_opportunities", "weeks", "day_seconds", "replay_runs", "replays",
        "pg_settle")}  # fmt: skip
    settings["replay_lengths"] = lengths
    return {"settings": settings, "per_command": steps, "year": year, "replay": replays}


def assumptions(arguments: argparse.Namespace) -> Assumptions:
    return Assumptions(**{name: getattr(arguments, name) for name in (
        "lifetime_weeks", "peak", "retention_days", "cached_kib", "worker_rate",
        "worker_cache_gib")})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-command", type=int, default=20, help="opportunities per step")
    parser.add_argument("--year-opportunities", type=int, default=8)
    parser.add_argument("--weeks", type=int, default=52, help="the year's length in weeks")
    parser.add_argument("--day-seconds", type=int, default=1, help="a day of the year, in s")
    parser.add_argument("--replay-lengths", default="100,1000,4000")
    parser.add_argument("--replay-runs", type=int, default=2, help="runs per length")
    parser.add_argument("--replays", type=int, default=5, help="replays and queries per run")
    parser.add_argument(
        "--pg-settle",
        type=float,
        default=10.5,
        help="seconds every backend is idle before statistics are read",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--model", type=Path, help="print the tables of a saved run only")
    defaults = Assumptions()
    for name in ("lifetime_weeks", "peak", "retention_days", "cached_kib", "worker_rate",
                 "worker_cache_gib"):  # fmt: skip
        parser.add_argument(f"--{name.replace('_', '-')}", type=float,
                            default=getattr(defaults, name))  # fmt: skip
    arguments = parser.parse_args()
    if arguments.model is not None:
        figures = json.loads(arguments.model.read_text())
    else:
        started = time.monotonic()
        stdout = os.dup(1)
        os.dup2(2, 1)  # the servers' and workers' banners go to stderr, the tables to stdout
        try:
            figures = asyncio.run(measure_all(arguments))
        finally:
            os.dup2(stdout, 1)
            os.close(stdout)
        figures["seconds"] = round(time.monotonic() - started)
    a = assumptions(arguments)
    figures["model"] = dict(zip(["header", "rows"], capacity(figures, a), strict=True))
    figures["assumptions"] = asdict(a)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(figures, indent=1) + "\n")
    print("\n".join(report(figures, a)))


if __name__ == "__main__":
    main()
