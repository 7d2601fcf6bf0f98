"""Several workers: two worker processes on one task queue, one Temporal server and one
PostgreSQL take a fleet's load, and one of them is killed (SIGKILL) mid-load.

60 opportunities each get `tests/support/mixed_commands.py`'s script (owner changes, perform,
complete with the stage advancing by itself, stage changes, an action added, performed and
completed, a resent command: 11 signals, 10 distinct commands) from a sender of their own.
Both workers have taken work when one of them dies (their metrics then, and the workflow
tasks each completed before the kill, by its identity in the histories); the other one
carries on alone, taking over the opportunities the dead one ran. At the end every command
is applied once and in order, every history entry and read-model row is there exactly once
(`run_mixed_commands`), and `opportunities verify --all` is clean.

The test runs in a Temporal namespace and a database of its own, so that `verify --all`
sees exactly the opportunities it opened, whatever else the session runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

import store
from starter.client import OpportunitiesClient
from store.schema import migrate
from tests.support.helpers import add_users, register_search_attributes
from tests.support.mixed_commands import opportunity_ids, run_mixed_commands
from tests.support.servers import Cli, Servers
from tests.support.worker_process import WorkerProcess, worker_env

pytestmark = pytest.mark.usefixtures("verified")

OPPORTUNITIES = 60
TOOK_WORK = (
    "temporal_workflow_task_execution_latency_count",
    "temporal_activity_execution_latency_count",
)
"""A worker has taken work when its metrics count workflow tasks and activities it ran."""
WORK_COUNTERS = (*TOOK_WORK, "opportunities_commands")
"""Shown in the test's output: also the commands its workflow tasks had answered (applied,
duplicate or rejected; a command is answered once its read-model write is back)."""
GRACE = timedelta(seconds=1)
"""How much later than the kill the server may record a reply the dead worker had sent."""


@dataclass
class Own:
    """A Temporal namespace and a database of this test's own."""

    namespace: str
    temporal: Client
    pool: asyncpg.Pool
    database_url: str


@pytest.fixture
async def own(client: Client, pool: asyncpg.Pool, postgres_url: str) -> AsyncIterator[Own]:
    name = f"workers-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86_400)
        )
    )
    await pool.execute(f'CREATE DATABASE "{name}"')
    database_url = postgres_url.replace("/opportunities?", f"/{name}?")
    own_pool = await store.create_pool(database_url)
    await migrate(own_pool)  # the setup step: workers do not migrate
    await add_users(own_pool, "ann", "bob", "carol", "dave")  # the script's owners

    await register_search_attributes(client, name)
    temporal = await Client.connect(
        client.service_client.config.target_host,
        namespace=name,
        data_converter=pydantic_data_converter,
    )
    try:
        yield Own(name, temporal, own_pool, database_url)
    finally:
        await own_pool.close()


def identity(worker: WorkerProcess) -> str:
    """The identity a worker process reports to Temporal: the SDK's default, `pid@host`."""
    return f"{worker.pid}@"


async def completed_tasks(temporal: Client, workflow_id: str) -> list[tuple[str, datetime]]:
    """(identity, time) of each workflow task completed in the workflow's history."""
    completed = []
    async for event in temporal.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            attributes = event.workflow_task_completed_event_attributes
            completed.append((attributes.identity, event.event_time.ToDatetime(tzinfo=UTC)))
    return completed


async def test_two_workers_one_killed_mid_load_apply_every_command_once(
    own: Own, servers: Servers, task_queue: str, tmp_path: Path, uid: str
) -> None:
    env = worker_env(servers.temporal_address, own.database_url, task_queue)
    env["TEMPORAL_NAMESPACE"] = own.namespace
    workers = [WorkerProcess.opportunities_worker(env, tmp_path / f"worker-{n}.log") for n in "ab"]
    killed, survivor = workers
    at_kill: dict[str, dict[str, float]] = {}
    killed_at: datetime | None = None

    async def kill_one() -> None:
        nonlocal killed_at
        for name, worker in zip("ab", workers, strict=True):
            samples = await worker.metrics()
            at_kill[name] = {counter: samples.get(counter, 0.0) for counter in WORK_COUNTERS}
        await killed.kill()
        killed_at = datetime.now(UTC)

    async def carry_on() -> None:
        """Nothing: the survivor takes the dead worker's opportunities over by itself."""

    try:
        await asyncio.gather(*(worker.start() for worker in workers))
        run = await run_mixed_commands(
            own.pool,
            OpportunitiesClient(own.temporal, task_queue),
            uid,
            count=OPPORTUNITIES,
            fault=kill_one,
            recover=carry_on,
            finish_seconds=90,
        )
        assert survivor.process is not None and survivor.process.returncode is None, (
            survivor.log.read_text(errors="replace")[-5000:]
        )

        # Both workers had taken work when one of them was killed: by their own metrics...
        for name, counters in at_kill.items():
            assert all(counters[c] > 0 for c in TOOK_WORK), (name, at_kill)
        # ... and by the workflow tasks each completed before the kill, by its identity in the
        # histories; the dead one completed none afterwards (but a reply it had already sent,
        # recorded a moment later), and the survivor took over opportunities it had run.
        assert killed_at is not None
        histories = [
            [(_whose(who, workers), at) for who, at in tasks]
            for tasks in await asyncio.gather(*(
                completed_tasks(own.temporal, f"opportunity-{opportunity_id}")
                for opportunity_id in opportunity_ids(uid, OPPORTUNITIES)
            ))
        ]  # fmt: skip
        before = Counter(who for tasks in histories for who, at in tasks if at < killed_at)
        after = Counter(who for tasks in histories for who, at in tasks if at >= killed_at)
        assert before["a"] > 0 and before["b"] > 0, before
        assert set(before) | set(after) <= {"a", "b"}, (before, after)
        late = [at for tasks in histories for who, at in tasks
                if who == "a" and at >= killed_at + GRACE]  # fmt: skip
        assert late == [], late
        taken_over = sum(
            any(who == "a" for who, _ in tasks)
            and any(who == "b" and at >= killed_at for who, at in tasks)
            for tasks in histories
        )
        assert taken_over > 0

        # And the command line's check over everything in this namespace and database.
        cli = Cli(servers, task_queue)
        cli.env["TEMPORAL_NAMESPACE"] = own.namespace
        cli.env["DATABASE_URL"] = own.database_url
        checked = await cli("verify", "--all")
        assert checked.code == 0 and checked.stderr == "", checked.stdout + checked.stderr
        assert checked.stdout.splitlines()[-1] == (
            f"{OPPORTUNITIES} compared, 0 with differences, 0 could not be checked"
        ), checked.stdout
        print(
            f"progress at the kill: {run.progress_at_fault} of {2 * OPPORTUNITIES} history "
            f"entries; workflow tasks completed before the kill {dict(before)}, after "
            f"{dict(after)}; {taken_over} opportunities taken over; metrics at the kill {at_kill}"
        )
    finally:
        for worker in workers:
            await worker.stop()


def _whose(who: str, workers: list[WorkerProcess]) -> str:
    """'a' or 'b', the worker of that identity (else the identity itself)."""
    for name, worker in zip("ab", workers, strict=True):
        if who.startswith(identity(worker)):
            return name
    return who
