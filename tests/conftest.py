"""One real Temporal dev server and one real PostgreSQL for the whole session; a fresh task
queue, worker and ids for every test."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

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
from worker import build_worker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PROCESS = ROOT / "examples" / "processes" / "life-insurance.json"


@dataclass
class Servers:
    temporal_address: str
    http_port: int
    ui_port: int
    database_url: str


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    datadir = tmp_path_factory.mktemp("pg") / "data"
    admin_uri, url = embedded.start_postgres(datadir, keep=False)
    asyncio.run(embedded.ensure_database(admin_uri))
    yield url


TEST_KEYS = f"test:{base64.b64encode(b'1' * 32).decode()}"
"""The key of the tests' encrypted opportunities (tests/test_encryption.py, the UI test)."""


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
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def client(temporal_env: tuple[WorkflowEnvironment, int, int]) -> Client:
    return temporal_env[0].client


@pytest.fixture(scope="session")
def servers(temporal_env: tuple[WorkflowEnvironment, int, int], postgres_url: str) -> Servers:
    env, http_port, ui_port = temporal_env
    return Servers(
        temporal_address=env.client.service_client.config.target_host,
        http_port=http_port,
        ui_port=ui_port,
        database_url=postgres_url,
    )


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


class Inbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


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


def example_definition(process_id: str, **changes: Any) -> dict[str, Any]:
    """The example process under another id (so each test owns its process)."""
    document = json.loads(EXAMPLE_PROCESS.read_text())
    document.update({"process_id": process_id, "default": False, **changes})
    return document


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs the `opportunities` console script as a user would, against the test servers.

    Asynchronous, so the test's worker keeps running in the same event loop meanwhile.
    """

    def __init__(self, servers: Servers, task_queue: str) -> None:
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": servers.temporal_address,
            "DATABASE_URL": servers.database_url,
            "OPPORTUNITIES_TASK_QUEUE": task_queue,
            "OPPORTUNITIES_USER": "cli-tester",
            "COLUMNS": "200",
        }

    async def __call__(self, *args: str, input: str | None = None) -> CliResult:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "opportunities"),
            *args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(input.encode() if input else None)
        assert process.returncode is not None
        return CliResult(process.returncode, out.decode(), err.decode())


@pytest.fixture(scope="module")
async def verified(client: Client, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """At the end of the module, every opportunity it started agrees with its read model
    (`opportunities verify`). Modules that run workflows use it with
    `pytestmark = pytest.mark.usefixtures("verified")`."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    yield
    from tests.helpers import verify_started_since

    differences = await verify_started_since(client, pool, since)
    assert differences == [], "the read model disagrees with the workflows"


@pytest.fixture
def cli(servers: Servers, task_queue: str, pool: asyncpg.Pool) -> Cli:
    """(`pool` makes sure the database is migrated, as a worker would have done.)"""
    return Cli(servers, task_queue)
