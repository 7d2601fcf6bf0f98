"""Contacts: the people opportunities sell to."""

from __future__ import annotations

import asyncpg

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
    return [Contact.model_validate(dict(row)) for row in rows]


async def modify_contact(pool: asyncpg.Pool, contact: Contact) -> bool:
    """Replace an existing contact's details; True if anything changed. Letters read the
    contact when they are written, so open opportunities use the new details from then on."""
    values = contact.model_dump()
    fields = [f for f in _CONTACT_FIELDS if f != "contact_id"]
    assignments = ", ".join(f"{field} = ${n}" for n, field in enumerate(fields, start=2))
    async with pool.acquire() as conn, conn.transaction():
        existing = await conn.fetchrow(
            f"SELECT {', '.join(_CONTACT_FIELDS)} FROM contacts WHERE contact_id = $1 FOR UPDATE",
            contact.contact_id,
        )
        if existing is None:
            raise StoreError(f"unknown contact {contact.contact_id!r}")
        if Contact.model_validate(dict(existing)) == contact:
            return False
        await conn.execute(
            f"UPDATE contacts SET {assignments} WHERE contact_id = $1",
            contact.contact_id,
            *(values[field] for field in fields),
        )
    return True


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
