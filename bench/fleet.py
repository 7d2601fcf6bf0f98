"""A fleet of opportunities, each opened and then given a few commands, against a fleet of
bare workflows on the same servers: what users run, where `bench.engine` sends thousands of
commands into one opportunity.

Each side runs in a worker process of its own with the same cache and workflow runner: the
real `opportunities-worker`, and `bench.bare_worker` with `BareOpportunity` (bench/bare.py),
which writes a row when opened and a row per command, each by one local activity. A third
side, `indexed`, runs the same bare workflow started with `"index": true` on the bare worker:
it also upserts the contract's search attributes (when opened, and the owner with each
command), so ours / indexed is what the engine costs beyond the indexing the contract asks
for. This process only starts, sends and reads, with the raw Temporal client. Each phase
runs for one side, then for the next:

- opening: N starts, C in flight; opened/s = N / (first start to the N-th opening row: the
  `opportunities` read model for ours, `bench_fleet_rows` for bare);
- commands: K `change_owner` per workflow, alternately update and signal, round-robin over
  the fleet, C in flight; commands/s = N*K / (first command to every update answered and
  every row showing the last owner); each update's latency, call to answer.

Then a sample's histories (events, workflow tasks, activity tasks, local-activity markers,
search-attribute upserts and timers per opening and per command), and the CPU each process
spent per opening and per command (/proc): the worker's event loop (activities, polls), its
workflow activation threads (workflow code, in the SDK's thread pool) and the SDK core's
Rust threads, the Temporal server, PostgreSQL. With `--py-spy DIR`, py-spy
samples each worker during its phases into DIR/<side>-<phase>.txt (collapsed stacks).

    .venv/bin/python -m bench.fleet [--opportunities 2000] [--commands 5] [--in-flight 50]
                                    [--py-spy DIR] [--ours-worker COMMAND]
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
from temporalio.client import Client

from bench.bare import FLEET_ROWS
from bench.engine import no_activity_on_entry
from bench.servers import local_servers_and_url
from tests.support.worker_process import WorkerProcess, running, worker_env

QUEUE = "bench-fleet"
BARE_QUEUE = "bench-fleet-bare"
CACHE = 5000
"""Workflows each worker keeps cached (the service's default): the whole fleet."""
SAMPLE = 50
"""Workflows per side whose histories are counted."""
DEADLINE = 600.0
"""Seconds a phase may wait for its rows once everything is sent."""
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

    def workflow_id(self, n: int) -> str:
        return f"{self.id_prefix}f{n}"


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


async def until_rows(pool: asyncpg.Pool, sql: str, want: int, *args: Any) -> None:
    """Poll `sql` (a count) until it reaches `want`, for at most DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    shown = time.monotonic()
    while (got := await pool.fetchval(sql, *args)) < want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{got} of {want} rows after {DEADLINE:.0f} s: {sql}")
        if time.monotonic() - shown >= 10:
            progress(f"  {got}/{want} rows")
            shown = time.monotonic()
        await asyncio.sleep(0.1)


async def open_fleet(client: Client, pool: asyncpg.Pool, side: Side, n: int, c: int) -> None:
    async def start(i: int) -> None:
        start = {"opportunity_id": f"f{i}", "contact_id": "c-bench", "process_id": "bench"}
        start |= side.start
        await client.start_workflow(
            side.workflow, start, id=side.workflow_id(i), task_queue=side.queue
        )

    await at_most(c, n, start)
    await until_rows(pool, side.opened_sql, n)


async def command_fleet(
    client: Client, pool: asyncpg.Pool, side: Side, n: int, k: int, c: int
) -> None:
    """K owner changes per workflow, round k to owner `o<k>`; a workflow's commands
    alternate between update and signal, and so does each round. A workflow's next command
    is sent once its last call returned (one waits only when a call is slower than the
    fleet's other calls), so they arrive in order."""
    turns = [asyncio.Lock() for _ in range(n)]  # taken in the order asked for

    async def send(m: int) -> None:
        round_, i = divmod(m, n)
        handle = client.get_workflow_handle(side.workflow_id(i))
        command = {"owner": f"o{round_}", "request_id": f"f{i}-{round_}"}
        async with turns[i]:
            if (round_ + i) % 2:
                await handle.signal("change_owner", command)
                return
            started = time.perf_counter()
            await handle.execute_update("change_owner", command)
            side.latencies.append((time.perf_counter() - started) * 1000)

    await at_most(c, n * k, send)
    await until_rows(pool, side.applied_sql, n, f"o{k - 1}")


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


async def main(n: int, k: int, c: int, profile: Path | None, ours_worker: list[str]) -> None:
    async with local_servers_and_url(no_activity_on_entry) as (pool, env, url):
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
            )  # fmt: skip
            indexed = Side(
                "indexed", "BareOpportunity", "indexed-", BARE_QUEUE, bare.worker,
                "SELECT count(*) FROM bench_fleet_rows"
                " WHERE seq = 0 AND workflow_id LIKE 'indexed-%'",
                "SELECT count(*) FROM bench_fleet_rows"
                " WHERE payload->>'owner' = $1 AND workflow_id LIKE 'indexed-%'",
                start={"index": True},
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
                                   open_fleet(client, pool, side, n, c))  # fmt: skip
                for side in sides:
                    await measured(side, "commands", cpu, profile,
                                   command_fleet(client, pool, side, n, k, c))  # fmt: skip
                for side in sides:
                    await count_events(client, side, n, k)
    print(f"{n} opportunities, {k} commands each, {c} in flight")
    print_table([side.name for side in sides], table(sides, n, k))
    print("CPU s other processes took during the phases: " + ", ".join(
        f"{side.name} {phase} {side.others[phase]:.1f} of {side.seconds[phase]:.0f} s"
        for phase in PHASES for side in sides
    ))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opportunities", type=int, default=2000)
    parser.add_argument("--commands", type=int, default=5)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--py-spy", type=Path, help="record each worker's phases into DIR")
    parser.add_argument(
        "--ours-worker",
        default=str(Path(sys.executable).parent / "opportunities-worker"),
        help="the command that runs our worker (a variant of it, say)",
    )
    arguments = parser.parse_args()
    if arguments.py_spy is not None:
        if PY_SPY is None:
            raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
        arguments.py_spy.mkdir(parents=True, exist_ok=True)
    asyncio.run(
        main(arguments.opportunities, arguments.commands, arguments.in_flight,
             arguments.py_spy, shlex.split(arguments.ours_worker))
    )  # fmt: skip
