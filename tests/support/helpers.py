"""Small helpers shared by the tests: the example process under a test's own ids, contacts,
references, waiting for a condition, and `verify` over what a module started."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError

from activities.letters import put_template
from runtime import search_attributes
from runtime.codec import ENCODING, EncryptionCodec, Keyring, data_converter
from runtime.workflow_ids import opportunity_workflow_id
from sales.contact import Contact
from sales.process import ProcessDefinition
from starter.client import OpportunitiesClient
from starter.client.read_model import ReadModel
from starter.client.verify import Verdict, verify
from store import contacts, events, processes, users
from worker import build_worker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PROCESS = ROOT / "examples" / "processes" / "life-insurance.json"

TEST_KEYS = f"test:{base64.b64encode(b'1' * 32).decode()}"
"""The key of the tests' encrypted opportunities (tests/test_encryption.py, the UI test)."""


def example_definition(process_id: str, **changes: Any) -> dict[str, Any]:
    """The example process under another id (so each test owns its process)."""
    document = json.loads(EXAMPLE_PROCESS.read_text())
    document.update({"process_id": process_id, "default": False, **changes})
    return document


def own_definition(uid: str, *, on_entry: bool = True, **changes: Any) -> dict[str, Any]:
    """The example process under this test's ids: process `life-<uid>`, letter template
    `welcome-<uid>`, event `seminar-<uid>` (templates and events are shared tables).
    `on_entry=False` creates no calendar activity on entering a stage."""
    document = example_definition(f"life-{uid}", **changes)
    for stage in document["stages"]:
        for action in stage.get("actions", []):
            if not on_entry:
                action.pop("create_activity_on_entry", None)
            if action["type"] == "letter":
                action["template"] = f"{action['template']}-{uid}"
            if action["type"] == "event":
                action["event_id"] = f"seminar-{uid}"
    return document


async def setup_process(
    pool: asyncpg.Pool, uid: str, *, on_entry: bool = True, **changes: Any
) -> str:
    definition = ProcessDefinition.model_validate(own_definition(uid, on_entry=on_entry, **changes))
    await processes.apply_process(pool, definition)
    return definition.process_id


async def setup_contact(pool: asyncpg.Pool, uid: str, **fields: Any) -> str:
    """Contact `c-<uid>` (Ada Lovelace); `fields` add or change its fields."""
    names = {"first_name": "Ada", "last_name": "Lovelace", **fields}
    contact = Contact(contact_id=f"c-{uid}", **names)
    await contacts.add_contact(pool, contact)
    return contact.contact_id


WELCOME = """Subject: Welcome, {{ contact.first_name }}
Dear {{ contact.first_name }} {{ contact.last_name }},

thank you for your interest in {{ opportunity.name or process.name }}.
Your adviser {{ opportunity.owner }} will call you soon.
"""


async def is_open(opportunities: OpportunitiesClient, opportunity_id: str) -> bool:
    """Whether the opportunity answers its `state` query as open (False while it is still
    being opened)."""
    try:
        return (await opportunities.state(opportunity_id)).status == "open"
    except WorkflowQueryFailedError:  # still being opened
        return False


async def start_continuing_early(
    client: Any,
    pool: asyncpg.Pool,
    uid: str,
    opportunity_id: str,
    task_queue: str,
    after_events: int,
) -> Any:
    """Open `opportunity_id` on a process and contact of its own (`uid`, no activity on
    entry) by starting its workflow with `continue_as_new_after_events`: the handle."""
    process_id = await setup_process(pool, uid, on_entry=False)
    contact_id = await setup_contact(pool, uid)
    return await client.start_workflow(
        "Opportunity",
        {"opportunity_id": opportunity_id, "contact_id": contact_id, "process_id": process_id,
         "continue_as_new_after_events": after_events},
        id=f"opportunity-{opportunity_id}",
        task_queue=task_queue,
    )  # fmt: skip


async def add_users(pool: asyncpg.Pool, *user_ids: str) -> None:
    """Users of these ids (an owner, an assignee must be one)."""
    for user_id in user_ids:
        await users.put_user(pool, users.User(user_id=user_id, name=user_id.title()))


async def setup_references(pool: asyncpg.Pool, uid: str) -> None:
    """The letter templates and the event the test's process refers to."""
    await put_template(pool, f"welcome-{uid}", WELCOME)
    await put_template(pool, f"proposal-{uid}", "Your proposal, {{ contact.first_name }}.")
    await events.add_event(
        pool,
        events.Event(
            event_id=f"seminar-{uid}", name="Retirement seminar", starts_at="2027-01-15T18:00Z"
        ),
    )


async def store_unchecked_template(pool: asyncpg.Pool, name: str, body: str) -> None:
    """Store a template without `put_template`'s sample merge: one that fails only on a real
    contact's data, or a hostile one that reached the table some other way."""
    await pool.execute(
        "INSERT INTO letter_templates (name, body) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body, updated_at = now()",
        name,
        body,
    )


async def eventually(check: Any, seconds: float = 10.0) -> Any:
    """Poll a check (a coroutine function, or a plain one) until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {seconds}s (last: {value!r})")
        await asyncio.sleep(0.1)


async def quiet_history_length(handle: Any, seconds: float = 30.0) -> int:
    """The workflow's history length once it has stopped growing for half a second: a
    workflow just opened may still be finishing its first tasks when the client returns."""
    previous = -1
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        length = len([e async for e in handle.fetch_history_events()])
        if length == previous:
            return length
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"history still growing after {seconds}s ({length} events)")
        previous = length
        await asyncio.sleep(0.5)


async def open_one(
    pool: asyncpg.Pool,
    opportunities: Any,
    uid: str,
    contact: dict[str, Any] | None = None,
    *,
    on_entry: bool = True,
    process: dict[str, Any] | None = None,
    **options: Any,
) -> str:
    """A process, references and a contact of this test's own, and opportunity `o-<uid>`
    open on them. Returns the process id.
    """
    process_id = await setup_process(pool, uid, on_entry=on_entry, **(process or {}))
    contact_id = await setup_contact(pool, uid, **(contact or {}))
    await setup_references(pool, uid)
    if options.get("owner"):
        await add_users(pool, options["owner"])
    await opportunities.create(
        contact_id,
        opportunity_id=f"o-{uid}",
        process_id=process_id,
        contact_name=await ReadModel(pool).contact_name(contact_id),  # as the CLI gives it
        **options,
    )
    return process_id


async def verify_started_since(client: Any, pool: asyncpg.Pool, since: datetime) -> list[str]:
    """Run `verify` on every opportunity started on the session's server since `since`, with
    a worker on each task queue they used (to answer their queries), decoding as the workers
    that wrote them did (sealed with the tests' key, or in clear): every difference."""
    query = f'WorkflowType = "Opportunity" AND StartTime >= "{since.isoformat()}"'
    queues: dict[str, set[str]] = {}
    async for execution in client.list_workflows(query):
        queues.setdefault(execution.task_queue, set()).add(execution.id)
    found: list[str] = []
    limit = asyncio.Semaphore(20)
    for queue, workflow_ids in sorted(queues.items()):
        reader = await _reader_for(client, sorted(workflow_ids)[0])
        opportunities = OpportunitiesClient(reader, queue)

        async def one(
            workflow_id: str, opportunities: OpportunitiesClient = opportunities
        ) -> Verdict:
            async with limit:
                return await verify(opportunities, pool, workflow_id.removeprefix("opportunity-"))

        async with _reading_worker(reader, pool, queue, sorted(workflow_ids)[0]):
            # An opportunity may still be writing what it applied last (an activity whose
            # worker stopped with its test is retried by this one): compare until they
            # agree, for a while.
            deadline = asyncio.get_running_loop().time() + QUIET_SECONDS
            pending = sorted(workflow_ids)
            while True:
                verdicts = await asyncio.gather(*(one(i) for i in pending))
                pending = [opportunity_workflow_id(v.opportunity_id) for v in verdicts
                           if v.differences]  # fmt: skip
                if not pending or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
        found += [f"{v.opportunity_id}: {d}" for v in verdicts for d in v.differences]
    return found


@contextlib.asynccontextmanager
async def _reading_worker(
    reader: Client, pool: asyncpg.Pool, queue: str, workflow_id: str
) -> AsyncIterator[Any]:
    """A worker for `queue` as its opportunities ran: the deployment version of their last
    workflow task (a worker process's) or unversioned (an in-process worker's), so that the
    server gives it their queries. It never changes the current version."""
    version = None
    async for event in reader.get_workflow_handle(workflow_id).fetch_history_events():
        if event.HasField("workflow_task_completed_event_attributes"):
            found = event.workflow_task_completed_event_attributes.deployment_version
            version = found if found.build_id else None
    settings = {"OPPORTUNITIES_WORKER_VERSIONING": "off"}
    if version is not None:
        settings = {"OPPORTUNITIES_WORKER_VERSIONING": "on", "OPPORTUNITIES_SET_CURRENT": "never",
                    "OPPORTUNITIES_DEPLOYMENT": version.deployment_name,
                    "OPPORTUNITIES_BUILD_ID": version.build_id}  # fmt: skip
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        worker = build_worker(reader, pool, queue)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    async with worker:
        yield worker


async def register_search_attributes(client: Client, namespace: str) -> None:
    """The contract's search attributes on a namespace just registered (asked again until
    the namespace is known everywhere)."""

    async def added() -> bool:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes={
                        key.name: IndexedValueType.ValueType(key.indexed_value_type.value)
                        for key in search_attributes.ALL
                    },
                )
            )
        except RPCError:  # the new namespace is not known everywhere yet
            return False
        return True

    await eventually(added, 30)


QUIET_SECONDS = 20.0
"""How long `verify_started_since` waits for an opportunity to write what it applied."""


async def _reader_for(client: Any, workflow_id: str) -> Client:
    """A client decoding like the workers of `workflow_id` did: with the tests' key when its
    start input is sealed (and then refusing plaintext, as they did), else `client`."""
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        started = event.workflow_execution_started_event_attributes
        sealed = any(p.metadata.get("encoding") == ENCODING for p in started.input.payloads)
        if not sealed:
            return client
        config = client.config()
        config["data_converter"] = data_converter(EncryptionCodec(Keyring.parse(TEST_KEYS)))
        return Client(**config)
    return client


async def task_failures(handle: WorkflowHandle[Any, Any]) -> int:
    """Workflow tasks that failed in the workflow's history (every run of it)."""
    failed = 0
    async for event in handle.fetch_history_events():
        failed += event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    return failed


async def open_many(
    pool: asyncpg.Pool, opportunities: Any, uid: str, count: int, prefix: str = "m"
) -> tuple[str, list[str]]:
    """A process of this test's own (no activity on entry) and `count` opportunities
    `<prefix>-<uid>-<n>` open on it, 25 at a time; the process id and the ids."""
    process_id = await setup_process(pool, uid, on_entry=False)
    await setup_references(pool, uid)
    contact_id = await setup_contact(pool, uid)
    ids = [f"{prefix}-{uid}-{i:04d}" for i in range(count)]
    for start in range(0, count, 25):
        await asyncio.gather(
            *(opportunities.create(contact_id, opportunity_id=opp, process_id=process_id)
              for opp in ids[start : start + 25])
        )  # fmt: skip
    return process_id, ids
