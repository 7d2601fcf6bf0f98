"""The outbox of opportunity events (`opportunity_events`), read in the order transactions
committed: only rows of transactions older than the oldest one still running (the fence), by
(xid, position), so a row committed late is read after, never skipped."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from sales.events import OpportunityEvent

Cursor = tuple[int, int]
"""Where a reader stands: the (xid, position) of the last row it read."""


class ReadEvents(BaseModel):
    events: list[OpportunityEvent]
    cursor: Cursor | None
    """The cursor after the last of `events` (the one given when there are none)."""


async def read(
    pool: asyncpg.Pool,
    *,
    after: Cursor | None = None,
    opportunity_id: str | None = None,
    types: list[str] | None = None,
    since: datetime | None = None,
    limit: int = 500,
) -> ReadEvents:
    """The next events after `after`, oldest first, of one opportunity and of these types
    and from `since` when given."""
    xid, position = after if after is not None else (0, 0)
    rows = await pool.fetch(
        "SELECT opportunity_id, seq, event_id, type, at, data,"
        " xid::text::bigint AS xid, position FROM opportunity_events"
        " WHERE xid < pg_snapshot_xmin(pg_current_snapshot())"
        " AND (xid, position) > ($1::text::xid8, $2::bigint)"
        " AND ($3::text IS NULL OR opportunity_id = $3)"
        " AND ($4::text[] IS NULL OR type = ANY($4))"
        " AND ($5::timestamptz IS NULL OR at >= $5)"
        " ORDER BY xid, position LIMIT $6",
        str(xid),
        position,
        opportunity_id,
        types,
        since,
        limit,
    )
    events = [_event(row) for row in rows]
    cursor = (rows[-1]["xid"], rows[-1]["position"]) if rows else after
    return ReadEvents(events=events, cursor=cursor)


def _event(row: Any) -> OpportunityEvent:
    fields = dict(row)
    if isinstance(fields["data"], str):
        fields["data"] = json.loads(fields["data"])
    return OpportunityEvent.model_validate(
        {name: fields[name] for name in OpportunityEvent.model_fields}
    )
