"""Fresh local servers for a benchmark or a recording: an embedded PostgreSQL in a temporary
directory (migrated) and a Temporal dev server with the contract's search attributes."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import store
from runtime import embedded, search_attributes
from sales.contact import Contact
from sales.process import ProcessDefinition
from store import contacts, processes
from store.schema import migrate

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "processes" / "life-insurance.json"


@asynccontextmanager
async def local_servers(
    bench_process: Callable[[dict[str, Any]], None] | None = None,
) -> AsyncIterator[tuple[asyncpg.Pool, WorkflowEnvironment]]:
    """The pool and the environment. With `bench_process`, also the example process as
    `bench` (after `bench_process` edits its document) and contact `c-bench`."""
    async with local_servers_and_url(bench_process) as (pool, env, _):
        yield pool, env


OWNERS = 50
"""Users the benchmarks name as owners (`o<n>`; an owner must be a user): a sales team's
worth, unless a benchmark asks for more."""


@asynccontextmanager
async def local_servers_and_url(
    bench_process: Callable[[dict[str, Any]], None] | None = None, *, owners: int = OWNERS
) -> AsyncIterator[tuple[asyncpg.Pool, WorkflowEnvironment, str]]:
    """`local_servers`, and the database's URL for worker processes of their own."""
    with tempfile.TemporaryDirectory() as tmp:
        admin, url = embedded.start_postgres(Path(tmp) / "pg", keep=False)
        await embedded.ensure_database(admin)
        pool = await store.create_pool(url, max_size=20)
        try:
            await migrate(pool)
            if bench_process is not None:
                document = json.loads(EXAMPLE.read_text())
                document.update(process_id="bench", default=False)
                bench_process(document)
                await processes.apply_process(pool, ProcessDefinition.model_validate(document))
                contact = Contact(contact_id="c-bench", first_name="A", last_name="B")
                await contacts.add_contact(pool, contact)
                await pool.executemany(  # the owners the benchmarks hand opportunities to
                    "INSERT INTO users (user_id, name) VALUES ($1, $1)",
                    [("final",), *((f"o{n}",) for n in range(owners))],
                )
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=embedded.temporal_binary(),
                search_attributes=search_attributes.ALL,
                data_converter=pydantic_data_converter,
            )
            async with env:
                yield pool, env, url
        finally:
            await pool.close()
