"""All SQL of the service, parameterized, over an asyncpg pool.

Activities call it for their side effects; the starter calls it for setup (processes, contacts)
and for reads of the projection. Nothing else talks to PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg
from pydantic import BaseModel

from activities import calendar
from sales.contact import Contact
from sales.effects import CalendarChange
from sales.opportunity import HistoryEntry, OpportunitySummary
from sales.process import ProcessDefinition, SalesProcess
from sales.validation import MAX_PROCESS_BYTES, json_size


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


# --- Opportunity Setup -----------------------------------------------------------------------


class ProcessSummary(BaseModel):
    process_id: str
    name: str
    version: int
    is_default: bool
    stages: list[str]
    applied_at: Any


async def apply_process(
    pool: asyncpg.Pool, definition: ProcessDefinition
) -> tuple[SalesProcess, bool]:
    """Store the definition as a new version unless it equals the latest one.

    Returns the current version and whether it was created now. Serialized per process by an
    advisory lock so that two operators applying at once cannot both create version N+1.
    A definition larger than `MAX_PROCESS_BYTES` is refused: every opportunity carries it.
    """
    size = json_size(definition.model_dump(mode="json"))
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
        if latest is not None and latest["fingerprint"] == fingerprint:
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
            definition.model_dump(mode="json"),
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
    return [
        ProcessSummary(
            process_id=row["process_id"],
            name=row["name"],
            version=row["version"],
            is_default=row["process_id"] == default,
            stages=[stage["name"] for stage in row["definition"]["stages"]],
            applied_at=row["applied_at"],
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
    """The process most recently applied with `default: true` (in its latest version)."""
    value = await pool.fetchval(
        f"SELECT process_id FROM ({_LATEST_VERSIONS}) latest"
        " WHERE is_default ORDER BY applied_at DESC LIMIT 1"
    )
    return str(value) if value is not None else None


async def default_process(pool: asyncpg.Pool) -> SalesProcess | None:
    process_id = await _default_process_id(pool)
    return None if process_id is None else await get_process(pool, process_id)


async def process_ids(pool: asyncpg.Pool) -> list[str]:
    return [row["process_id"] for row in await pool.fetch(_LATEST_VERSIONS)]


# --- Contacts ---------------------------------------------------------------------------------

_CONTACT_FIELDS = list(Contact.model_fields)


async def add_contact(pool: asyncpg.Pool, contact: Contact) -> bool:
    """Insert a contact; True if added, False if an identical one exists.

    A contact with the same id and different details is an error rather than an overwrite:
    `add` must never silently change somebody's address.
    """
    values = contact.model_dump()
    columns = ", ".join(_CONTACT_FIELDS)
    placeholders = ", ".join(f"${i}" for i in range(1, len(_CONTACT_FIELDS) + 1))
    inserted = await pool.fetchval(
        f"INSERT INTO contacts ({columns}) VALUES ({placeholders})"
        " ON CONFLICT (contact_id) DO NOTHING RETURNING 1",
        *(values[field] for field in _CONTACT_FIELDS),
    )
    if inserted:
        return True
    existing = await get_contact(pool, contact.contact_id)
    if existing != contact:
        raise StoreError(
            f"contact {contact.contact_id!r} already exists with other details: {existing}"
        )
    return False


async def get_contact(pool: asyncpg.Pool, contact_id: str) -> Contact | None:
    row = await pool.fetchrow(
        f"SELECT {', '.join(_CONTACT_FIELDS)} FROM contacts WHERE contact_id = $1", contact_id
    )
    return None if row is None else Contact.model_validate(dict(row))


async def list_contacts(pool: asyncpg.Pool, limit: int = 1000) -> list[Contact]:
    rows = await pool.fetch(
        f"SELECT {', '.join(_CONTACT_FIELDS)} FROM contacts ORDER BY contact_id LIMIT $1", limit
    )
    return [Contact.model_validate(dict(row)) for row in rows]


# --- Opportunity projection -------------------------------------------------------------------


async def project_opportunity(
    pool: asyncpg.Pool,
    summary: OpportunitySummary,
    history: Sequence[HistoryEntry],
    calendar_changes: Sequence[CalendarChange] = (),
) -> bool:
    """Write the opportunity's row, its new history entries and the changes to its calendar
    activities, idempotently, in one transaction.

    A row is only replaced by a higher revision, so a late retry of an older write cannot
    roll the projection back; history rows are keyed by (opportunity, seq), so a retried write
    never duplicates one; calendar changes only change an active row. Returns whether the
    row was written.
    """
    async with pool.acquire() as conn:
        if not history and not calendar_changes:
            # Most commands move no stage: one statement, committed by itself, instead of a
            # transaction's three round trips (each a wake-up of a busy worker's event loop).
            return await _upsert_summary(conn, summary)
        async with conn.transaction():
            await calendar.apply_changes(conn, calendar_changes)
            written = await _upsert_summary(conn, summary)
            await conn.executemany(
                "INSERT INTO opportunity_history (opportunity_id, seq, at, from_stage, to_stage,"
                " source, by, reason, canceled_activities, created_activities)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                " ON CONFLICT (opportunity_id, seq) DO NOTHING",
                [
                    (
                        summary.opportunity_id,
                        entry.seq,
                        entry.at,
                        entry.from_stage,
                        entry.to_stage,
                        entry.source,
                        entry.by,
                        entry.reason,
                        entry.canceled_activities,
                        entry.created_activities,
                    )
                    for entry in history
                ],
            )
        return written


async def _upsert_summary(
    conn: asyncpg.pool.PoolConnectionProxy, summary: OpportunitySummary
) -> bool:
    """The opportunity's row, replaced only by a higher revision; whether it was written."""
    written = await conn.fetchval(
        """
        INSERT INTO opportunities (opportunity_id, contact_id, process_id, process_version,
            name, owner, status, current_stage, stage_entered_at, closed_at, open_actions,
            created_at, updated_at, revision)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now(), $13)
        ON CONFLICT (opportunity_id) DO UPDATE SET
            name = EXCLUDED.name, owner = EXCLUDED.owner, status = EXCLUDED.status,
            current_stage = EXCLUDED.current_stage,
            stage_entered_at = EXCLUDED.stage_entered_at, closed_at = EXCLUDED.closed_at,
            open_actions = EXCLUDED.open_actions, updated_at = now(),
            revision = EXCLUDED.revision
        WHERE opportunities.revision < EXCLUDED.revision
        RETURNING 1
        """,
        summary.opportunity_id,
        summary.contact_id,
        summary.process_id,
        summary.process_version,
        summary.name,
        summary.owner,
        summary.status,
        summary.current_stage,
        summary.stage_entered_at,
        summary.closed_at,
        summary.open_actions,
        summary.created_at,
        summary.revision,
    )
    return bool(written)


async def get_opportunity(pool: asyncpg.Pool, opportunity_id: str) -> OpportunitySummary | None:
    row = await pool.fetchrow(
        f"SELECT {', '.join(OpportunitySummary.model_fields)} FROM opportunities"
        " WHERE opportunity_id = $1",
        opportunity_id,
    )
    return None if row is None else OpportunitySummary.model_validate(dict(row))


async def get_history(pool: asyncpg.Pool, opportunity_id: str) -> list[HistoryEntry]:
    rows = await pool.fetch(
        "SELECT seq, at, from_stage, to_stage, source, by, reason, canceled_activities,"
        " created_activities FROM opportunity_history"
        " WHERE opportunity_id = $1 ORDER BY seq",
        opportunity_id,
    )
    return [HistoryEntry.model_validate(dict(row)) for row in rows]
