"""Subscriptions and their deliveries (`subscriptions`, `subscription_deliveries`).

A subscription takes the outbox's events in the order transactions committed, with the
outbox's fence (store/outbox.py): each intake moves its cursor past the rows it read and
keeps the ones it wants as deliveries, in the same transaction. Only the head of each
opportunity's deliveries (its lowest `seq`) is ever due, so one opportunity's failing or
parked event holds back that opportunity's later events and no other's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel

from sales.events import OpportunityEvent
from sales.subscriptions import Subscription, SubscriptionStatus

_COLUMNS = "subscription_id, url, workflow_id, events, process_id, status, created_by"


class SubscriptionRow(BaseModel):
    """A subscription with where its deliveries stand."""

    subscription: Subscription
    delivered: int
    last_delivered_at: datetime | None
    pending: int
    parked: int
    oldest_undelivered_at: datetime | None
    created_at: datetime


class Delivery(BaseModel):
    """An event due to a subscriber, with its failures so far."""

    event: OpportunityEvent
    attempts: int
    first_failed_at: datetime | None


class ParkedDelivery(BaseModel):
    event_id: str
    opportunity_id: str
    seq: int
    type: str
    attempts: int
    first_failed_at: datetime | None
    parked_at: datetime
    last_error: str | None


class AlreadyExists(Exception):
    pass


async def add(
    pool: asyncpg.Pool,
    subscription: Subscription,
    *,
    secret: bytes | None,
    secret_key_id: str | None,
) -> None:
    """Store a new subscription; it hears the events committed from now on."""
    try:
        await pool.execute(
            "INSERT INTO subscriptions (subscription_id, url, workflow_id, events, process_id,"
            " secret, secret_key_id, status, created_by, cursor_xid)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, pg_snapshot_xmin(pg_current_snapshot()))",
            subscription.subscription_id,
            subscription.url,
            subscription.workflow_id,
            subscription.events,
            subscription.process_id,
            secret,
            secret_key_id,
            subscription.status,
            subscription.created_by,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExists(subscription.subscription_id) from None


def _subscription(row: Any) -> Subscription:
    return Subscription.model_validate({name: row[name] for name in _COLUMNS.split(", ")})


async def get(pool: asyncpg.Pool, subscription_id: str) -> Subscription | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE subscription_id = $1", subscription_id
    )
    return _subscription(row) if row else None


async def secret(pool: asyncpg.Pool, subscription_id: str) -> tuple[str, bytes] | None:
    """The sealed secret and the id of the key that sealed it."""
    row = await pool.fetchrow(
        "SELECT secret_key_id, secret FROM subscriptions WHERE subscription_id = $1",
        subscription_id,
    )
    if row is None or row["secret"] is None:
        return None
    return row["secret_key_id"], bytes(row["secret"])


async def rows(
    pool: asyncpg.Pool, subscription_id: str | None = None, *, include_deleted: bool = False
) -> list[SubscriptionRow]:
    """Subscriptions (one, or all but the deleted) with their delivery counts."""
    found = await pool.fetch(
        f"SELECT {', '.join('s.' + c for c in _COLUMNS.split(', '))}, s.delivered,"
        " s.last_delivered_at, s.created_at,"
        " count(d.seq) AS pending, count(d.parked_at) AS parked,"
        " min(e.written_at) AS oldest_undelivered_at"
        " FROM subscriptions s"
        " LEFT JOIN subscription_deliveries d USING (subscription_id)"
        " LEFT JOIN opportunity_events e ON e.opportunity_id = d.opportunity_id"
        " AND e.seq = d.seq"
        " WHERE ($1::text IS NULL OR s.subscription_id = $1)"
        " AND ($2 OR s.status <> 'deleted')"
        " GROUP BY s.subscription_id ORDER BY s.created_at, s.subscription_id",
        subscription_id,
        include_deleted,
    )
    return [
        SubscriptionRow(
            subscription=_subscription(row),
            delivered=row["delivered"],
            last_delivered_at=row["last_delivered_at"],
            pending=row["pending"],
            parked=row["parked"],
            oldest_undelivered_at=row["oldest_undelivered_at"],
            created_at=row["created_at"],
        )
        for row in found
    ]


async def set_status(pool: asyncpg.Pool, subscription_id: str, status: SubscriptionStatus) -> bool:
    """Pause, resume or delete (its undelivered events are dropped); False if there is no
    such subscription, or it is deleted."""
    async with pool.acquire() as conn, conn.transaction():
        changed = await conn.fetchval(
            "UPDATE subscriptions SET status = $2 WHERE subscription_id = $1"
            " AND status <> 'deleted' RETURNING true",
            subscription_id,
            status,
        )
        if changed and status == "deleted":
            await conn.execute(
                "DELETE FROM subscription_deliveries WHERE subscription_id = $1", subscription_id
            )
    return bool(changed)


async def intake(pool: asyncpg.Pool, subscription_id: str, *, limit: int = 1000) -> int | None:
    """Take the outbox's next committed rows into the subscription's deliveries (those it
    wants) and move its cursor past them; the number of rows read (0: none are waiting), or
    None if the subscription is not active."""
    async with pool.acquire() as conn, conn.transaction():
        sub = await conn.fetchrow(
            "SELECT events, process_id, cursor_xid::text::bigint AS xid, cursor_position"
            " FROM subscriptions WHERE subscription_id = $1 AND status = 'active' FOR UPDATE",
            subscription_id,
        )
        if sub is None:
            return None
        found = await conn.fetch(
            "SELECT e.opportunity_id, e.seq, e.type, o.process_id,"
            " e.xid::text::bigint AS xid, e.position FROM opportunity_events e"
            " LEFT JOIN opportunities o ON o.opportunity_id = e.opportunity_id"
            " WHERE e.xid < pg_snapshot_xmin(pg_current_snapshot())"
            " AND (e.xid, e.position) > ($1::text::xid8, $2::bigint)"
            " ORDER BY e.xid, e.position LIMIT $3",
            str(sub["xid"]),
            sub["cursor_position"],
            limit,
        )
        if not found:
            return 0
        wanted = [
            (subscription_id, row["opportunity_id"], row["seq"])
            for row in found
            if row["type"] in sub["events"]
            and (sub["process_id"] is None or row["process_id"] == sub["process_id"])
        ]
        if wanted:
            await conn.executemany(
                "INSERT INTO subscription_deliveries (subscription_id, opportunity_id, seq)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                wanted,
            )
        await conn.execute(
            "UPDATE subscriptions SET cursor_xid = $2::text::xid8, cursor_position = $3"
            " WHERE subscription_id = $1",
            subscription_id,
            str(found[-1]["xid"]),
            found[-1]["position"],
        )
        return len(found)


async def due(
    pool: asyncpg.Pool, subscription_id: str, *, limit: int, busy: Sequence[str] = ()
) -> list[Delivery]:
    """The deliveries due now: the head of each opportunity's, unless it is parked or waits
    for its next try, or the opportunity is `busy` (one of its events is in flight); the
    oldest heads first."""
    found = await pool.fetch(
        "SELECT h.*, e.event_id, e.type, e.at, e.data FROM ("
        " SELECT DISTINCT ON (opportunity_id) opportunity_id, seq, attempts, first_failed_at,"
        " next_try_at, parked_at FROM subscription_deliveries WHERE subscription_id = $1"
        " ORDER BY opportunity_id, seq) h"
        " JOIN opportunity_events e ON e.opportunity_id = h.opportunity_id AND e.seq = h.seq"
        " WHERE h.parked_at IS NULL AND h.next_try_at <= now()"
        " AND h.opportunity_id <> ALL($3::text[])"
        " ORDER BY h.next_try_at, e.position LIMIT $2",
        subscription_id,
        limit,
        list(busy),
    )
    return [
        Delivery(
            event=OpportunityEvent(
                event_id=row["event_id"],
                type=row["type"],
                opportunity_id=row["opportunity_id"],
                seq=row["seq"],
                at=row["at"],
                data=json.loads(row["data"]) if isinstance(row["data"], str) else row["data"],
            ),
            attempts=row["attempts"],
            first_failed_at=row["first_failed_at"],
        )
        for row in found
    ]


async def delivered(
    pool: asyncpg.Pool, subscription_id: str, events: Sequence[OpportunityEvent]
) -> None:
    """Delivered events: out of the deliveries, counted, in one statement."""
    if not events:
        return
    await pool.execute(
        "WITH gone AS (DELETE FROM subscription_deliveries WHERE subscription_id = $1"
        " AND (opportunity_id, seq) IN (SELECT * FROM unnest($2::text[], $3::integer[]))"
        " RETURNING 1)"
        " UPDATE subscriptions SET delivered = delivered + (SELECT count(*) FROM gone),"
        " last_delivered_at = now() WHERE subscription_id = $1",
        subscription_id,
        [e.opportunity_id for e in events],
        [e.seq for e in events],
    )


async def failed(
    pool: asyncpg.Pool,
    subscription_id: str,
    event: OpportunityEvent,
    *,
    error: str,
    retry_in: timedelta,
    park: bool,
) -> None:
    """A failed try: counted, tried again after `retry_in`, or parked."""
    await pool.execute(
        "UPDATE subscription_deliveries SET attempts = attempts + 1,"
        " first_failed_at = coalesce(first_failed_at, now()), last_error = $4,"
        " next_try_at = now() + $5::interval,"
        " parked_at = CASE WHEN $6 THEN now() ELSE NULL END"
        " WHERE subscription_id = $1 AND opportunity_id = $2 AND seq = $3",
        subscription_id,
        event.opportunity_id,
        event.seq,
        error[:500],
        retry_in,
        park,
    )


async def parked(
    pool: asyncpg.Pool, subscription_id: str, *, limit: int = 100
) -> list[ParkedDelivery]:
    found = await pool.fetch(
        "SELECT e.event_id, d.opportunity_id, d.seq, e.type, d.attempts, d.first_failed_at,"
        " d.parked_at, d.last_error FROM subscription_deliveries d"
        " JOIN opportunity_events e ON e.opportunity_id = d.opportunity_id AND e.seq = d.seq"
        " WHERE d.subscription_id = $1 AND d.parked_at IS NOT NULL"
        " ORDER BY d.parked_at, d.opportunity_id, d.seq LIMIT $2",
        subscription_id,
        limit,
    )
    return [ParkedDelivery.model_validate(dict(row)) for row in found]


async def redeliver(pool: asyncpg.Pool, subscription_id: str, event_id: str | None) -> int:
    """Parked events (one, or all) tried again at once, their failures forgotten."""
    status = await pool.execute(
        "UPDATE subscription_deliveries d SET parked_at = NULL, attempts = 0,"
        " first_failed_at = NULL, next_try_at = '-infinity', last_error = NULL"
        " FROM opportunity_events e WHERE e.opportunity_id = d.opportunity_id AND e.seq = d.seq"
        " AND d.subscription_id = $1 AND d.parked_at IS NOT NULL"
        " AND ($2::text IS NULL OR e.event_id = $2)",
        subscription_id,
        event_id,
    )
    return int(status.split()[-1])


async def skip(pool: asyncpg.Pool, subscription_id: str, event_id: str | None) -> int:
    """Parked events (one, or all) dropped, never delivered: the opportunity's later events
    flow again."""
    status = await pool.execute(
        "DELETE FROM subscription_deliveries d USING opportunity_events e"
        " WHERE e.opportunity_id = d.opportunity_id AND e.seq = d.seq"
        " AND d.subscription_id = $1 AND d.parked_at IS NOT NULL"
        " AND ($2::text IS NULL OR e.event_id = $2)",
        subscription_id,
        event_id,
    )
    return int(status.split()[-1])


async def lag_seconds(pool: asyncpg.Pool, subscription_id: str) -> float:
    """The age of the oldest event the subscription has not delivered: of those it has taken,
    and of the outbox's rows past its cursor (held back by the fence or not yet taken)."""
    value = await pool.fetchval(
        "SELECT greatest("
        " (SELECT extract(epoch FROM now() - min(e.written_at))"
        "  FROM subscription_deliveries d JOIN opportunity_events e"
        "  ON e.opportunity_id = d.opportunity_id AND e.seq = d.seq"
        "  WHERE d.subscription_id = $1),"
        " (SELECT extract(epoch FROM now() - e.written_at)"
        "  FROM subscriptions s JOIN opportunity_events e"
        "  ON (e.xid, e.position) > (s.cursor_xid, s.cursor_position)"
        "  WHERE s.subscription_id = $1 ORDER BY e.xid, e.position LIMIT 1),"
        " 0)::float8",
        subscription_id,
    )
    return float(value or 0.0)


async def prune_events(pool: asyncpg.Pool, older_than: timedelta, *, batch: int = 5000) -> int:
    """Delete outbox rows written more than `older_than` ago that no subscription still
    needs: each live subscription has read past them and none holds them undelivered."""
    deleted = 0
    while True:
        status = await pool.execute(
            "DELETE FROM opportunity_events WHERE ctid IN ("
            " SELECT e.ctid FROM opportunity_events e"
            " WHERE e.written_at < now() - $1::interval"
            " AND NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.status <> 'deleted'"
            " AND (e.xid, e.position) > (s.cursor_xid, s.cursor_position))"
            " AND NOT EXISTS (SELECT 1 FROM subscription_deliveries d"
            " WHERE d.opportunity_id = e.opportunity_id AND d.seq = e.seq)"
            " LIMIT $2)",
            older_than,
            batch,
        )
        count = int(status.split()[-1])
        deleted += count
        if count < batch:
            return deleted
