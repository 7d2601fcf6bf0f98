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
