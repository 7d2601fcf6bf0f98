"""Opportunity events delivered to a webhook receiver while `bench.fleet`'s load runs, and
what one subscription costs that load.

`bench.fleet`'s "ours" side runs twice on the same fresh servers, each time with a fleet of
its own (opportunities `a-f<n>` and `b-f<n>` of the process `bench`), on a task queue of its
own, served by its own `opportunities-worker` process (its delivery worker included, on
`<queue>-delivery`):

- **none**: no subscription exists while it runs;
- **one**: one webhook subscription, added once `none` is done, to a receiver in this
  process (aiohttp on 127.0.0.1, checking each signature with `standardwebhooks`), for the
  process `bench` and the event types `none`'s fleet wrote (its commands' `owner_changed`
  and whatever an opening writes).

Each side opens N opportunities, then sends each K `change_owner` commands, C in flight
(`bench.fleet`'s phases, figures and CPU readings). The deliveries are then waited for, and
the events `one`'s fleet wrote of the subscribed types are compared with those received,
event by event: they must be the same (the run fails otherwise). The delivery figures:

- events delivered/s: distinct events received / (first event written to last received);
- lag: received (this process's clock) minus the event's `written_at` (the outbox row's
  time: the start of the projection's transaction, on the same machine's clock); at steady
  state, over the events written in the middle 80 % of the commands phase; `at` (the time
  the workflow applied the command) gives the lag from the command itself.

`none` runs first, so `one` runs on a server that holds N more workflows: any drift counts
against the subscription. The delivery settings are the service's defaults (poll 0.25 s
unless `--poll`).

    .venv/bin/python -m bench.events [--opportunities 1000] [--commands 5] [--in-flight 50]
                                     [--poll SECONDS] [--ours-worker COMMAND]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client

from bench.engine import no_activity_on_entry
from bench.fleet import (
    CACHE,
    DEADLINE,
    Cpu,
    Side,
    WorkerProcess,
    _server_pid,
    _stat,
    at_most,
    command_fleet,
    measured,
    percentile,
    progress,
    running,
    until_rows,
    worker_env,
)
from bench.servers import local_servers_and_url
from runtime import embedded
from runtime.workflow_ids import opportunity_workflow_id
from starter.client.subscriptions import Subscriptions, new_secret
from workflows.subscription import workflow_id as subscription_workflow_id

SUBSCRIPTION = "bench-events"
PROCESS = "bench"
STEADY = 0.1
"""The share of the commands phase left out at each end for the lag at steady state."""
TEST_SETTINGS = (
    "OPPORTUNITIES_DELIVERY_POLL",
    "OPPORTUNITIES_DELIVERY_FIRST_BACKOFF",
    "OPPORTUNITIES_DELIVERY_MAX_BACKOFF",
)
"""The tests' short delivery waits that `worker_env` sets: the bench runs the defaults."""


class Receiver:
    """Webhooks on 127.0.0.1: each signature checked, the first arrival of each event kept
    (this process's wall clock) with the event's `at`, duplicates and refusals counted."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.port = embedded.free_port()
        self.arrived: dict[str, float] = {}
        self.at: dict[str, float] = {}
        self.deliveries = 0
        self.bad = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        now = time.time()
        body = await request.read()
        try:
            event = self.webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad += 1
            return web.Response(status=400, text="bad signature")
        self.deliveries += 1
        if event["event_id"] not in self.arrived:
            self.arrived[event["event_id"]] = now
            self.at[event["event_id"]] = _timestamp(event["at"])
        return web.Response(status=204)


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Run:
    """One side's fleet and the wall-clock bounds of its commands phase."""

    side: Side
    prefix: str
    commands_from: float = 0.0
    commands_to: float = 0.0
    events_written: Counter[str] = field(default_factory=Counter)


def fleet_side(name: str, prefix: str, worker: WorkerProcess, queue: str) -> Side:
    like = f"'{prefix}%'"
    return Side(
        name, "Opportunity", opportunity_workflow_id(prefix), queue, worker,
        f"SELECT count(*) FROM opportunities WHERE opportunity_id LIKE {like}",
        f"SELECT count(*) FROM opportunities WHERE owner = $1 AND opportunity_id LIKE {like}",
    )  # fmt: skip


async def open_fleet(client: Client, pool: asyncpg.Pool, run: Run, n: int, c: int) -> None:
    """`bench.fleet.open_fleet`, with opportunity ids of the side's own (`<prefix>f<n>`)."""
    side = run.side

    async def start(i: int) -> None:
        start = {"opportunity_id": f"{run.prefix}f{i}", "contact_id": "c-bench",
                 "process_id": PROCESS}  # fmt: skip
        await client.start_workflow(
            side.workflow, start, id=side.workflow_id(i), task_queue=side.queue
        )

    await at_most(c, n, start)
    await until_rows(pool, side.opened_sql, n)


async def run_fleet(
    client: Client, pool: asyncpg.Pool, cpu: Cpu, run: Run, n: int, k: int, c: int
) -> None:
    await measured(run.side, "opening", cpu, None, open_fleet(client, pool, run, n, c))
    run.commands_from = time.time()
    await measured(run.side, "commands", cpu, None, command_fleet(client, pool, run.side, n, k, c))
    run.commands_to = time.time()
    rows = await pool.fetch(
        "SELECT type, count(*) FROM opportunity_events WHERE opportunity_id LIKE $1 GROUP BY type",
        f"{run.prefix}%",
    )
    run.events_written = Counter({row["type"]: row["count"] for row in rows})


async def delivering(client: Client) -> None:
    """Until the subscription's delivery activity has started on the delivery worker."""
    handle = client.get_workflow_handle(subscription_workflow_id(SUBSCRIPTION))
    deadline = time.monotonic() + 120
    started = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    while time.monotonic() < deadline:
        with_activities = (await handle.describe()).raw_description.pending_activities
        if any(pending.state == started for pending in with_activities):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the subscription's delivery activity did not start in 120 s")


async def all_received(pool: asyncpg.Pool, receiver: Receiver, want: int) -> float:
    """Wait (at most DEADLINE) until the receiver holds `want` events and the subscription
    has none pending; the seconds waited."""
    started = time.monotonic()
    shown = started
    while True:
        pending = await pool.fetchval(
            "SELECT count(*) FROM subscription_deliveries WHERE subscription_id = $1",
            SUBSCRIPTION,
        )
        if len(receiver.arrived) >= want and pending == 0:
            return time.monotonic() - started
        if time.monotonic() - started > DEADLINE:
            progress(f"  gave up: {len(receiver.arrived)}/{want} received, {pending} pending")
            return time.monotonic() - started
        if time.monotonic() - shown >= 10:
            progress(f"  {len(receiver.arrived)}/{want} received, {pending} pending")
            shown = time.monotonic()
        await asyncio.sleep(0.1)


def worker_settings(env: dict[str, str], key: str, poll: float | None) -> dict[str, str]:
    for name in TEST_SETTINGS:
        env.pop(name, None)
    env["OPPORTUNITIES_SECRETS_KEY"] = key
    env["OPPORTUNITIES_WEBHOOK_ADDRESSES"] = "loopback"
    if poll is not None:
        env["OPPORTUNITIES_DELIVERY_POLL"] = str(poll)
    return env


def cpu_ms(side: Side, phase: str, count: int) -> dict[str, float]:
    """CPU ms per opening or command: the Temporal server, the side's worker (all its
    threads), PostgreSQL."""
    used = side.cpu[phase]
    worker = sum(seconds for name, seconds in used.items() if name.startswith(side.name))
    return {
        "Temporal server": used["Temporal server"] * 1000 / count,
        "worker": worker * 1000 / count,
        "PostgreSQL": used["PostgreSQL"] * 1000 / count,
    }


Rows = list[tuple[str, list[float], str]]
"""A figure, its value on each of two sides, and its goal (for the ratio)."""


def side_by_side(sides: tuple[Side, Side], n: int, k: int) -> Rows:
    """`bench.fleet`'s figures of two sides: opened/s, commands/s (goal: at least 0.9 of the
    first side), update latency, CPU per opening and per command."""
    rows: Rows = [
        ("opened/s", [n / s.seconds["opening"] for s in sides], ""),
        ("commands/s", [n * k / s.seconds["commands"] for s in sides], ">= 0.9"),
        ("update p50 (ms)", [statistics.median(s.latencies or [0.0]) for s in sides], ""),
        ("update p99 (ms)", [percentile(s.latencies or [0.0], 0.99) for s in sides], ""),
    ]
    for phase, per, count in (("opening", "opening", n), ("commands", "command", n * k)):
        each = [cpu_ms(s, phase, count) for s in sides]
        for process in each[0]:
            rows.append((f"CPU ms per {per}: {process}", [e[process] for e in each], ""))
    return rows


def print_ratios(rows: Rows) -> None:
    """The rows as a table's lines: each side's value and the second's ratio to the first."""
    for figure, (a, b), goal in rows:
        ratio = f"{b / a:.2f}" if a else ""
        if goal:
            ratio = f"**{ratio}** ({goal})"
        print(f"| {figure} | {fmt(a)} | {fmt(b)} | {ratio} |")


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def quantiles(values: list[float]) -> str:
    if not values:
        return "none"
    return " / ".join(
        fmt(v * 1000, 0) for v in (statistics.median(values), percentile(values, 0.99), max(values))
    )


async def main(n: int, k: int, c: int, poll: float | None, ours_worker: list[str]) -> int:
    key = "bench:" + base64.b64encode(secrets.token_bytes(32)).decode()
    os.environ["OPPORTUNITIES_SECRETS_KEY"] = key  # Subscriptions.add seals the secret here
    os.environ["OPPORTUNITIES_WEBHOOK_ADDRESSES"] = "loopback"
    secret = new_secret()
    receiver = Receiver(secret)
    async with local_servers_and_url(no_activity_on_entry) as (pool, env, url):
        client = env.client
        address = client.service_client.config.target_host
        sandbox = os.environ.get("OPPORTUNITIES_WORKFLOW_SANDBOX", "off").lower() == "on"
        with tempfile.TemporaryDirectory() as logs:

            def worker(name: str, queue: str) -> WorkerProcess:
                env = worker_env(address, url, queue, CACHE, sandbox)
                return WorkerProcess(
                    ours_worker, worker_settings(env, key, poll), Path(logs) / f"{name}.log"
                )

            none = Run(fleet_side("none", "a-", worker("none", "bench-events-none"),
                                  "bench-events-none"), "a-")  # fmt: skip
            one = Run(fleet_side("one", "b-", worker("one", "bench-events-one"),
                                 "bench-events-one"), "b-")  # fmt: skip
            await receiver.start()
            try:
                async with running(none.side.worker), running(one.side.worker):
                    cpu = Cpu(
                        {run.side.name: run.side.worker.pid for run in (none, one)},
                        _server_pid(address.rpartition(":")[2]),
                        int(_stat(f"/proc/{await pool.fetchval('SELECT pg_backend_pid()')}"
                                  "/stat")[1]),
                    )  # fmt: skip
                    progress(f"workers: none pid {none.side.worker.pid}, "
                             f"one pid {one.side.worker.pid}; receiver {receiver.url}")  # fmt: skip
                    await run_fleet(client, pool, cpu, none, n, k, c)
                    types = sorted(none.events_written)
                    progress(f"subscribing to {', '.join(types)} of process {PROCESS}")
                    await Subscriptions(
                        pool, client, task_queue=one.side.queue,
                        delivery_task_queue=f"{one.side.queue}-delivery", scope="loopback",
                    ).add(
                        url=receiver.url, workflow_id=None, events=types, process_id=PROCESS,
                        secret=secret, subscription_id=SUBSCRIPTION, by="bench",
                    )  # fmt: skip
                    await delivering(client)
                    await run_fleet(client, pool, cpu, one, n, k, c)
                    want = sum(one.events_written[t] for t in types)
                    progress(f"waiting for {want} deliveries")
                    waited = await all_received(pool, receiver, want)
                    written = await pool.fetch(
                        "SELECT event_id, written_at, at FROM opportunity_events"
                        " WHERE opportunity_id LIKE $1 AND type = ANY($2)",
                        f"{one.prefix}%",
                        types,
                    )
                    counted = await pool.fetchrow(
                        "SELECT delivered, (SELECT count(*) FROM subscription_deliveries d"
                        " WHERE d.subscription_id = s.subscription_id) AS pending,"
                        " (SELECT count(*) FROM subscription_deliveries d"
                        " WHERE d.subscription_id = s.subscription_id"
                        " AND d.parked_at IS NOT NULL) AS parked"
                        " FROM subscriptions s WHERE subscription_id = $1",
                        SUBSCRIPTION,
                    )
            finally:
                await receiver.stop()
    return report(n, k, c, poll, none, one, types, written, counted, receiver, waited)


def report(
    n: int, k: int, c: int, poll: float | None, none: Run, one: Run, types: list[str],
    written: list[Any], counted: Any, receiver: Receiver, waited: float,
) -> int:  # fmt: skip
    """Print the tables; 1 if the events written and those received differ."""
    sides = (none.side, one.side)
    print(f"{n} opportunities, {k} commands each, {c} in flight; delivery poll "
          f"{poll if poll is not None else 'default (0.25)'} s")  # fmt: skip
    print()
    print("| figure | no subscription | one subscription | one / none (goal) |")
    print("| --- | --- | --- | --- |")
    print_ratios(side_by_side(sides, n, k))

    by_id = {row["event_id"]: row for row in written}
    expected, got = set(by_id), set(receiver.arrived)
    missing, extra = expected - got, got - expected
    stamps = [row["written_at"].timestamp() for row in written]
    first, last = (min(stamps), max(stamps)) if stamps else (0.0, 0.0)
    last_received = max(receiver.arrived.values(), default=0.0)
    lag = [receiver.arrived[e] - by_id[e]["written_at"].timestamp() for e in expected & got]
    span = one.commands_to - one.commands_from
    steady_from = one.commands_from + STEADY * span
    steady_to = one.commands_to - STEADY * span
    steady = [
        receiver.arrived[e] - by_id[e]["written_at"].timestamp()
        for e in expected & got
        if steady_from <= by_id[e]["written_at"].timestamp() <= steady_to
    ]
    from_at = [
        receiver.arrived[e] - by_id[e]["at"].timestamp()
        for e in expected & got
        if steady_from <= by_id[e]["written_at"].timestamp() <= steady_to
    ]
    print()
    print("| deliveries (one subscription) | value |")
    print("| --- | --- |")
    print(f"| event types subscribed (process `{PROCESS}`) | "
          + ", ".join(f"{t} ({one.events_written[t]:,})" for t in types) + " |")  # fmt: skip
    print(f"| events written / delivered (distinct) | {len(expected):,} / {len(got):,} |")
    print(f"| deliveries received (duplicates) | {receiver.deliveries:,} "
          f"({receiver.deliveries - len(got):,}); bad signatures {receiver.bad} |")  # fmt: skip
    print(f"| subscription's count: delivered / pending / parked | {counted['delivered']:,} / "
          f"{counted['pending']:,} / {counted['parked']:,} |")  # fmt: skip
    if last > first:
        rate = len(expected) / (last - first)
        print(f"| events written/s (first to last written) | {fmt(rate)} |")
    if last_received > first:
        print(f"| events delivered/s (first written to last received) | "
              f"{fmt(len(got) / (last_received - first))} |")  # fmt: skip
    print(f"| lag at steady state, ms p50 / p99 / max (received - `written_at`; "
          f"{len(steady):,} events) | {quantiles(steady)} |")  # fmt: skip
    print(f"| lag over every event, ms p50 / p99 / max (received - `written_at`) | "
          f"{quantiles(lag)} |")  # fmt: skip
    print(f"| lag at steady state from the command, ms p50 / p99 / max (received - `at`) | "
          f"{quantiles(from_at)} |")  # fmt: skip
    print(
        f"| last delivery after the load's end (s) | "
        f"{fmt(max(0.0, last_received - one.commands_to), 2)} (waited {fmt(waited, 1)}) |"
    )
    other = ", ".join(f"{s.name} {p} {s.others[p]:.1f} of {s.seconds[p]:.0f} s"
                     for s in sides for p in ("opening", "commands"))  # fmt: skip
    print()
    print(f"CPU s other processes took during the phases: {other}")
    wrong = bool(missing or extra or receiver.bad or counted["pending"] or counted["parked"])
    if wrong:
        print(
            f"FAILED: {len(expected):,} events written, {len(got):,} received: "
            f"{len(missing):,} missing (e.g. {sorted(missing)[:3]}), {len(extra):,} not "
            f"written by the fleet (e.g. {sorted(extra)[:3]}); {receiver.bad} bad signatures; "
            f"{counted['pending']} pending, {counted['parked']} parked",
            file=sys.stderr,
        )
        return 1
    print(f"events written = events delivered: {len(expected):,} (exact)")
    return 0


def fleet_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options of a bench that runs the fleet's ours side with and without a feature:
    its size, calls in flight, and the command of our worker."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--opportunities", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=5)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument(
        "--ours-worker",
        default=str(Path(sys.executable).parent / "opportunities-worker"),
        help="the command that runs our worker (a variant of it, say)",
    )
    return parser


if __name__ == "__main__":
    parser = fleet_parser(__doc__)
    parser.add_argument(
        "--poll", type=float, help="OPPORTUNITIES_DELIVERY_POLL for the workers (default: 0.25)"
    )
    arguments = parser.parse_args()
    status = asyncio.run(
        main(arguments.opportunities, arguments.commands, arguments.in_flight,
             arguments.poll, shlex.split(arguments.ours_worker))
    )  # fmt: skip
    sys.exit(status)
