"""Contacts: the people opportunities sell to."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import ValidationError

from sales.contact import Contact
from store import StoreError

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
    return [_listed(dict(row)) for row in rows]


def _listed(row: dict[str, Any]) -> Contact:
    """A contact as stored; one whose stored values are no longer valid (written before a
    check existed, or past it) is listed as it is, so that it can be seen and repaired
    (`contact modify`), and the others still listed."""
    try:
        return Contact.model_validate(row)
    except ValidationError:
        return Contact.model_construct(**row)


async def stored_contact(pool: asyncpg.Pool, contact_id: str) -> dict[str, Any] | None:
    """A contact's row as it is stored, unvalidated (what `contact modify` repairs)."""
    row = await pool.fetchrow(
        f"SELECT {', '.join(_CONTACT_FIELDS)} FROM contacts WHERE contact_id = $1", contact_id
    )
    return None if row is None else dict(row)


async def modify_contact(pool: asyncpg.Pool, contact_id: str, changes: dict[str, Any]) -> bool:
    """Set the fields `changes` names (validated by the caller) and leave the others as they
    are; True if anything changed. Letters read the contact when they are written, so open
    opportunities use the new details from then on."""
    fields = [field for field in _CONTACT_FIELDS if field in changes and field != "contact_id"]
    assignments = ", ".join(f"{field} = ${n}" for n, field in enumerate(fields, start=2))
    differs = " OR ".join(f"{field} IS DISTINCT FROM ${n}" for n, field in enumerate(fields, 2))
    async with pool.acquire() as conn, conn.transaction():
        exists = await conn.fetchval(
            "SELECT 1 FROM contacts WHERE contact_id = $1 FOR UPDATE", contact_id
        )
        if exists is None:
            raise StoreError(f"unknown contact {contact_id!r}")
        if not fields:
            return False
        updated = await conn.fetchval(
            f"UPDATE contacts SET {assignments} WHERE contact_id = $1 AND ({differs}) RETURNING 1",
            contact_id,
            *(changes[field] for field in fields),
        )
    return updated is not None


async def delete_contact(pool: asyncpg.Pool, contact_id: str) -> None:
    """Delete a contact nothing refers to: refused while it has opportunities (open ones are
    named first), letters, calendar activities or invitations."""
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "SELECT 1 FROM contacts WHERE contact_id = $1 FOR UPDATE", contact_id
        )
        if found is None:
            raise StoreError(f"unknown contact {contact_id!r}")
        rows = await conn.fetch(
            "SELECT opportunity_id, status FROM opportunities WHERE contact_id = $1"
            " ORDER BY status <> 'open', opportunity_id LIMIT 21",
            contact_id,
        )
        if rows:
            open_ids = [r["opportunity_id"] for r in rows if r["status"] == "open"]
            ids = open_ids or [r["opportunity_id"] for r in rows]
            shown = ", ".join(ids[:20]) + (", ..." if len(rows) > 20 else "")
            kind = "open opportunities" if open_ids else "closed opportunities, kept in history"
            raise StoreError(f"contact {contact_id!r} has {kind}: {shown}; it is kept")
        try:
            await conn.execute("DELETE FROM contacts WHERE contact_id = $1", contact_id)
        except asyncpg.ForeignKeyViolationError:
            raise StoreError(
                f"contact {contact_id!r} has letters, calendar activities or invitations; "
                "it is kept"
            ) from None
