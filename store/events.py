"""Events and their invitee lists (`events`, `event_invitees`).

A contact is on an event's list at most once (the primary key). The row remembers which
opportunity and action invited it, so a retried invitation recognises its own earlier success
and does not report `already_invited` for it.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel, ConfigDict, field_validator

from sales.effects import InviteToEvent
from sales.validation import Identifier, Line, in_business_range
from store import StoreError


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier
    name: Line
    starts_at: datetime
    """Within the business range (the command line asks for a time zone)."""

    @field_validator("starts_at")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        return value if value.tzinfo is None else in_business_range(value)


class Invitee(BaseModel):
    event_id: str
    contact_id: str
    opportunity_id: str | None
    invited_at: datetime


async def add_event(pool: asyncpg.Pool, event: Event) -> bool:
    """True if added, False if the same event exists; a different one with that id is an error."""
    inserted = await pool.fetchval(
        "INSERT INTO events (event_id, name, starts_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING 1",
        event.event_id,
        event.name,
        event.starts_at,
    )
    if inserted:
        return True
    existing = await get_event(pool, event.event_id)
    if existing != event:
        raise StoreError(f"event {event.event_id!r} already exists with other details: {existing}")
    return False


async def get_event(pool: asyncpg.Pool, event_id: str) -> Event | None:
    row = await pool.fetchrow(
        "SELECT event_id, name, starts_at FROM events WHERE event_id = $1", event_id
    )
    return None if row is None else Event.model_validate(dict(row))


async def list_events(pool: asyncpg.Pool) -> list[Event]:
    rows = await pool.fetch("SELECT event_id, name, starts_at FROM events ORDER BY starts_at")
    return [Event.model_validate(dict(row)) for row in rows]


async def list_invitees(pool: asyncpg.Pool, event_id: str) -> list[Invitee]:
    rows = await pool.fetch(
        "SELECT event_id, contact_id, opportunity_id, invited_at FROM event_invitees"
        " WHERE event_id = $1 ORDER BY invited_at, contact_id",
        event_id,
    )
    return [Invitee.model_validate(dict(row)) for row in rows]


async def is_invited(pool: asyncpg.Pool, event_id: str, contact_id: str) -> bool:
    """Whether the contact is on the event's invitee list."""
    return bool(
        await pool.fetchval(
            "SELECT 1 FROM event_invitees WHERE event_id = $1 AND contact_id = $2",
            event_id,
            contact_id,
        )
    )


async def invite(pool: asyncpg.Pool, effect: InviteToEvent) -> bool:
    """Put the contact on the list; False if it was already there (put by someone else)."""
    async with pool.acquire() as conn, conn.transaction():
        known = await conn.fetchval("SELECT 1 FROM events WHERE event_id = $1", effect.event_id)
        if not known:
            raise StoreError(f"unknown event {effect.event_id!r}")
        inserted = await conn.fetchval(
            "INSERT INTO event_invitees (event_id, contact_id, opportunity_id, action_id,"
            " generation, invited_at) VALUES ($1, $2, $3, $4, $5, now())"
            " ON CONFLICT (event_id, contact_id) DO NOTHING RETURNING 1",
            effect.event_id,
            effect.contact_id,
            effect.opportunity_id,
            effect.action_id,
            effect.generation,
        )
        if inserted:
            return True
        row = await conn.fetchrow(
            "SELECT opportunity_id, action_id, generation FROM event_invitees"
            " WHERE event_id = $1 AND contact_id = $2",
            effect.event_id,
            effect.contact_id,
        )
        return (
            row is not None
            and (row["opportunity_id"], row["action_id"])
            == (effect.opportunity_id, effect.action_id)
            and row["generation"] in (None, effect.generation)
        )
