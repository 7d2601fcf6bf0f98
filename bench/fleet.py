"""A fleet of opportunities, each opened and then given a few commands, against a fleet of
bare workflows on the same servers: what users run, where `bench.engine` sends thousands of
commands into one opportunity.

Each side runs in a worker process of its own with the same cache and workflow runner: the
real `opportunities-worker`, and `bench.bare_worker` with `BareOpportunity` (bench/bare.py),
which writes a row when opened and a row per command, each by one local activity. A third
side, `indexed`, runs the same bare workflow started with `"index": true` on the bare worker:
it also upserts the contract's search attributes (when opened, and with each command those
the command changes in ours), so ours / indexed is what the engine costs beyond the indexing
the contract asks for. This process only starts, sends and reads, with the raw Temporal
client. Each phase runs for one side, then for the next:

- opening: N starts, C in flight; opened/s = N / (first start to the N-th opening row: the
  `opportunities` read model for ours, `bench_fleet_rows` for bare);
- commands: K commands per workflow (the mix), alternately update and signal, round-robin
  over the fleet, C in flight; commands/s = N*K / (first command to every update answered
  and every workflow's read model showing its K-th command: ours' `opportunities` row at
  revision K, each applied command adding one; a reference's row K in `bench_fleet_rows`,
  written in order); each update's latency, call to answer, also by command.

The mix (`--mix`):

- `cycle` (the default, K = 10 by default: one cycle): a sales cycle of the example process
  (examples/processes/life-insurance.json as it is: entering Prospect creates intro-call's
  calendar activity, entering Needs analysis fact-finder's), cycled, the c-th cycle working
  on each action's activity generation g = c + 1:
  1. `add_action` callback (a calendar action) to Prospect;
  2. `change_owner`;
  3. `perform_actions` callback: creates callback/g;
  4. `complete_actions` callback, outcome Done: callback/g done;
  5. `change_stage` next_stage, cancel_open_activities: to Needs analysis, cancels
     intro-call/g, creates fact-finder/g;
  6. `delete_activity` intro-call/g (canceled: so entering Prospect creates another);
  7. `delete_action` callback (so the next cycle adds it again);
  8. `change_owner`;
  9. `change_stage` Prospect, cancel_open_activities: cancels fact-finder/g, creates
     intro-call/g+1;
  10. `delete_activity` fact-finder/g.
  It ends in the state it began in (Prospect, intro-call's activity active, fact-finder
  without one, no callback), so every command is applied whatever K is; and each is valid
  on the state before the command sent just ahead of it too (an update is checked when it
  arrives, possibly before the signal ahead of it is applied). No stage moves by itself
  (Prospect keeps open actions) and no due notice falls in a run (the earliest is a day
  away), so revision K is exactly the K-th command.
- `owner` (K = 5 by default): `change_owner` only, to `o<r mod 50>` in round r, with the
  process's activities on entry removed (`bench.engine.no_activity_on_entry`).

What is fair: per command, a reference writes its row by one local activity and, in the same
local activity (one transaction), the calendar rows ours writes for that command: a row
inserted per activity created, updated per activity canceled or completed, deleted per
activity deleted (`bench_fleet_calendar`; in the cycle mix, the opening's too: intro-call/1);
`indexed` upserts, at once, the search attributes the command changes in ours (the owner;
the stage and open actions; open actions). It does that work the least way a durable
workflow can, which is the point of a reference: ours creates each calendar activity by an
activity task of its own (a side effect whose outcome its state keeps) and writes the rest
with the opportunity's row and its history entries (one per command, which the reference's
one row stands for) by the projection's activity task; ours upserts at most once a second
per opportunity, and keeps a timer for its activities' due notices. After the phases, the
calendar rows of each side are counted by status (they must be the same: the same work),
and each side's rejected commands: ours' request ids its states do not list as applied (a
commands phase whose read model stops moving looks for rejections in the states, and fails
naming them), a reference's rows not written. The table's "commands rejected" must be 0.

Then a sample's histories (events, workflow tasks, activity tasks, local-activity markers,
search-attribute upserts and timers per opening and per command), and the CPU each process
spent per opening and per command (/proc): the worker's event loop (activities, polls), its
workflow activation threads (workflow code, in the SDK's thread pool) and the SDK core's
Rust threads, the Temporal server, PostgreSQL. With `--py-spy DIR`, py-spy
samples each worker during its phases into DIR/<side>-<phase>.txt (collapsed stacks).

    .venv/bin/python -m bench.fleet [--opportunities 2000] [--commands K] [--in-flight 50]
                                    [--mix {cycle,owner}] [--py-spy DIR]
                                    [--ours-worker COMMAND]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowUpdateFailedError

from bench.bare import FLEET_ROWS
from bench.engine import no_activity_on_entry
from bench.servers import OWNERS, local_servers_and_url
from runtime import search_attributes as sa
from tests.support.worker_process import WorkerProcess, running, worker_env

QUEUE = "bench-fleet"
BARE_QUEUE = "bench-fleet-bare"
CACHE = 5000
"""Workflows each worker keeps cached (the service's default): the whole fleet."""
SAMPLE = 50
"""Workflows per side whose histories are counted."""
DEADLINE = 600.0
"""Seconds a phase may wait for its rows once everything is sent."""
STALLED = 30.0
"""Seconds without a new row after which the commands phase looks for rejected commands (a
rejected command's row never comes)."""
TICK = os.sysconf("SC_CLK_TCK")
PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")

KINDS = {
    "workflow tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    "activity tasks": EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    "local-activity markers": EventType.EVENT_TYPE_MARKER_RECORDED,
    "search-attribute upserts": EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    "timers": EventType.EVENT_TYPE_TIMER_STARTED,
    "failed workflow tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    "timed-out workflow tasks": EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}
"""What the table counts in a history, by the event that marks one."""
PHASES = ("opening", "commands")


@dataclass(frozen=True)
class Step:
    """One command of the fleet's script: what ours is sent, and the work ours does for it
    that a reference does too."""

    name: str
    payload: dict[str, Any]
    """Ours' payload, without its request id."""
    calendar: tuple[tuple[str, str], ...] = ()
    """The calendar rows ours writes for it: (create, cancel, complete or delete, activity id)."""
    attributes: dict[str, Any] = field(default_factory=dict)
    """The search attributes it changes in ours, with their new values."""

    def sent(self, request_id: str, *, reference: bool) -> dict[str, Any]:
        """The payload sent to ours, or to a reference (which is told the work to do)."""
        payload = {**self.payload, "request_id": request_id}
        if reference:
            calendar = [{"op": op, "activity_id": activity} for op, activity in self.calendar]
            payload |= {"calendar": calendar, "attributes": self.attributes}
        return payload


def owner_step(opportunity_id: str, m: int) -> Step:
    """The m-th (from 0) of the owner-only script: the opportunity to owner `o<m>` (modulo
    the `OWNERS` users: consecutive owners always differ)."""
    owner = f"o{m % OWNERS}"
    return Step("change_owner", {"owner": owner}, attributes={sa.OPPORTUNITY_OWNER.name: owner})


CALLBACK = {
    "action_id": "callback", "type": "calendar", "title": "Call back",
    "activity": {"kind": "call", "duration_minutes": 15, "due_in_days": 3},
}  # fmt: skip
"""The action the sales cycle adds to Prospect, performs, completes and deletes (due in 3
days: no due notice fires during a run)."""


def sales_cycle(opportunity_id: str, c: int) -> list[Step]:
    """The c-th (from 0) sales cycle of an opportunity of the example process
    (examples/processes/life-insurance.json, activities created on entry), from Prospect with
    intro-call's activity active and fact-finder without one, back to the same. Generation
    g = c + 1 of each action's activity is the one the cycle works on."""
    g = c + 1
    stage, open_ = sa.OPPORTUNITY_STAGE.name, sa.OPEN_ACTIONS.name

    def activity(action: str, generation: int = g) -> str:
        return f"{opportunity_id}/{action}/{generation}"

    return [
        Step("add_action", {"stage": "Prospect", "action": CALLBACK}, attributes={open_: 4}),
        owner_step(opportunity_id, 2 * c),
        Step("perform_actions", {"action_ids": ["callback"]},
             (("create", activity("callback")),)),
        Step("complete_actions", {"action_ids": ["callback"], "outcome": "Done"},
             (("complete", activity("callback")),), {open_: 3}),
        Step("change_stage", {"next_stage": True, "cancel_open_activities": True},
             (("cancel", activity("intro-call")), ("create", activity("fact-finder"))),
             {stage: "Needs analysis", open_: 1}),
        Step("delete_activity", {"activity_id": activity("intro-call")},
             (("delete", activity("intro-call")),)),
        Step("delete_action", {"action_id": "callback"}),
        owner_step(opportunity_id, 2 * c + 1),
        Step("change_stage", {"stage": "Prospect", "cancel_open_activities": True},
             (("cancel", activity("fact-finder")), ("create", activity("intro-call", g + 1))),
             {stage: "Prospect", open_: 3}),
        Step("delete_activity", {"activity_id": activity("fact-finder")},
             (("delete", activity("fact-finder")),)),
    ]  # fmt: skip


CYCLE = len(sales_cycle("f0", 0))


def cycle_step(opportunity_id: str, m: int) -> Step:
    """The m-th (from 0) command of the sales cycles, one after another."""
    c, position = divmod(m, CYCLE)
    return sales_cycle(opportunity_id, c)[position]


def entry_activities(document: dict[str, Any]) -> None:
    """The example process as it is: entering a stage creates the activities it marks."""


@dataclass(frozen=True)
class Mix:
    """The commands each opportunity of the fleet is sent, and what the fleet's process is."""

    name: str
    commands: int
    """K by default."""
    process: Callable[[dict[str, Any]], None]
    """Edits the example process into the fleet's (`bench.servers`)."""
    opening_creates: tuple[str, ...]
    """The actions whose calendar activity (generation 1) the opening creates."""
    step: Callable[[str, int], Step]
    """The m-th command (from 0) of opportunity `f<n>`."""


MIXES = {
    "cycle": Mix("cycle", CYCLE, entry_activities, ("intro-call",), cycle_step),
    "owner": Mix("owner", 5, no_activity_on_entry, (), owner_step),
}
OWNER_ONLY = MIXES["owner"]


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Side:
    """One fleet: its workflow type, ids, queue, worker, how to count its rows, and what
    was measured."""

    name: str
    workflow: str
    id_prefix: str
    queue: str
    worker: WorkerProcess
    opened_sql: str
    applied_sql: str
    """Workflows whose row shows owner $1."""
    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    others: dict[str, float] = field(default_factory=dict)
    """CPU seconds other processes of the machine took during each phase."""
    start: dict[str, Any] = field(default_factory=dict)
    """Added to every start's input."""
    latencies: list[float] = field(default_factory=list)
    events: dict[str, Counter[str]] = field(default_factory=dict)
    done_sql: str | None = None
    """Workflows whose read model shows their K-th command applied ($1 = K): the end of the
    commands phase; without it, `applied_sql` showing the last owner (owner-only commands)."""
    latency_by: dict[str, list[float]] = field(default_factory=dict)
    """Update latencies by command."""
    rejected: int = 0
    """Commands sent and never applied (`count_rejected`)."""
    rejections: Counter[str] = field(default_factory=Counter)
    """Rejected commands by code: updates as they are refused, signals as the state keeps
    them."""

    def workflow_id(self, n: int) -> str:
        return f"{self.id_prefix}f{n}"

    @property
    def reference(self) -> bool:
        """A bare workflow, told the work to do for each command (`Step.sent`)."""
        return self.workflow == "BareOpportunity"


async def at_most(in_flight: int, count: int, call: Callable[[int], Awaitable[None]]) -> None:
    """`call(n)` for n in range(count), in order, `in_flight` at a time; progress on stderr."""
    numbers = iter(range(count))
    sent = 0

    async def sender() -> None:
        nonlocal sent
        for n in numbers:
            await call(n)
            sent += 1

    async def report() -> None:
        while True:
            await asyncio.sleep(10)
            progress(f"  {sent}/{count} sent")

    reporter = asyncio.ensure_future(report())
    try:
        await asyncio.gather(*(sender() for _ in range(in_flight)))
    finally:
        reporter.cancel()


async def until_rows(
    pool: asyncpg.Pool,
    sql: str,
    want: int,
    *args: Any,
    stalled: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Poll `sql` (a count) until it reaches `want`, for at most DEADLINE seconds; `stalled`
    (which raises when the rows cannot come) is called after each STALLED seconds without a
    new row."""
    deadline = time.monotonic() + DEADLINE
    shown = moved = time.monotonic()
    last = -1
    while (got := await pool.fetchval(sql, *args)) < want:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{got} of {want} rows after {DEADLINE:.0f} s: {sql}")
        if got != last:
            last, moved = got, now
        elif stalled is not None and now - moved >= STALLED:
            await stalled()
            moved = time.monotonic()
        if now - shown >= 10:
            progress(f"  {got}/{want} rows")
            shown = now
        await asyncio.sleep(0.1)


async def open_fleet(
    client: Client, pool: asyncpg.Pool, side: Side, n: int, c: int, mix: Mix = OWNER_ONLY
) -> None:
    """N starts of opportunities `f<n>`; a reference is told the calendar rows ours' opening
    writes."""

    async def start(i: int) -> None:
        start: dict[str, Any] = {
            "opportunity_id": f"f{i}",
            "contact_id": "c-bench",
            "process_id": "bench",
        }
        start |= side.start
        if side.reference and mix.opening_creates:
            start["calendar"] = [
                {"op": "create", "activity_id": f"f{i}/{action}/1"}
                for action in mix.opening_creates
            ]
        await client.start_workflow(
            side.workflow, start, id=side.workflow_id(i), task_queue=side.queue
        )

    await at_most(c, n, start)
    await until_rows(pool, side.opened_sql, n)


async def command_fleet(
    client: Client, pool: asyncpg.Pool, side: Side, n: int, k: int, c: int,
    mix: Mix = OWNER_ONLY,
) -> None:  # fmt: skip
    """K commands per workflow, round r being the mix's r-th command (request id
    `f<n>-<r>`); a workflow's commands alternate between update and signal, and so does each
    round. A workflow's next command is sent once its last call returned (one waits only when
    a call is slower than the fleet's other calls), so they arrive in order. An update
    refused is counted by its code, and the fleet goes on; the phase ends when the read model
    shows every workflow's K-th command (`Side.done_sql`), and, when that stalls, fails
    naming the rejections that keep it from coming."""
    turns = [asyncio.Lock() for _ in range(n)]  # taken in the order asked for

    async def send(m: int) -> None:
        round_, i = divmod(m, n)
        handle = client.get_workflow_handle(side.workflow_id(i))
        step = mix.step(f"f{i}", round_)
        command = step.sent(f"f{i}-{round_}", reference=side.reference)
        async with turns[i]:
            if (round_ + i) % 2:
                await handle.signal(step.name, command)
                return
            started = time.perf_counter()
            try:
                await handle.execute_update(step.name, command)
            except WorkflowUpdateFailedError as failed:
                side.rejections[f"{step.name}: {failed.cause}"[:160]] += 1
                return
            latency = (time.perf_counter() - started) * 1000
            side.latencies.append(latency)
            side.latency_by.setdefault(step.name, []).append(latency)

    async def stalled() -> None:
        signals: Counter[str] = Counter()
        if not side.reference:
            await ours_states(client, side, n, c, lambda i, state: signals.update(
                f"{r['command']}: {r['code']}: {r['reason']}"[:160] for r in state["rejected"]
            ))  # fmt: skip
        if side.rejections or signals:
            raise RuntimeError(
                f"{side.name}: rejected commands keep the read model from showing the last: "
                f"updates {dict(side.rejections)}, signals {dict(signals)}"
            )

    await at_most(c, n * k, send)
    if side.done_sql is not None:
        await until_rows(pool, side.done_sql, n, k, stalled=stalled)
    else:
        await until_rows(pool, side.applied_sql, n, f"o{k - 1}", stalled=stalled)


async def ours_states(
    client: Client, side: Side, n: int, c: int, each: Callable[[int, dict[str, Any]], None]
) -> None:
    """`each(n, state)` for every workflow of our side, its `state` query as JSON."""

    async def query(i: int) -> None:
        each(i, await client.get_workflow_handle(side.workflow_id(i)).query("state"))

    await at_most(c, n, query)


async def count_rejected(
    client: Client, pool: asyncpg.Pool, side: Side, n: int, k: int, c: int
) -> None:
    """`Side.rejected`: of the N*K commands sent, those not applied. Ours: the request ids
    its opportunities' states do not list as applied (and the rejections they keep, by
    code); a reference: the command rows it has not written."""
    if side.reference:
        written = await pool.fetchval(
            "SELECT count(*) FROM bench_fleet_rows"
            " WHERE seq BETWEEN 1 AND $1 AND workflow_id LIKE $2",
            k, f"{side.id_prefix}%",
        )  # fmt: skip
        side.rejected = n * k - written
        return
    missing = 0

    def tally(i: int, state: dict[str, Any]) -> None:
        nonlocal missing
        applied = set(state["applied_request_ids"])
        missing += sum(f"f{i}-{r}" not in applied for r in range(k))
        side.rejections.update(f"{r['command']}: {r['code']}" for r in state["rejected"])

    await ours_states(client, side, n, c, tally)
    side.rejected = missing


class Cpu:
    """CPU seconds spent so far by each worker (its event loop, its workflow activation
    threads, the SDK core's threads), the Temporal server, PostgreSQL (the postmaster, its
    children and those it reaped), this process and the whole machine."""

    def __init__(self, workers: dict[str, int], server: int, postmaster: int) -> None:
        self.workers = workers
        self.server = server
        self.postmaster = postmaster

    def sharing(self) -> tuple[str, ...]:
        """The names of sides whose worker process an earlier side already names."""
        pids = list(self.workers.values())
        return tuple(
            f"{name} " for n, (name, pid) in enumerate(self.workers.items()) if pid in pids[:n]
        )

    def read(self) -> dict[str, float]:
        seconds = {"Temporal server": _cpu(f"/proc/{self.server}/stat")}
        for name, pid in self.workers.items():
            main = _cpu(f"/proc/{pid}/task/{pid}/stat")
            python = 0.0  # the threads named like the main one: the SDK's activation threads
            for task in Path(f"/proc/{pid}/task").iterdir():
                if task.name != str(pid) and _comm(task) == _comm(Path(f"/proc/{pid}")):
                    python += _cpu(f"{task}/stat")
            seconds[f"{name} worker, event loop (activities, polls)"] = main
            seconds[f"{name} worker, workflow activation threads"] = python
            seconds[f"{name} worker, SDK core (Rust threads)"] = (
                _cpu(f"/proc/{pid}/stat") - main - python
            )
        postgres = _cpu(f"/proc/{self.postmaster}/stat", reaped=True)
        for child in _children(self.postmaster):
            with contextlib.suppress(OSError):
                postgres += _cpu(f"/proc/{child}/stat")
        seconds["PostgreSQL"] = postgres
        seconds["this process"] = _cpu("/proc/self/stat")
        # user, nice, system, idle, iowait, irq, softirq, steal (guest time is in user)
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
        seconds["machine"] = (sum(ticks) - ticks[3] - ticks[4]) / TICK
        return seconds


def _stat(path: str) -> list[str]:
    """The fields of a /proc stat file after the command name (field 3 on)."""
    return Path(path).read_text().rpartition(")")[2].split()


def _cpu(path: str, *, reaped: bool = False) -> float:
    """utime + stime (and with `reaped`, the reaped children's) in seconds."""
    fields = _stat(path)
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def _comm(process: Path) -> str:
    return (process / "comm").read_text()


def _children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int(_stat(f"{entry}/stat")[1]) == parent:
                    children.append(int(entry.name))
    return children


def _server_pid(port: str) -> int:
    """The Temporal dev server this process started (listening on `port`)."""
    for child in _children(os.getpid()):
        command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"start-dev" in command and port.encode() in command:
            return child
    raise RuntimeError("no Temporal dev server among this process's children")


@contextlib.asynccontextmanager
async def sampled(directory: Path | None, pid: int, name: str) -> AsyncIterator[None]:
    """py-spy recording `pid` into DIR/<name>.txt while the block runs (nothing without a
    directory)."""
    if directory is None:
        yield
        return
    assert PY_SPY is not None
    output = directory / f"{name}.txt"
    recorder = await asyncio.create_subprocess_exec(
        *(PY_SPY, "record", "--pid", str(pid), "--rate", "100", "--nonblocking"),
        *("--format", "raw", "--output", str(output)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        await recorder.wait()
        progress(f"  py-spy samples in {output}")


async def measured(
    side: Side, phase: str, cpu: Cpu, profile: Path | None, body: Awaitable[None]
) -> None:
    progress(f"{side.name}: {phase}")
    before = cpu.read()
    started = time.perf_counter()
    async with sampled(profile, side.worker.pid, f"{side.name}-{phase}"):
        await body
    side.seconds[phase] = time.perf_counter() - started
    used = {name: seconds - before[name] for name, seconds in cpu.read().items()}
    machine, bench = used.pop("machine"), used.pop("this process")
    shared = cpu.sharing()  # a worker process counted under a second side's name too
    side.others[phase] = (
        machine
        - bench
        - sum(seconds for name, seconds in used.items() if not name.startswith(shared))
    )
    side.cpu[phase] = {
        name: seconds
        for name, seconds in used.items()
        if name.startswith(side.name) or "worker" not in name
    }
    progress(f"{side.name}: {phase} took {side.seconds[phase]:.1f} s")


async def count_events(client: Client, side: Side, n: int, k: int) -> None:
    """Events by type in a sample's openings and in their commands (every run), per opening
    and per command; a workflow's commands begin with its first signal or accepted update
    (and the workflow task that accepted it)."""
    step = max(1, n // SAMPLE)  # odd and even numbers alike: they take updates, signals alike
    sample = sorted({min(n - 1, j * step + j % 2) for j in range(min(n, SAMPLE))})
    opening: Counter[str] = Counter()
    commands: Counter[str] = Counter()
    for i in sample:
        events = await all_events(client, side.workflow_id(i))
        cut = first_command(events)
        opening.update(EventType.Name(e.event_type) for e in events[:cut])
        commands.update(EventType.Name(e.event_type) for e in events[cut:])
        opening["all"] += cut
        commands["all"] += len(events) - cut
    side.events["opening"] = Counter({t: v / len(sample) for t, v in opening.items()})
    side.events["commands"] = Counter({t: v / len(sample) / k for t, v in commands.items()})


async def all_events(client: Client, workflow_id: str) -> list[HistoryEvent]:
    """The events of every run of one workflow, oldest run first."""
    runs = [run async for run in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    events: list[HistoryEvent] = []
    for run in sorted(runs, key=lambda run: run.start_time):
        handle = client.get_workflow_handle(workflow_id, run_id=run.run_id)
        events += [event async for event in handle.fetch_history_events()]
    return events


def first_command(events: list[HistoryEvent]) -> int:
    """The index of the first event that belongs to a command (the end of the opening)."""
    for n, event in enumerate(events):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            return n
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            scheduled = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
            return max(m for m in range(n) if events[m].event_type == scheduled)
    return len(events)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def table(sides: list[Side], n: int, k: int) -> list[tuple[str, list[float], str]]:
    """Rows: figure, one value per side (ours first), goal for ours / bare ("" for none)."""

    def each(figure: Callable[[Side], float]) -> list[float]:
        return [figure(side) for side in sides]

    rows = [
        ("opened/s", each(lambda s: n / s.seconds["opening"]), ">= 0.6"),
        ("commands/s", each(lambda s: n * k / s.seconds["commands"]), ">= 0.8"),
        ("update p50 (ms)", each(lambda s: statistics.median(s.latencies)), ""),
        ("update p99 (ms)", each(lambda s: percentile(s.latencies, 0.99)), "<= 1.5"),
        ("commands rejected", each(lambda s: s.rejected), "0 (each side)"),
    ]
    ours = sides[0]
    for phase, per, count in (("opening", "opening", n), ("commands", "command", n * k)):
        events = [side.events[phase] for side in sides]
        rows.append((f"history events per {per}", [e["all"] for e in events], ""))
        for kind, event in KINDS.items():
            name = EventType.Name(event)
            if any(e[name] for e in events):
                rows.append((f"  {kind}", [e[name] for e in events], ""))
        for process in ours.cpu[phase]:
            name = process.removeprefix(ours.name + " ")
            keys = [process if name == process else f"{s.name} {name}" for s in sides]
            rows.append((
                f"CPU ms per {per}: {name}",
                [s.cpu[phase][key] * 1000 / count for s, key in zip(sides, keys, strict=True)],
                "",
            ))  # fmt: skip
    return rows


def print_table(names: list[str], rows: list[tuple[str, list[float], str]]) -> None:
    """Each side's figure, and ours divided by each other side's."""
    head = "".join(f" {name:>8}" for name in names)
    ratios = "".join(f" {'/' + name:>8}" for name in names[1:])
    print(f"{'figure':<58}{head}{ratios}  goal (ours/bare)")
    for figure, values, goal in rows:
        cells = "".join(f" {value:>8.1f}" for value in values)
        cells += "".join(
            f" {values[0] / value:>8.2f}" if value else f" {'':>8}" for value in values[1:]
        )
        print(f"{figure:<58}{cells}  {goal}")


def print_by_command(sides: list[Side]) -> None:
    """Each command's update p50 and p99 on each side (a mix of several commands)."""
    names = list(sides[0].latency_by)
    if len(names) < 2:
        return
    head = "".join(f" {side.name + ' p50':>12} {'p99':>7}" for side in sides)
    print(f"{'update latency by command (ms)':<34}{head}")
    for name in names:
        cells = ""
        for side in sides:
            values = side.latency_by.get(name) or [0.0]
            cells += f" {statistics.median(values):>12.0f} {percentile(values, 0.99):>7.0f}"
        print(f"  {name:<32}{cells}")


async def calendar_rows(pool: asyncpg.Pool, side: Side) -> dict[str, int]:
    """A side's calendar rows by status: ours' `calendar_activities`, a reference's
    `bench_fleet_calendar`."""
    if side.reference:
        rows = await pool.fetch(
            "SELECT status, count(*) FROM bench_fleet_calendar WHERE workflow_id LIKE $1"
            " GROUP BY 1 ORDER BY 1",
            f"{side.id_prefix}%",
        )
    else:
        rows = await pool.fetch(
            "SELECT status, count(*) FROM calendar_activities GROUP BY 1 ORDER BY 1"
        )
    return {row["status"]: row["count"] for row in rows}


async def main(
    n: int, k: int, c: int, profile: Path | None, ours_worker: list[str], mix: Mix
) -> None:
    async with local_servers_and_url(mix.process) as (pool, env, url):
        await pool.execute(FLEET_ROWS)
        client = env.client
        address = client.service_client.config.target_host
        # The runner as this shell sets it (default: no sandbox), the same for both sides.
        sandbox = os.environ.get("OPPORTUNITIES_WORKFLOW_SANDBOX", "off").lower() == "on"
        with tempfile.TemporaryDirectory() as logs:
            ours = Side(
                "ours", "Opportunity", "opportunity-", QUEUE,
                WorkerProcess(
                    ours_worker,
                    worker_env(address, url, QUEUE, CACHE, sandbox),
                    Path(logs) / "ours.log",
                ),
                "SELECT count(*) FROM opportunities",
                "SELECT count(*) FROM opportunities WHERE owner = $1",
                done_sql="SELECT count(*) FROM opportunities WHERE revision = $1",
            )  # fmt: skip
            bare = Side(
                "bare", "BareOpportunity", "bare-", BARE_QUEUE,
                WorkerProcess(
                    [sys.executable, "-m", "bench.bare_worker"],
                    worker_env(address, url, BARE_QUEUE, CACHE, sandbox),
                    Path(logs) / "bare.log",
                ),
                "SELECT count(*) FROM bench_fleet_rows WHERE seq = 0 AND workflow_id LIKE 'bare-%'",
                "SELECT count(*) FROM bench_fleet_rows"
                " WHERE payload->>'owner' = $1 AND workflow_id LIKE 'bare-%'",
                done_sql="SELECT count(*) FROM bench_fleet_rows"
                " WHERE seq = $1 AND workflow_id LIKE 'bare-%'",
            )  # fmt: skip
            indexed = Side(
                "indexed", "BareOpportunity", "indexed-", BARE_QUEUE, bare.worker,
                "SELECT count(*) FROM bench_fleet_rows"
                " WHERE seq = 0 AND workflow_id LIKE 'indexed-%'",
                "SELECT count(*) FROM bench_fleet_rows"
                " WHERE payload->>'owner' = $1 AND workflow_id LIKE 'indexed-%'",
                start={"index": True},
                done_sql="SELECT count(*) FROM bench_fleet_rows"
                " WHERE seq = $1 AND workflow_id LIKE 'indexed-%'",
            )  # fmt: skip
            sides = [ours, bare, indexed]
            async with running(ours.worker), running(bare.worker):
                cpu = Cpu(
                    {side.name: side.worker.pid for side in sides},
                    _server_pid(address.rpartition(":")[2]),
                    int(_stat(f"/proc/{await pool.fetchval('SELECT pg_backend_pid()')}/stat")[1]),
                )
                progress(f"workers: ours pid {ours.worker.pid}, bare pid {bare.worker.pid}")
                for side in sides:
                    await measured(side, "opening", cpu, profile,
                                   open_fleet(client, pool, side, n, c, mix))  # fmt: skip
                for side in sides:
                    await measured(side, "commands", cpu, profile,
                                   command_fleet(client, pool, side, n, k, c, mix))  # fmt: skip
                calendar = {}
                for side in sides:
                    await count_rejected(client, pool, side, n, k, c)
                    calendar[side.name] = await calendar_rows(pool, side)
                    await count_events(client, side, n, k)
    commands = ", ".join(dict.fromkeys(mix.step("f0", m).name for m in range(k)))
    print(f"{n} opportunities, {k} commands each ({mix.name}: {commands}), {c} in flight")
    print_table([side.name for side in sides], table(sides, n, k))
    print_by_command(sides)
    if any(calendar.values()):
        same = all(rows == calendar[ours.name] for rows in calendar.values())
        print("calendar rows by status: " + "; ".join(
            f"{name} {rows or '-'}" for name, rows in calendar.items()
        ) + ("" if same else "  DIFFERENT: the sides did not do the same work"))  # fmt: skip
    for side in sides:
        if side.rejections:
            print(f"{side.name} rejected: {dict(side.rejections)}")
    print("CPU s other processes took during the phases: " + ", ".join(
        f"{side.name} {phase} {side.others[phase]:.1f} of {side.seconds[phase]:.0f} s"
        for phase in PHASES for side in sides
    ))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=2000)
    parser.add_argument(
        "--commands", type=int,
        help=f"K, commands per opportunity (default: {MIXES['cycle'].commands}, one sales cycle;"
        f" {MIXES['owner'].commands} with --mix owner)",
    )  # fmt: skip
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--py-spy", type=Path, help="record each worker's phases into DIR")
    parser.add_argument(
        "--ours-worker",
        default=str(Path(sys.executable).parent / "opportunities-worker"),
        help="the command that runs our worker (a variant of it, say)",
    )
    parser.add_argument(
        "--mix", choices=sorted(MIXES), default="cycle",
        help="cycle: the sales cycle's mix of commands (default); owner: change_owner only",
    )  # fmt: skip
    arguments = parser.parse_args()
    mix = MIXES[arguments.mix]
    if arguments.py_spy is not None:
        if PY_SPY is None:
            raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
        arguments.py_spy.mkdir(parents=True, exist_ok=True)
    asyncio.run(
        main(arguments.opportunities, arguments.commands or mix.commands, arguments.in_flight,
             arguments.py_spy, shlex.split(arguments.ours_worker), mix)
    )  # fmt: skip
