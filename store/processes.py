"""Opportunity Setup: stored process definitions, one row per version."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import BaseModel

from sales.process import (
    EventAction,
    FoundProcess,
    LetterAction,
    ProcessDefinition,
    SalesProcess,
)
from sales.validation import MAX_PROCESS_BYTES, json_size
from store import StoreError


class ProcessSummary(BaseModel):
    process_id: str
    name: str
    version: int
    is_default: bool
    stages: list[str]
    applied_at: Any
    retired: bool = False


async def apply_process(
    pool: asyncpg.Pool, definition: ProcessDefinition
) -> tuple[SalesProcess, bool]:
    """Store the definition as a new version unless it equals the latest one.

    Returns the current version and whether it was created now. Serialized per process by an
    advisory lock so that two operators applying at once cannot both create version N+1.
    A definition larger than `MAX_PROCESS_BYTES` is refused: every opportunity carries it.
    """
    document = definition.model_dump(mode="json")
    size = json_size(document)
    if size > MAX_PROCESS_BYTES:
        raise StoreError(
            f"process {definition.process_id!r} is {size:,} bytes as JSON; "
            f"at most {MAX_PROCESS_BYTES:,}"
        )
    fingerprint = definition.fingerprint()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('process:' || $1))", definition.process_id
        )
        latest = await conn.fetchrow(
            "SELECT version, fingerprint, definition FROM sales_processes"
            " WHERE process_id = $1 ORDER BY version DESC LIMIT 1",
            definition.process_id,
        )
        unchanged = latest is not None and (
            latest["fingerprint"] == fingerprint  # the stored one read with today's fields:
            or ProcessDefinition.model_validate(latest["definition"]).fingerprint() == fingerprint
        )  # a field added since, at its default, makes no new version
        if latest is not None and unchanged:
            return SalesProcess(version=latest["version"], definition=definition), False
        version = 1 if latest is None else latest["version"] + 1
        await conn.execute(
            "INSERT INTO sales_processes"
            " (process_id, version, name, is_default, definition, fingerprint)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            definition.process_id,
            version,
            definition.name,
            definition.default,
            document,
            fingerprint,
        )
        return SalesProcess(version=version, definition=definition), True


_LATEST_VERSIONS = """
    SELECT DISTINCT ON (process_id) process_id, version, name, is_default, definition, applied_at
    FROM sales_processes ORDER BY process_id, version DESC
"""


async def list_processes(pool: asyncpg.Pool) -> list[ProcessSummary]:
    rows = await pool.fetch(_LATEST_VERSIONS)
    default = await _default_process_id(pool)
    retired = await retired_ids(pool)
    return [
        ProcessSummary(
            process_id=row["process_id"],
            name=row["name"],
            version=row["version"],
            is_default=row["process_id"] == default,
            stages=[stage["name"] for stage in row["definition"]["stages"]],
            applied_at=row["applied_at"],
            retired=row["process_id"] in retired,
        )
        for row in rows
    ]


async def get_process(
    pool: asyncpg.Pool, process_id: str, version: int | None = None
) -> SalesProcess | None:
    if version is None:
        row = await pool.fetchrow(
            "SELECT version, definition FROM sales_processes"
            " WHERE process_id = $1 ORDER BY version DESC LIMIT 1",
            process_id,
        )
    else:
        row = await pool.fetchrow(
            "SELECT version, definition FROM sales_processes"
            " WHERE process_id = $1 AND version = $2",
            process_id,
            version,
        )
    if row is None:
        return None
    return SalesProcess(
        version=row["version"], definition=ProcessDefinition.model_validate(row["definition"])
    )


async def _default_process_id(pool: asyncpg.Pool) -> str | None:
    """The process most recently applied with `default: true` (in its latest version), unless
    it is retired."""
    value = await pool.fetchval(
        f"SELECT process_id FROM ({_LATEST_VERSIONS}) latest WHERE is_default AND NOT EXISTS"
        " (SELECT 1 FROM process_retirements r WHERE r.process_id = latest.process_id)"
        " ORDER BY applied_at DESC LIMIT 1"
    )
    return str(value) if value is not None else None


async def default_process(pool: asyncpg.Pool) -> SalesProcess | None:
    process_id = await _default_process_id(pool)
    return None if process_id is None else await get_process(pool, process_id)


async def process_ids(pool: asyncpg.Pool) -> list[str]:
    return [row["process_id"] for row in await pool.fetch(_LATEST_VERSIONS)]


async def versions(pool: asyncpg.Pool, process_id: str) -> list[int]:
    """The stored versions of a process, oldest first (empty: unknown)."""
    rows = await pool.fetch(
        "SELECT version FROM sales_processes WHERE process_id = $1 ORDER BY version", process_id
    )
    return [row["version"] for row in rows]


async def missing_references(pool: asyncpg.Pool, definition: ProcessDefinition) -> list[str]:
    """The letter templates and events the definition's actions name that are not stored."""
    templates = sorted({a.template for s in definition.stages for a in s.actions
                        if isinstance(a, LetterAction)})  # fmt: skip
    event_ids = sorted({a.event_id for s in definition.stages for a in s.actions
                        if isinstance(a, EventAction)})  # fmt: skip
    stored_templates = {
        row["name"]
        for row in await pool.fetch(
            "SELECT name FROM letter_templates WHERE name = ANY($1::text[])", templates
        )
    }
    stored_events = {
        row["event_id"]
        for row in await pool.fetch(
            "SELECT event_id FROM events WHERE event_id = ANY($1::text[])", event_ids
        )
    }
    return [f"letter template {t!r}" for t in templates if t not in stored_templates] + [
        f"event {e!r}" for e in event_ids if e not in stored_events
    ]


async def find(pool: asyncpg.Pool, process_id: str) -> FoundProcess:
    """A process's latest version (none: unknown) and whether it is retired, in one query."""
    row = await pool.fetchrow(
        "SELECT p.version, p.definition, r.process_id IS NOT NULL AS retired"
        " FROM sales_processes p LEFT JOIN process_retirements r USING (process_id)"
        " WHERE p.process_id = $1 ORDER BY p.version DESC LIMIT 1",
        process_id,
    )
    if row is None:
        return FoundProcess()
    definition = ProcessDefinition.model_validate(row["definition"])
    return FoundProcess(
        process=SalesProcess(version=row["version"], definition=definition),
        retired=row["retired"],
    )


async def retired_ids(pool: asyncpg.Pool) -> set[str]:
    return {
        row["process_id"] for row in await pool.fetch("SELECT process_id FROM process_retirements")
    }


async def retire(pool: asyncpg.Pool, process_id: str, *, retired: bool = True) -> bool:
    """Retire a process (no new opportunities; running ones go on), or with `retired=False`
    take it back; True if that changed anything."""
    if not await versions(pool, process_id):
        raise StoreError(f"unknown process {process_id!r}; processes are {await process_ids(pool)}")
    if retired:
        done = await pool.fetchval(
            "INSERT INTO process_retirements (process_id) VALUES ($1)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            process_id,
        )
    else:
        done = await pool.fetchval(
            "DELETE FROM process_retirements WHERE process_id = $1 RETURNING 1", process_id
        )
    return bool(done)


async def copy_process(
    pool: asyncpg.Pool, process_id: str, new_id: str, name: str | None = None
) -> SalesProcess:
    """A new process `new_id`, version 1, with the latest definition of `process_id` (not the
    default); refused when `new_id` exists."""
    source = await get_process(pool, process_id)
    if source is None:
        raise StoreError(f"unknown process {process_id!r}; processes are {await process_ids(pool)}")
    if await versions(pool, new_id):
        raise StoreError(f"process {new_id!r} exists already; choose another id")
    copied = ProcessDefinition.model_validate(
        source.definition.model_dump()
        | {"process_id": new_id, "default": False, "name": name or source.definition.name}
    )
    process, _ = await apply_process(pool, copied)
    return process
