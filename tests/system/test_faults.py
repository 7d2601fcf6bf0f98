"""Faults with exact counts at the end: nothing lost, nothing doubled.

500 mixed commands over 50 opportunities, one sender each, while a worker process is killed
with SIGKILL mid-run: one of three on the task queue (the other two finish the work), or the
only one (a new process is started in its place). The body, `run_mixed_commands`, is shared
with the outage tests (tests/support/mixed_commands.py).
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client

from starter.client import OpportunitiesClient
from tests.support.mixed_commands import Workers, run_mixed_commands
from tests.support.servers import Servers

pytestmark = pytest.mark.usefixtures("verified")

OPPORTUNITIES = 50


@pytest.mark.parametrize(
    ("processes", "restart"),
    [
        pytest.param(3, False, id="three-workers-one-killed"),
        pytest.param(1, True, id="one-worker-killed-and-restarted"),
    ],
)
async def test_worker_killed_mid_run(
    client: Client,
    pool: asyncpg.Pool,
    servers: Servers,
    task_queue: str,
    tmp_path: Path,
    uid: str,
    processes: int,
    restart: bool,
) -> None:
    async with Workers(task_queue, tmp_path) as workers:
        started = [await workers.start(servers) for _ in range(processes)]
        killed = started[0]

        async def recover() -> None:
            if restart:
                await killed.start()  # a new process in its place

        await run_mixed_commands(
            pool,
            OpportunitiesClient(client, task_queue),
            uid,
            count=OPPORTUNITIES,
            fault=killed.kill,
            recover=recover,
        )
        for process in started if restart else started[1:]:
            workers.assert_running(process)
