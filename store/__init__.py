"""All SQL of the service, parameterized, over an asyncpg pool: one module per domain area
(`processes`, `contacts`, `opportunities`, `calendar`, `letters`, `events`, `search`,
`reports`, and the `schema` with its migrations). Activities call it for their side effects;
the CLI and the read-model client call it for setup and reads. No other package holds SQL.
"""

from __future__ import annotations

import json

import asyncpg


class StoreError(Exception):
    """Bad input detected against the stored data (an id that exists, or does not)."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """Run when a connection goes back to the pool, instead of asyncpg's reset query: the
    service leaves no session state behind (no SET, LISTEN, cursor or session-level lock;
    its advisory locks are transaction-scoped), and asyncpg still rolls back a transaction
    left open. One round trip less per database call."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_nothing_to_reset,
    )
    assert pool is not None
    return pool
