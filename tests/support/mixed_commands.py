"""Mixed commands from concurrent senders while a fault hits, with exact counts at the end:
the body shared by the crash-of-a-worker, Temporal-restart and PostgreSQL-outage tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.service import RPCError

from starter.client import OpportunitiesClient
from starter.client.verify import verify
from tests.support.helpers import eventually, setup_contact, setup_process, setup_references
from tests.support.servers import Servers
from tests.support.worker_process import WorkerProcess, worker_env

BEFORE_FAULT = 5
"""Each sender sends this many of its script's signals, then waits for the fault to hit and
sends the rest while it lasts or after it: commands are sent before, during and after."""


def script(uid: str) -> list[tuple[str, dict[str, Any]]]:
    """Ten commands per opportunity, as signals in this order, each with a request id; the
    fifth is sent twice (a client retry)."""
    commands: list[tuple[str, dict[str, Any]]] = [
        ("change_owner", {"owner": "ann"}),
        ("perform_actions", {"action_ids": ["welcome-letter", "seminar"]}),
        # The last open action of Prospect: the opportunity advances to Needs analysis,
        # where fact-finder's activity is created on entry.
        ("complete_actions", {"action_ids": ["intro-call"], "outcome": "Met"}),
        ("change_owner", {"owner": "bob"}),
        ("change_stage", {"stage": "Proposal"}),
        ("change_stage", {"stage": "Proposal"}),  # the same request again
        ("add_action", {"stage": "Proposal", "action": {
            "action_id": "x", "type": "calendar", "title": "Extra", "activity": {"kind": "call"}}}),
        ("perform_actions", {"action_ids": ["x"]}),
        ("complete_actions", {"action_ids": ["x"], "outcome": "Done"}),
        ("change_owner", {"owner": "carol"}),
        ("change_owner", {"owner": "dave"}),
    ]  # fmt: skip
    numbered = []
    for n, (name, payload) in enumerate(commands):
        number = n if n < 5 else n - 1  # the repeat keeps the fifth's request id
        numbered.append((name, {**payload, "request_id": f"{uid}-{number}"}))
    return numbered


def opportunity_ids(uid: str, count: int) -> list[str]:
    return [f"f-{uid}-{n:02d}" for n in range(count)]


@dataclass
class Run:
    progress_at_fault: int
    """Stage moves past the opening (two per opportunity at the end, both among the commands
    sent before the fault; notes not counted) when the fault hit."""
    resent: int
    """Signals sent again because the first try failed."""


async def run_mixed_commands(
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
    *,
    count: int,
    fault: Callable[[], Awaitable[None]],
    recover: Callable[[], Awaitable[None]],
    resend: bool = False,
    finish_seconds: float = 180,
) -> Run:
    """Open `count` opportunities and send each its `script()` from a sender of its own; once
    the work is under way, `fault()`, let the senders go on, `recover()`; then assert the
    exact counts: every command applied once, in order, every effect there once.

    With `resend`, a sender whose signal fails sends the same command (same request id)
    again until it is accepted, as a backend does; without, a failed signal fails the test.
    """
    process_id = await setup_process(pool, uid)
    await setup_references(pool, uid)
    contact_id = await setup_contact(
        pool, uid, street="1 Main St", postal_code="10001", city="Springfield"
    )
    ids = opportunity_ids(uid, count)
    pattern = f"f-{uid}-%"
    for start in range(0, count, 25):
        await asyncio.gather(*(
            opportunities.create(contact_id, opportunity_id=i, process_id=process_id)
            for i in ids[start:start + 25]
        ))  # fmt: skip

    hit = asyncio.Event()
    resent = 0

    async def send(opportunity_id: str, name: str, payload: dict[str, Any]) -> None:
        nonlocal resent
        while True:
            try:
                await opportunities.handle(opportunity_id).signal(name, payload)
                return
            except RPCError:
                if not resend:
                    raise
                resent += 1
                await asyncio.sleep(0.5)

    async def send_all(opportunity_id: str) -> None:
        for n, (name, payload) in enumerate(script(opportunity_id)):
            if n == BEFORE_FAULT:
                await hit.wait()
            await send(opportunity_id, name, payload)

    sending = asyncio.gather(*(send_all(i) for i in ids))

    async def progress() -> int:
        return int(
            await pool.fetchval(
                "SELECT count(*) FROM opportunity_history"
                " WHERE opportunity_id LIKE $1 AND seq > 1 AND source <> 'note'",
                pattern,
            )
        )

    async def under_way() -> bool:
        return await progress() >= 2 * count // 5

    async def finished() -> bool:
        done = await pool.fetchval(
            "SELECT count(*) FROM opportunities WHERE opportunity_id LIKE $1 AND owner = 'dave'",
            pattern,
        )
        return bool(done == count)

    try:
        await eventually(under_way, seconds=60)
        progress_at_fault = await progress()
        await fault()
        assert progress_at_fault < 2 * count, "the work was under way when the fault hit"
        hit.set()
        await recover()
        await sending
    finally:
        if not sending.done():
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
    await eventually(finished, seconds=finish_seconds)

    for opportunity_id in ids:
        state = await opportunities.state(opportunity_id)
        assert state.applied_request_ids == [f"{opportunity_id}-{n}" for n in range(10)]
        assert state.current_stage == "Proposal" and state.rejected == []
    history = await pool.fetch(
        "SELECT source, to_stage, count(*) AS n FROM opportunity_history"
        " WHERE opportunity_id LIKE $1 GROUP BY 1, 2 ORDER BY 1, 2",
        pattern,
    )
    assert [tuple(r) for r in history] == [
        ("automatic", "Needs analysis", count),
        ("manual", "Proposal", count),
        # A note for each command that moves no stage (or before the advance it causes).
        ("note", "Needs analysis", count),
        ("note", "Proposal", 5 * count),
        ("note", "Prospect", 3 * count),
        ("start", "Prospect", count),
    ]
    activities = await pool.fetch(
        "SELECT action_id, status, outcome, count(*) AS n FROM calendar_activities"
        " WHERE opportunity_id LIKE $1 GROUP BY 1, 2, 3 ORDER BY 1",
        pattern,
    )
    assert [tuple(r) for r in activities] == [
        ("fact-finder", "active", None, count),
        ("intro-call", "done", "Met", count),
        ("x", "done", "Done", count),
    ]
    letters = await pool.fetchval(
        "SELECT count(*) FROM letters WHERE opportunity_id LIKE $1", pattern
    )
    assert letters == count
    # One contact for all of them: invited once, the others told it is already invited.
    invited = await pool.fetchval(
        "SELECT count(*) FROM event_invitees WHERE opportunity_id LIKE $1", pattern
    )
    assert invited == 1
    for opportunity_id in ids:  # and the workflows agree with the read model, field by field
        verdict = await verify(opportunities, pool, opportunity_id)
        assert verdict.compared and verdict.differences == [], verdict
    return Run(progress_at_fault=progress_at_fault, resent=resent)


class Workers:
    """`opportunities-worker` processes of one test, on its task queue; stopped when the
    `async with` block ends."""

    def __init__(self, task_queue: str, logs: Path) -> None:
        self.task_queue = task_queue
        self.logs = logs
        self.processes: list[WorkerProcess] = []

    async def start(self, servers: Servers) -> WorkerProcess:
        log = self.logs / f"worker-{len(self.processes)}.log"
        env = worker_env(servers.temporal_address, servers.database_url, self.task_queue)
        process = WorkerProcess.opportunities_worker(env, log)
        await process.start()
        self.processes.append(process)
        return process

    def assert_running(self, process: WorkerProcess) -> None:
        """The process has not exited by itself (its log is the failure message)."""
        assert process.process is not None
        assert process.process.returncode is None, (
            f"the worker exited with code {process.process.returncode}:\n"
            + process.log.read_text(errors="replace")[-5000:]
        )

    async def __aenter__(self) -> Workers:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in self.processes:
            await process.stop()
