"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from activities import store
from sales.contact import Contact
from sales.process import ProcessDefinition
from tests.conftest import example_definition


async def setup_process(pool: asyncpg.Pool, uid: str, **changes: Any) -> str:
    definition = ProcessDefinition.model_validate(example_definition(f"life-{uid}", **changes))
    await store.apply_process(pool, definition)
    return definition.process_id


async def setup_contact(pool: asyncpg.Pool, uid: str) -> str:
    contact = Contact(contact_id=f"c-{uid}", first_name="Ada", last_name="Lovelace")
    await store.add_contact(pool, contact)
    return contact.contact_id


async def eventually(check: Any, seconds: float = 10.0) -> Any:
    """Poll an async check until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {seconds}s (last: {value!r})")
        await asyncio.sleep(0.1)


async def open_one(pool: asyncpg.Pool, opportunities: Any, uid: str, **options: Any) -> str:
    """A process and a contact of this test's own, and opportunity `o-<uid>` open on them.

    Returns the process id.
    """
    process_id = await setup_process(pool, uid)
    contact_id = await setup_contact(pool, uid)
    await opportunities.create(
        contact_id, opportunity_id=f"o-{uid}", process_id=process_id, **options
    )
    return process_id
