"""The outbox's retention deletes old events that no subscription still needs, and never one
a subscription has not read yet, holds undelivered or parked. (In a schema of its own: the
session's other subscriptions hold the shared outbox's rows.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from sales.events import OpportunityEvent
from sales.subscriptions import Subscription
from store import subscriptions
from store.opportunities import insert_events
from store.schema import migrate


@pytest.fixture
async def own_schema(postgres_url: str, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """A schema with the service's tables, before `public` (where `pool` has put the
    extensions the migrations use)."""
    schema = f"retention_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    own = await asyncpg.create_pool(
        postgres_url, server_settings={"search_path": f"{schema}, public"}
    )
    assert own is not None
    try:
        await migrate(own)
        yield own
    finally:
        await own.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def _event(opp: str, seq: int) -> OpportunityEvent:
    return OpportunityEvent(
        event_id=f"{opp}/{seq}", type="won", opportunity_id=opp, seq=seq, at=datetime.now(UTC)
    )


async def _write(pool: asyncpg.Pool, events: list[OpportunityEvent], days_ago: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await insert_events(conn, events)
        await conn.execute(
            "UPDATE opportunity_events SET written_at = now() - $1::interval"
            " WHERE event_id = ANY($2)",
            timedelta(days=days_ago),
            [e.event_id for e in events],
        )


async def _left(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT event_id FROM opportunity_events ORDER BY event_id")
    return [row["event_id"] for row in rows]


async def test_old_events_go_once_no_subscription_needs_them(own_schema: asyncpg.Pool) -> None:
    pool = own_schema
    await _write(pool, [_event("a", 1), _event("a", 2)], days_ago=40)
    await _write(pool, [_event("b", 1)], days_ago=1)  # within the retention
    assert await subscriptions.prune_events(pool, timedelta(days=30)) == 2
    assert await _left(pool) == ["b/1"]

    sub = Subscription(subscription_id="s", workflow_id="w", events=["won"])
    await subscriptions.add(pool, sub, secret=None, secret_key_id=None)
    await _write(pool, [_event("c", 1), _event("c", 2), _event("d", 1)], days_ago=40)
    assert await subscriptions.prune_events(pool, timedelta(days=30)) == 0, "not yet read"
    assert await subscriptions.lag_seconds(pool, "s") > 39 * 86400, "the lag counts unread rows"

    assert await subscriptions.intake(pool, "s") == 3
    [head_c, head_d] = sorted(
        await subscriptions.due(pool, "s", limit=10), key=lambda d: d.event.opportunity_id
    )
    await subscriptions.delivered(pool, "s", [head_d.event])
    await subscriptions.failed(pool, "s", head_c.event, error="down", retry_in=timedelta(0),
                               park=True)  # fmt: skip
    assert await subscriptions.prune_events(pool, timedelta(days=30)) == 1, "d/1 delivered"
    assert await _left(pool) == ["b/1", "c/1", "c/2"], "c/1 parked and c/2 behind it stay"

    assert await subscriptions.lag_seconds(pool, "s") > 39 * 86400, "and undelivered ones"
    assert await subscriptions.skip(pool, "s", "c/1") == 1
    assert await subscriptions.prune_events(pool, timedelta(days=30)) == 1
    assert await _left(pool) == ["b/1", "c/2"]

    await subscriptions.set_status(pool, "s", "deleted")
    assert await subscriptions.prune_events(pool, timedelta(days=30)) == 1, "nobody needs it"
    assert await _left(pool) == ["b/1"]
    audited = await pool.fetchval("SELECT count(*) FROM opportunity_audit")
    assert audited == 6, "the audit trail keeps every event"
