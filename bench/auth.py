"""What enforced authorization costs the fleet: `bench.fleet`'s "ours" side with every
command and start signed and verified (`enforce`) against the same fleet unsigned with
authorization `off`, and what one token costs to sign and to verify.

`bench.fleet`'s "ours" side runs twice on the same fresh servers, each time with a fleet of
its own (opportunities `a-f<n>` and `b-f<n>` of the process `bench`), on a task queue of its
own, served by an `opportunities-worker` process of its own (started for its side, stopped
after it):

- **off**: no mode recorded (authorization off), nothing signed: `bench.fleet` as it runs;
- **enforce**: the mode `enforce` recorded (in effect at once) once `off` is done, then the
  side's worker started; every start and command signed by a manager's key (the typed
  client's `SigningInterceptor` on the raw client `bench.fleet` sends with), the manager's
  role granted every command on every opportunity.

The keys, users and permissions are written with no delay, before either side runs, so both
workers load the same directory; only the mode differs. Before its fleet, the enforce side
checks that enforce is in effect on a canary opportunity: an unsigned command is refused
`unauthenticated`, one signed by a user without a role `forbidden`, the manager's applied.

Each side opens N opportunities, then sends each K `change_owner` commands, alternately
update and signal, C in flight (`bench.fleet`'s phases, figures and CPU readings; the
delivery worker at the service's defaults, as `bench.events` runs it). Every command must be
applied: no update refused, no signal in a `state.rejected` (queried), every opportunity's
owner the last one sent, and, under enforce, every `owner_changed` event made `by` the
manager (the verified actor). The run fails (exit code 1) otherwise.

Then, in this process, with the directory the workers loaded: `sales.tokens.sign` and
`sales.tokens.verify` timed one call at a time over tokens shaped like the fleet's commands,
and the parts of a verification (the key made from its JWK, the payload's canonical hash, the
JWS decoded with a key made once).

`off` runs first, so `enforce` runs on a server that holds N more workflows: any drift
counts against enforce.

    .venv/bin/python -m bench.auth [--opportunities 1000] [--commands 5] [--in-flight 50]
                                   [--tokens 2000] [--ours-worker COMMAND]
"""

from __future__ import annotations

import asyncio
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import jwt
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from bench.engine import no_activity_on_entry
from bench.events import (
    TEST_SETTINGS,
    cpu_ms,
    fleet_parser,
    fleet_side,
    fmt,
    print_ratios,
    side_by_side,
)
from bench.fleet import (
    CACHE,
    DEADLINE,
    Cpu,
    Side,
    WorkerProcess,
    _server_pid,
    _stat,
    all_events,
    at_most,
    measured,
    percentile,
    progress,
    running,
    worker_env,
)
from bench.servers import local_servers_and_url
from runtime.signer import Signer
from runtime.workflow_ids import opportunity_workflow_id
from sales.authorization import Directory, PermissionRule, Permissions, SigningKey
from sales.tokens import ALGORITHM, START, args_sha256, audience, header_data, sign, verify
from starter.client import OpportunitiesClient
from store import authorization
from store.users import User, put_user

PROCESS = "bench"
MANAGER = "bench-manager"
NOBODY = "bench-nobody"
"""A user with a key and no role: the canary's command signed by it must be forbidden."""
PERMISSIONS = Permissions(rules=[PermissionRule(role="manager", commands=["*"], scope="all")])
NAMESPACE = "default"
STALL = 60.0
"""Seconds the rows may stay still, once everything is sent, before the wait gives up."""
DISTURBED = 0.1
"""Other processes' CPU seconds per second of a phase past which the figures are flagged."""
HISTORY_SAMPLE = 20
"""Workflows per side whose history bytes are counted."""
WORKER_VERIFICATIONS = 1.5
"""Verifications per command in the worker, alternately update and signal: an update's token
is verified by its validator and again by its handler, a signal's once as it arrives."""


@dataclass
class Run:
    """One side: its fleet, the client it sends with, and what its checks found."""

    side: Side
    prefix: str
    client: Client
    refused: Counter[str] = field(default_factory=Counter)
    """Updates refused, by code."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Signals in `state.rejected`, by code."""
    last_owner: int = 0
    """Opportunities whose read-model owner is the last one sent."""
    events_by: Counter[str] = field(default_factory=Counter)
    """The fleet's `owner_changed` events by their `by`."""
    history_bytes: float = 0.0
    """History bytes per workflow (opening and K commands), over a sample."""


async def until_rows(pool: asyncpg.Pool, sql: str, want: int, *args: Any) -> int:
    """Poll `sql` (a count) until it reaches `want`; give up (returning the count) after
    DEADLINE seconds or once it has not moved for STALL seconds."""
    started = shown = moved = time.monotonic()
    last = -1
    while (got := await pool.fetchval(sql, *args)) < want:
        now = time.monotonic()
        if got != last:
            last, moved = got, now
        if now - started > DEADLINE or now - moved > STALL:
            progress(f"  gave up: {got}/{want} rows ({now - moved:.0f} s without a new one)")
            return int(got)
        if now - shown >= 10:
            progress(f"  {got}/{want} rows")
            shown = now
        await asyncio.sleep(0.1)
    return int(got)


def refusal_code(failed: WorkflowUpdateFailedError) -> str:
    """The rejection code of a refused update (its message begins with it)."""
    cause = failed.cause
    if isinstance(cause, ApplicationError):
        return cause.message.partition(":")[0]
    return f"{type(cause).__name__}: {cause}"[:80]


async def open_fleet(pool: asyncpg.Pool, run: Run, n: int, c: int) -> None:
    """`bench.events.open_fleet`, by the side's client (signing under enforce)."""
    side = run.side

    async def start(i: int) -> None:
        start = {"opportunity_id": f"{run.prefix}f{i}", "contact_id": "c-bench",
                 "process_id": PROCESS}  # fmt: skip
        await run.client.start_workflow(
            side.workflow, start, id=side.workflow_id(i), task_queue=side.queue
        )

    await at_most(c, n, start)
    await until_rows(pool, side.opened_sql, n)


async def command_fleet(pool: asyncpg.Pool, run: Run, n: int, k: int, c: int) -> None:
    """`bench.fleet.command_fleet` by the side's client, an update refused counted by its
    code (the fleet goes on) instead of ending the run."""
    side = run.side
    turns = [asyncio.Lock() for _ in range(n)]

    async def send(m: int) -> None:
        round_, i = divmod(m, n)
        handle = run.client.get_workflow_handle(side.workflow_id(i))
        command = {"owner": f"o{round_}", "request_id": f"f{i}-{round_}"}
        async with turns[i]:
            if (round_ + i) % 2:
                await handle.signal("change_owner", command)
                return
            started = time.perf_counter()
            try:
                await handle.execute_update("change_owner", command)
            except WorkflowUpdateFailedError as failed:
                run.refused[refusal_code(failed)] += 1
                return
            side.latencies.append((time.perf_counter() - started) * 1000)

    await at_most(c, n * k, send)
    await until_rows(pool, side.applied_sql, n, f"o{k - 1}")


async def check_fleet(client: Client, pool: asyncpg.Pool, run: Run, n: int, k: int, c: int) -> None:
    """While the side's worker runs: the rejections its opportunities keep, their owners,
    and who their `owner_changed` events name."""
    typed = OpportunitiesClient(client, run.side.queue)

    async def rejections(i: int) -> None:
        state = await typed.state(f"{run.prefix}f{i}")
        run.rejected.update(rejection.code for rejection in state.rejected)

    await at_most(c, n, rejections)
    run.last_owner = await pool.fetchval(run.side.applied_sql, f"o{k - 1}")
    rows = await pool.fetch(
        "SELECT coalesce(data->>'by', '(none)') AS by, count(*) FROM opportunity_events"
        " WHERE opportunity_id LIKE $1 AND type = 'owner_changed' GROUP BY 1",
        f"{run.prefix}f%",
    )
    run.events_by = Counter({row["by"]: row["count"] for row in rows})


async def history_bytes(client: Client, run: Run, n: int) -> None:
    step = max(1, n // HISTORY_SAMPLE)
    sample = sorted({min(n - 1, j * step) for j in range(min(n, HISTORY_SAMPLE))})
    total = 0
    for i in sample:
        events = await all_events(client, run.side.workflow_id(i))
        total += sum(event.ByteSize() for event in events)
    run.history_bytes = total / len(sample)


async def new_signer(pool: asyncpg.Pool, user: str, roles: list[str]) -> Signer:
    """A user with `roles` and a key of their own, both in effect at once."""
    await put_user(pool, User(user_id=user, name=user, roles=roles), roles_delay=timedelta(0))
    signer = Signer.generate(f"{user}-key", user)
    await authorization.add_key(
        pool, SigningKey(kid=signer.kid, user_id=user, public_jwk=signer.public_jwk,
                         usable_from=datetime.now(UTC)),
        by="bench", delay=timedelta(0),
    )  # fmt: skip
    return signer


async def canary(
    client: Client, pool: asyncpg.Pool, queue: str, manager: Signer, nobody: Signer
) -> list[str]:
    """Enforce is in effect on the enforce side's worker: a signed start opens, an unsigned
    command is refused `unauthenticated`, one by a user without a role `forbidden`, the
    manager's applied. What was found, one line each; `RuntimeError` if anything differs."""
    opportunity = "canary"
    signed = OpportunitiesClient(client, queue, signer=manager).temporal
    handle = await signed.start_workflow(
        "Opportunity",
        {"opportunity_id": opportunity, "contact_id": "c-bench", "process_id": PROCESS},
        id=opportunity_workflow_id(opportunity),
        task_queue=queue,
    )
    deadline = time.monotonic() + 60
    sql = "SELECT count(*) FROM opportunities WHERE opportunity_id = $1"
    while not await pool.fetchval(sql, opportunity):
        status = (await handle.describe()).status
        if status not in (None, WorkflowExecutionStatus.RUNNING) or time.monotonic() > deadline:
            raise RuntimeError(f"the canary's signed start did not open it ({status})")
        await asyncio.sleep(0.2)
    found = ["signed start: opened"]
    for who, sender, want in (
        ("unsigned", client, "unauthenticated"),
        (f"signed by {NOBODY} (no role)", OpportunitiesClient(client, queue,
                                                              signer=nobody).temporal,
         "forbidden"),
        (f"signed by {MANAGER}", signed, "applied"),
    ):  # fmt: skip
        command = {"owner": "final", "request_id": f"canary-{want}"}
        try:
            await sender.get_workflow_handle(handle.id).execute_update("change_owner", command)
            got = "applied"
        except WorkflowUpdateFailedError as failed:
            got = refusal_code(failed)
        found.append(f"{who}: {got}")
        if got != want:
            raise RuntimeError(f"enforce is not in effect: canary command {who}: {got}, "
                               f"expected {want}")  # fmt: skip
    return found


def quietly(env: dict[str, str]) -> dict[str, str]:
    """The service's delivery defaults (as `bench.events` runs them), and no mode recorded
    by a `SALES_AUTH` this shell may hold."""
    for name in (*TEST_SETTINGS, "SALES_AUTH"):
        env.pop(name, None)
    return env


def timed(count: int, call: Callable[[int], object]) -> list[float]:
    """Microseconds of each `call(i)`, i in range(count), after a warm-up."""
    for i in range(min(count, 50)):
        call(i)
    spent = []
    for i in range(count):
        started = time.perf_counter_ns()
        call(i)
        spent.append((time.perf_counter_ns() - started) / 1000)
    return spent


def token_costs(directory: Directory, signer: Signer, count: int) -> dict[str, Any]:
    """Sign and verify `count` tokens shaped like the fleet's commands, one call at a time,
    and the parts of a verification."""
    aud = audience(NAMESPACE)

    def command(i: int) -> tuple[str, dict[str, str]]:
        round_, n = divmod(i, 1000)
        wid = f"{opportunity_workflow_id('b-')}f{n}"
        return wid, {"owner": f"o{round_}", "request_id": f"f{n}-{round_}"}

    def signed(i: int) -> str:
        wid, payload = command(i)
        return sign(signer.private_key, signer.kid, sub=signer.sub, aud=aud, wid=wid,
                    cmd="change_owner", payload=payload, jti=payload["request_id"],
                    now=datetime.now(UTC))  # fmt: skip

    signing = timed(count, signed)
    tokens = [signed(i) for i in range(count)]
    at = datetime.now(UTC)

    def verified(i: int) -> None:
        wid, payload = command(i)
        actor = verify(tokens[i], directory, at=at, aud=aud, wid=wid, cmd="change_owner",
                       payload=payload, jti=payload["request_id"])  # fmt: skip
        assert actor.sub == signer.sub and actor.verified

    verifying = timed(count, verified)
    start = {"opportunity_id": "b-f0", "contact_id": "c-bench", "process_id": PROCESS}
    start_token = sign(signer.private_key, signer.kid, sub=signer.sub, aud=aud,
                       wid=f"{opportunity_workflow_id('b-')}f0", cmd=START, payload=start,
                       jti=None, now=at)  # fmt: skip
    key = directory.keys[signer.kid]
    public = jwt.PyJWK(key.public_jwk, algorithm=ALGORITHM).key
    return {
        "sign": signing,
        "verify": verifying,
        "jwk": timed(count, lambda i: jwt.PyJWK(key.public_jwk, algorithm=ALGORITHM).key),
        "decode": timed(
            count,
            lambda i: jwt.decode(
                tokens[i],
                public,
                algorithms=[ALGORITHM],
                audience=aud,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            ),
        ),
        "hash": timed(count, lambda i: args_sha256(command(i)[1])),
        "header": timed(count, lambda i: jwt.get_unverified_header(tokens[i])),
        "command bytes": statistics.mean(len(header_data(token)) for token in tokens),
        "start bytes": len(header_data(start_token)),
    }


def us(values: list[float]) -> str:
    return f"{fmt(statistics.median(values), 0)} / {fmt(percentile(values, 0.99), 0)}"


async def main(n: int, k: int, c: int, tokens: int, ours_worker: list[str]) -> int:
    async with local_servers_and_url(no_activity_on_entry) as (pool, env, url):
        client = env.client
        address = client.service_client.config.target_host
        # The runner as this shell sets it (default: no sandbox), the same for both sides.
        sandbox = os.environ.get("OPPORTUNITIES_WORKFLOW_SANDBOX", "off").lower() == "on"
        manager = await new_signer(pool, MANAGER, ["manager"])
        nobody = await new_signer(pool, NOBODY, [])
        await authorization.apply_permissions(pool, PERMISSIONS, by="bench", delay=timedelta(0))
        with tempfile.TemporaryDirectory() as logs:

            def run_of(name: str, prefix: str, sender: Client) -> Run:
                queue = f"bench-auth-{name}"
                env = quietly(worker_env(address, url, queue, CACHE, sandbox))
                worker = WorkerProcess(ours_worker, env, Path(logs) / f"{name}.log")
                return Run(fleet_side(name, prefix, worker, queue), prefix, sender)

            off = run_of("off", "a-", client)
            signed = OpportunitiesClient(client, signer=manager).temporal
            enforce = run_of("enforce", "b-", signed)
            server = _server_pid(address.rpartition(":")[2])
            postmaster = int(_stat(f"/proc/{await pool.fetchval('SELECT pg_backend_pid()')}"
                                   "/stat")[1])  # fmt: skip
            found: list[str] = []
            for run in (off, enforce):
                side = run.side
                if run is enforce:
                    await authorization.record_mode(pool, "enforce", delay=timedelta(0))
                    progress("authorization mode enforce recorded, in effect now")
                async with running(side.worker):
                    progress(f"{side.name}: worker pid {side.worker.pid}")
                    if run is enforce:
                        found = await canary(client, pool, side.queue, manager, nobody)
                        progress("canary: " + "; ".join(found))
                    cpu = Cpu({side.name: side.worker.pid}, server, postmaster)
                    await measured(side, "opening", cpu, None, open_fleet(pool, run, n, c))
                    await measured(side, "commands", cpu, None,
                                   command_fleet(pool, run, n, k, c))  # fmt: skip
                    progress(f"{side.name}: checking every opportunity's rejections")
                    await check_fleet(client, pool, run, n, k, c)
            for run in (off, enforce):
                await history_bytes(client, run, n)
            directory = await authorization.load_directory(pool)
            starts = await pool.fetchrow(
                "SELECT count(*) FILTER (WHERE verified) AS verified, count(*) AS all"
                " FROM opportunity_history WHERE source = 'start' AND opportunity_id LIKE 'b-f%'"
            )
    progress(f"timing {tokens} tokens in this process")
    costs = token_costs(directory, manager, tokens)
    return report(n, k, c, tokens, off, enforce, costs, found, starts)


def report(
    n: int, k: int, c: int, tokens: int, off: Run, enforce: Run, costs: dict[str, Any],
    canary_found: list[str], starts: Any,
) -> int:  # fmt: skip
    """Print the tables; 1 if any command was not applied."""
    sides = (off.side, enforce.side)
    print(f"{n} opportunities, {k} commands each (alternately update and signal), "
          f"{c} in flight")  # fmt: skip
    print()
    print("| figure | off | enforce | enforce / off (goal) |")
    print("| --- | --- | --- | --- |")
    rows = side_by_side(sides, n, k)
    rows.append((f"history bytes per opportunity (opening + {k} commands; "
                 f"{HISTORY_SAMPLE} sampled)", [off.history_bytes, enforce.history_bytes],
                 ""))  # fmt: skip
    print_ratios(rows)

    verify_mean = statistics.mean(costs["verify"])
    worker_off, worker_enforce = (cpu_ms(s, "commands", n * k)["worker"] for s in sides)
    print()
    print(f"| a token, in this process ({tokens:,} shaped like the fleet's commands) "
          "| p50 / p99 (µs) |")  # fmt: skip
    print("| --- | --- |")
    print(f"| `sales.tokens.sign` (the client, per command and per start) | {us(costs['sign'])} |")
    print(f"| `sales.tokens.verify` (the worker) | {us(costs['verify'])} |")
    print(f"| of which: the public key made from its JWK (`jwt.PyJWK`) | {us(costs['jwk'])} |")
    print(f"| of which: the JWS decoded and its ES256 signature checked (`jwt.decode`, key made "
          f"once) | {us(costs['decode'])} |")  # fmt: skip
    print(f"| of which: the header read (`jwt.get_unverified_header`) | {us(costs['header'])} |")
    print(f"| of which: the payload's RFC 8785 hash (`args_sha256`) | {us(costs['hash'])} |")
    print(f"| header bytes: a command / a start | {fmt(costs['command bytes'], 0)} / "
          f"{costs['start bytes']} |")  # fmt: skip
    print(f"| verifications per command in the worker (update: validator and handler; signal: "
          f"once) | {WORKER_VERIFICATIONS} |")  # fmt: skip
    print(f"| worker CPU per command, verifying (mean x {WORKER_VERIFICATIONS}) / measured "
          f"enforce - off (ms) | {fmt(verify_mean * WORKER_VERIFICATIONS / 1000, 2)} / "
          f"{fmt(worker_enforce - worker_off, 2)} |")  # fmt: skip

    print()
    print("| every command applied | off | enforce |")
    print("| --- | --- | --- |")

    def codes(counter: Counter[str]) -> str:
        return ", ".join(f"{code} {count:,}" for code, count in counter.most_common()) or "0"

    runs = (off, enforce)
    print("| updates refused | " + " | ".join(codes(r.refused) for r in runs) + " |")
    print("| signals rejected (`state.rejected`) | "
          + " | ".join(codes(r.rejected) for r in runs) + " |")  # fmt: skip
    print(f"| owner is the last sent (o{k - 1}) | "
          + " | ".join(f"{r.last_owner:,} of {n:,}" for r in runs) + " |")  # fmt: skip
    print("| `owner_changed` events, by `by` | "
          + " | ".join(codes(r.events_by) for r in runs) + " |")  # fmt: skip
    print(f"| the canary (enforce) | | {'; '.join(canary_found)} |")
    print(f"| start history entries with a verified actor (enforce; not checked) | | "
          f"{starts['verified']:,} of {starts['all']:,} |")  # fmt: skip
    other = ", ".join(f"{s.name} {p} {s.others[p]:.1f} of {s.seconds[p]:.0f} s"
                     for s in sides for p in ("opening", "commands"))  # fmt: skip
    print()
    print(f"CPU s other processes took during the phases: {other}")
    busy = [f"{s.name} {p}" for s in sides for p in ("opening", "commands")
            if s.others[p] > DISTURBED * s.seconds[p]]  # fmt: skip
    if busy:
        print(f"WARNING: other processes took CPU during {', '.join(busy)}: the ratios are "
              "disturbed; run again on a quiet machine")  # fmt: skip

    problems = []
    for run, by in ((off, "(none)"), (enforce, MANAGER)):
        name = run.side.name
        if run.refused or run.rejected:
            problems.append(f"{name}: updates refused {codes(run.refused)}, signals rejected "
                            f"{codes(run.rejected)}")  # fmt: skip
        if run.last_owner != n:
            problems.append(f"{name}: {run.last_owner} of {n} opportunities show owner o{k - 1}")
        if run.events_by != Counter({by: n * k}):
            problems.append(f"{name}: owner_changed events by {codes(run.events_by)}, "
                            f"expected {by} {n * k:,}")  # fmt: skip
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"every command applied on both sides: {n * k:,} each; under enforce every one by "
          f"{MANAGER}, verified")  # fmt: skip
    return 0


if __name__ == "__main__":
    parser = fleet_parser(__doc__)
    parser.add_argument("--tokens", type=int, default=2000, help="tokens timed in this process")
    arguments = parser.parse_args()
    status = asyncio.run(
        main(arguments.opportunities, arguments.commands, arguments.in_flight,
             arguments.tokens, shlex.split(arguments.ours_worker))
    )  # fmt: skip
    sys.exit(status)
