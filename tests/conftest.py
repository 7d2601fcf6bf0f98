"""One real Temporal dev server and one real PostgreSQL for the whole session; a fresh task
queue, worker and ids for every test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import store
from activities.letters import Mailer
from runtime import codec_server, embedded, search_attributes
from runtime.codec import EncryptionCodec, Keyring
from starter.client import OpportunitiesClient
from store.schema import migrate
from tests.support.helpers import TEST_KEYS
from tests.support.servers import Cli, Inbox, Servers
from tests.support.worker_process import TEST_DELIVERY_ENV
from worker import build_worker

os.environ.update(TEST_DELIVERY_ENV)  # the CLI's commands and the in-process workers alike
# The in-process workers run unversioned: each test polls a task queue of its own, and
# registering hundreds of queues with a deployment version makes the server throttle the
# version's registrations. Worker Versioning runs where a deployment has it: the workers of
# the system tests (their own processes: `worker_env` leaves this out), `make run` in the
# walkthrough, and `tests/system/test_deploys.py`, which turns it on for its workers.
os.environ["OPPORTUNITIES_WORKER_VERSIONING"] = "off"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The system tests first: the longest ones start early, while another process takes
    the many short ones (`make test` runs two)."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/system/"))


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    datadir = tmp_path_factory.mktemp("pg") / "data"
    admin_uri, url = embedded.start_postgres(datadir, keep=False)
    asyncio.run(embedded.ensure_database(admin_uri))
    yield url


@pytest.fixture(scope="session")
def ui_port() -> int:
    return embedded.free_port()


@pytest.fixture(scope="session")
async def ui_codec(ui_port: int) -> AsyncIterator[str]:
    """The codec server the session's Temporal UI decodes payloads with (CORS for the UI)."""
    port = embedded.free_port()
    origins = [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]
    runner = await codec_server.start(
        EncryptionCodec(Keyring.parse(TEST_KEYS)), "127.0.0.1", port, origins, token=None
    )
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture(scope="session")
async def temporal_env(
    ui_codec: str, ui_port: int
) -> AsyncIterator[tuple[WorkflowEnvironment, int, int]]:
    http_port = embedded.free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=embedded.temporal_binary(),
        search_attributes=search_attributes.ALL,
        data_converter=pydantic_data_converter,
        ui=True,
        ui_port=ui_port,
        dev_server_startup_timeout=timedelta(seconds=60),  # two start at once on a busy machine
        dev_server_extra_args=[
            *("--http-port", str(http_port)),
            *("--ui-codec-endpoint", ui_codec),
            "--ui-disable-news-fetch",
        ],
    )
    yield env, http_port, ui_port
    await env.shutdown()


@pytest.fixture(scope="session")
async def pool(postgres_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await store.create_pool(postgres_url, max_size=20)
    await migrate(pool)
    await pool.executemany(
        "INSERT INTO users (user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(user_id, user_id.title()) for user_id in DIRECTORY],
    )
    yield pool
    await pool.close()


DIRECTORY = ["ann", "bob", "carol", "dave", "dora", "eve", "x", *(f"o{n}" for n in range(200))]
"""The tests' user directory: the users they name as owners and assignees (an owner must be a
user)."""


@pytest.fixture(scope="session")
def client(temporal_env: tuple[WorkflowEnvironment, int, int]) -> Client:
    return temporal_env[0].client


@pytest.fixture(scope="session")
def cli_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tests.support.cli_forks`: the `opportunities` commands of the session, each its own
    process, forked with the CLI already imported."""
    path = str(tmp_path_factory.mktemp("cli") / "forks.sock")
    server = subprocess.Popen(
        # a script, not `-m`: the commands name themselves `opportunities`, not a module
        [sys.executable, str(Path(__file__).parent / "support" / "cli_forks.py"), path],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert server.poll() is None, "the CLI's fork server did not start"
        assert time.monotonic() < deadline, "the CLI's fork server took over 60 s to start"
        time.sleep(0.05)
    yield path
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="session")
def servers(
    temporal_env: tuple[WorkflowEnvironment, int, int], postgres_url: str, cli_socket: str
) -> Servers:
    env, http_port, ui_port = temporal_env
    return Servers(
        temporal_address=env.client.service_client.config.target_host,
        http_port=http_port,
        ui_port=ui_port,
        database_url=postgres_url,
        cli_socket=cli_socket,
    )


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[Inbox, str]]:
    """A real SMTP server (aiosmtpd) on loopback, and its SMTP_URL."""
    inbox = Inbox()
    port = embedded.free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, f"smtp://127.0.0.1:{port}"
    controller.stop()


@pytest.fixture
def inbox(smtp: tuple[Inbox, str]) -> Inbox:
    return smtp[0]


@pytest.fixture
async def worker(
    client: Client, pool: asyncpg.Pool, task_queue: str, smtp: tuple[Inbox, str]
) -> AsyncIterator[Worker]:
    mailer = Mailer(smtp[1], "sales@example.com")
    async with build_worker(client, pool, task_queue, mailer) as running:
        yield running


@pytest.fixture
def opportunities(client: Client, task_queue: str, pool: asyncpg.Pool) -> OpportunitiesClient:
    """The typed client, on this test's task queue, searching the test database."""
    return OpportunitiesClient(client, task_queue)


@pytest.fixture
def uid() -> str:
    """A suffix that makes this test's ids its own."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
async def verified(client: Client, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """At the end of the module, every opportunity it started agrees with its read model
    (`opportunities verify`). Modules that run workflows use it with
    `pytestmark = pytest.mark.usefixtures("verified")`."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    yield
    from tests.support.helpers import verify_started_since

    differences = await verify_started_since(client, pool, since)
    assert differences == [], "the read model disagrees with the workflows"


@pytest.fixture
def cli(servers: Servers, task_queue: str, pool: asyncpg.Pool) -> Cli:
    """(`pool` makes sure the database is migrated, as a worker would have done.)"""
    return Cli(servers, task_queue)
