"""Calendar activities linked to calendar actions (the `calendar_activities` table).

Rows are keyed by (opportunity, action, generation): creating the same activity twice returns
the first one, so a retried or replayed create never makes a second row. Completing,
cancelling and deleting one are changes the projection writes (`apply_changes`), in order,
each idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel

from sales.effects import (
    CalendarChange,
    CalendarKey,
    CancelCalendarActivity,
    CompleteCalendarActivity,
    CreateCalendarActivity,
    ModifyCalendarActivity,
)


class CalendarActivity(BaseModel):
    activity_id: str
    opportunity_id: str
    action_id: str
    generation: int
    contact_id: str
    kind: str
    subject: str
    starts_at: datetime | None
    """None only in a row read whose time lies outside the dates Python holds (past year
    9999, say); so for `ends_at` and `created_on`: `unreadable` then names it."""
    ends_at: datetime | None
    status: Literal["active", "done", "canceled"]
    outcome: str | None
    notes: str | None
    track_outcome: bool
    created_on: datetime | None
    assignee: str | None = None
    location: str | None = None
    unreadable: str | None = None
    """What a row read holds that cannot be read as a date and time, e.g. `ends_at
    10000-01-01 06:59:00 UTC`; None for every row the service writes."""


_COLUMNS = ", ".join(name for name in CalendarActivity.model_fields if name != "unreadable")
_TIMES = ("starts_at", "ends_at", "created_on")


def _readable(column: str) -> str:
    """Whether a timestamptz column holds a time asyncpg can decode into a `datetime`."""
    return f"{column} BETWEEN '0001-01-01 00:00:00+00' AND '9999-12-31 23:59:59.999999+00'"


_READ_COLUMNS = (
    ", ".join(
        f"CASE WHEN {_readable(name)} THEN {name} END AS {name}" if name in _TIMES else name
        for name in _COLUMNS.split(", ")
    )
    + ", NULLIF(concat_ws(', ', "
    + ", ".join(
        f"CASE WHEN NOT {_readable(name)}"
        f" THEN '{name} ' || ({name} AT TIME ZONE 'UTC')::text || ' UTC' END"
        for name in _TIMES
    )
    + "), '') AS unreadable"
)
"""The columns as the reads select them: a time no `datetime` holds (a row written past the
service's checks) comes back as NULL and named in `unreadable`, so that listing, showing and
verifying activities never fail on one row."""


async def create(
    pool: asyncpg.Pool, effect: CreateCalendarActivity
) -> tuple[CalendarActivity, bool]:
    """Insert the activity unless this (opportunity, action, generation) already has one."""
    row = await pool.fetchrow(
        f"""
        INSERT INTO calendar_activities (activity_id, opportunity_id, action_id, generation,
            contact_id, kind, subject, starts_at, ends_at, status, track_outcome, created_on,
            assignee, notes, location)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, now(), $11, $12, $13)
        ON CONFLICT (opportunity_id, action_id, generation) DO NOTHING
        RETURNING {_COLUMNS}
        """,
        effect.activity_id,
        effect.opportunity_id,
        effect.action_id,
        effect.generation,
        effect.contact_id,
        effect.activity_kind,
        effect.subject,
        effect.starts_at,
        effect.ends_at,
        effect.track_outcome,
        effect.assignee,
        effect.notes,
        effect.location,
    )
    if row is not None:
        return CalendarActivity.model_validate(dict(row)), True
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM calendar_activities"
        " WHERE opportunity_id = $1 AND action_id = $2 AND generation = $3",
        effect.opportunity_id,
        effect.action_id,
        effect.generation,
    )
    assert row is not None
    return CalendarActivity.model_validate(dict(row)), False


async def get(pool: asyncpg.Pool, activity_id: str) -> CalendarActivity | None:
    row = await pool.fetchrow(
        f"SELECT {_READ_COLUMNS} FROM calendar_activities WHERE activity_id = $1", activity_id
    )
    return None if row is None else CalendarActivity.model_validate(dict(row))


async def list_for(
    pool: asyncpg.Pool,
    opportunity_id: str | None = None,
    *,
    assignee: str | None = None,
    due_from: datetime | None = None,
    due_before: datetime | None = None,
    active: bool = False,
    owner: str | None = None,
    limit: int = 1000,
) -> list[CalendarActivity]:
    """Calendar activities by due date: of one opportunity, of one assignee (an agent's
    calendar), of the opportunities of one owner, due from `due_from` and before
    `due_before`, only the active ones (`active`), each when given. Overdue work is the
    active ones due before now."""
    rows = await pool.fetch(
        f"SELECT {_READ_COLUMNS} FROM calendar_activities"
        " WHERE ($1::text IS NULL OR opportunity_id = $1)"
        " AND ($2::text IS NULL OR assignee = $2)"
        " AND ($3::timestamptz IS NULL OR starts_at >= $3)"
        " AND ($4::timestamptz IS NULL OR starts_at < $4)"
        " AND (NOT $6::boolean OR status = 'active')"
        " AND ($7::text IS NULL OR opportunity_id IN"
        " (SELECT opportunity_id FROM opportunities WHERE owner = $7))"
        " ORDER BY starts_at, activity_id LIMIT $5",
        opportunity_id,
        assignee,
        due_from,
        due_before,
        limit,
        active,
        owner,
    )
    return [CalendarActivity.model_validate(dict(row)) for row in rows]


async def apply_changes(
    conn: asyncpg.connection.Connection | asyncpg.pool.PoolConnectionProxy,
    changes: Sequence[CalendarChange],
) -> None:
    """Write completions, cancellations, modifications and deletions, in order; each is
    idempotent (only an active activity is completed, canceled or modified)."""
    for change in changes:
        key = _key(change.key)
        if isinstance(change, CompleteCalendarActivity):
            await conn.execute(
                "UPDATE calendar_activities SET status = 'done', outcome = $4,"
                " notes = COALESCE($5, notes),"
                " updated_at = now() WHERE opportunity_id = $1 AND action_id = $2"
                " AND generation = $3 AND status = 'active'",
                *key,
                change.outcome,
                change.notes,
            )
        elif isinstance(change, CancelCalendarActivity):
            await conn.execute(
                "UPDATE calendar_activities SET status = 'canceled', updated_at = now()"
                " WHERE opportunity_id = $1 AND action_id = $2 AND generation = $3"
                " AND status = 'active'",
                *key,
            )
        elif isinstance(change, ModifyCalendarActivity):
            await conn.execute(
                "UPDATE calendar_activities SET starts_at = COALESCE($4, starts_at),"
                " ends_at = COALESCE($4, starts_at)"
                " + COALESCE(make_interval(mins => $5::integer), ends_at - starts_at),"
                " subject = COALESCE($6, subject), assignee = COALESCE($7, assignee),"
                " notes = COALESCE($8, notes), location = COALESCE($9, location),"
                " updated_at = now() WHERE opportunity_id = $1 AND action_id = $2"
                " AND generation = $3 AND status = 'active'",
                *key,
                change.starts_at,
                change.duration_minutes,
                change.subject,
                change.assignee,
                change.notes,
                change.location,
            )
        else:
            await conn.execute(
                "DELETE FROM calendar_activities"
                " WHERE opportunity_id = $1 AND action_id = $2 AND generation = $3",
                *key,
            )


def _key(key: CalendarKey) -> tuple[str, str, int]:
    return key.opportunity_id, key.action_id, key.generation
