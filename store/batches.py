"""Mass modifications (`batches`): which request each batch id was first used for.

Temporal forgets a closed batch after its namespace's retention period; this table does not,
so a batch id names one request for good. The request is kept as the SHA-256 of the batch's
input (`workflows.mass_messages.MassModifyInput.request_hash`).
"""

from __future__ import annotations

import asyncpg


async def request_of(pool: asyncpg.Pool, batch_id: str) -> str | None:
    """The request hash batch `batch_id` was used for, if it was used."""
    found: str | None = await pool.fetchval(
        "SELECT request_hash FROM batches WHERE batch_id = $1", batch_id
    )
    return found


async def claim(pool: asyncpg.Pool, batch_id: str, request_hash: str) -> str:
    """Record `batch_id` as used for `request_hash` unless it was used already: the request
    hash it stands for now (the given one, or the earlier one). Two statements, so that the
    second sees a row a concurrent claim committed while the first waited for it."""
    await pool.execute(
        "INSERT INTO batches (batch_id, request_hash) VALUES ($1, $2)"
        " ON CONFLICT (batch_id) DO NOTHING",
        batch_id,
        request_hash,
    )
    stored = await request_of(pool, batch_id)
    assert stored is not None
    return stored
