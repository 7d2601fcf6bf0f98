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
    starts_at: datetime
    ends_at: datetime
    status: Literal["active", "done", "canceled"]
    outcome: str | None
    notes: str | None
    track_outcome: bool
    created_on: datetime
    assignee: str | None = None
    location: str | None = None


_COLUMNS = ", ".join(CalendarActivity.model_fields)


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
        f"SELECT {_COLUMNS} FROM calendar_activities WHERE activity_id = $1", activity_id
    )
    return None if row is None else CalendarActivity.model_validate(dict(row))


async def list_for(
    pool: asyncpg.Pool,
    opportunity_id: str | None = None,
    *,
    assignee: str | None = None,
    due_from: datetime | None = None,
    due_before: datetime | None = None,
    limit: int = 1000,
) -> list[CalendarActivity]:
    """Calendar activities by due date: of one opportunity, of one assignee (an agent's
    calendar), due from `due_from` and before `due_before`, each when given."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM calendar_activities"
        " WHERE ($1::text IS NULL OR opportunity_id = $1)"
        " AND ($2::text IS NULL OR assignee = $2)"
        " AND ($3::timestamptz IS NULL OR starts_at >= $3)"
        " AND ($4::timestamptz IS NULL OR starts_at < $4)"
        " ORDER BY starts_at, activity_id LIMIT $5",
        opportunity_id,
        assignee,
        due_from,
        due_before,
        limit,
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
