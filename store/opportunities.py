"""The opportunity projection: the `opportunities` row and its stage history, written by the
workflow's projection activity, read by reports, the CLI and `verify`."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from sales.effects import CalendarChange
from sales.events import OpportunityEvent
from sales.opportunity import (
    DeadLetter,
    DetailChange,
    HistoryEntry,
    OpportunitySummary,
    Remark,
    StageLeft,
)
from sales.validation import MAX_MESSAGE
from store import calendar


async def project_opportunity(
    pool: asyncpg.Pool,
    summary: OpportunitySummary,
    history: Sequence[HistoryEntry],
    calendar_changes: Sequence[CalendarChange] = (),
    remarks: Sequence[Remark] = (),
    run_id: str | None = None,
    left: Sequence[StageLeft] = (),
    details: Sequence[DetailChange] = (),
    events: Sequence[OpportunityEvent] = (),
) -> bool:
    """Write the opportunity's row, its new history entries and remarks, and the changes to
    its calendar activities, idempotently, in one transaction.

    A row is replaced only by the same or a higher revision, so a late retry of an older write
    cannot roll the projection back; history rows and remarks are keyed by (opportunity,
    seq), so a retried write never duplicates one (and a later write of the same seq replaces
    it, as a row); calendar changes only change an active
    row. The same revision written again replaces the row and its entries: a workflow task
    that wrote by local activity and never completed (its worker died) runs again with a
    later clock, and its second write is the one the workflow keeps. `run_id` names the run
    that wrote (the opportunity's real run). Returns whether the row was written.
    """
    async with pool.acquire() as conn:
        if not (history or calendar_changes or remarks or left or details or events):
            # Most commands move no stage: one statement, committed by itself, instead of a
            # transaction's three round trips (each a wake-up of a busy worker's event loop).
            return await _upsert_summary(conn, summary, run_id)
        async with conn.transaction():
            await calendar.apply_changes(conn, calendar_changes)
            written = await _upsert_summary(conn, summary, run_id)
            await _insert_history(conn, summary.opportunity_id, history)
            await _record_left(conn, summary.opportunity_id, left)
            await _insert_remarks(conn, summary.opportunity_id, remarks)
            await _insert_details(conn, summary.opportunity_id, details)
            await insert_events(conn, events)
        return written


async def project_part_by_part(
    pool: asyncpg.Pool,
    summary: OpportunitySummary,
    history: Sequence[HistoryEntry],
    calendar_changes: Sequence[CalendarChange],
    remarks: Sequence[Remark],
    run_id: str | None,
    refused: Callable[[Exception], bool],
    left: Sequence[StageLeft] = (),
    details: Sequence[DetailChange] = (),
    events: Sequence[OpportunityEvent] = (),
) -> list[DeadLetter]:
    """The same write, one part at a time (each in a savepoint): a part the database refuses
    (`refused` tells its errors apart from a passing fault, which is raised) is kept in
    `dead_letters` with why, instead of holding back the rest, which is written. Returns the
    parts refused."""
    opportunity_id = summary.opportunity_id
    dead: list[tuple[str, str, str]] = []
    async with pool.acquire() as conn, conn.transaction():

        async def part(what: str, payload: Any, write: Callable[[], Awaitable[Any]]) -> None:
            try:
                async with conn.transaction():
                    await write()
            except Exception as error:
                if not refused(error):
                    raise
                why = " ".join(str(error).split())[:MAX_MESSAGE] or type(error).__name__
                dead.append((what, why, json.dumps(payload, default=str)))

        for change in calendar_changes:
            await part(
                f"calendar {change.kind.removesuffix('_calendar_activity')} "
                f"{change.key.activity_id}",
                change.model_dump(mode="json"),
                functools.partial(calendar.apply_changes, conn, [change]),
            )
        await part(
            "opportunity row",
            summary.model_dump(mode="json"),
            functools.partial(_upsert_summary, conn, summary, run_id),
        )
        for entry in history:
            await part(
                f"history #{entry.seq}",
                entry.model_dump(mode="json"),
                functools.partial(_insert_history, conn, opportunity_id, [entry]),
            )
        for stay in left:
            await part(
                f"history #{stay.seq} left",
                stay.model_dump(mode="json"),
                functools.partial(_record_left, conn, opportunity_id, [stay]),
            )
        for remark in remarks:
            await part(
                f"remark #{remark.seq}",
                remark.model_dump(mode="json"),
                functools.partial(_insert_remarks, conn, opportunity_id, [remark]),
            )
        for detail in details:
            await part(
                f"detail change #{detail.seq}",
                detail.model_dump(mode="json"),
                functools.partial(_insert_details, conn, opportunity_id, [detail]),
            )
        for event in events:
            await part(
                f"event #{event.seq}",
                event.model_dump(mode="json"),
                functools.partial(insert_events, conn, [event]),
            )
        await conn.executemany(
            "INSERT INTO dead_letters (opportunity_id, revision, what, why, payload)"
            " VALUES ($1, $2, $3, $4, $5::text::jsonb) ON CONFLICT DO NOTHING",
            [(opportunity_id, summary.revision, *letter) for letter in dead],
        )
    return [DeadLetter(what=what, why=why) for what, why, _ in dead]


async def dead_letters(pool: asyncpg.Pool, opportunity_id: str) -> list[DeadLetter]:
    """The parts of the opportunity's projection the database refused, oldest first."""
    rows = await pool.fetch(
        "SELECT what, why, at FROM dead_letters WHERE opportunity_id = $1 ORDER BY at, what",
        opportunity_id,
    )
    return [DeadLetter.model_validate(dict(row)) for row in rows]


async def _insert_history(
    conn: asyncpg.pool.PoolConnectionProxy, opportunity_id: str, history: Sequence[HistoryEntry]
) -> None:
    await conn.executemany(
        "INSERT INTO opportunity_history (opportunity_id, seq, at, from_stage, to_stage,"
        " source, by, reason, canceled_activities, created_activities, left_at,"
        " duration_seconds, actor, actor_service, verified, left_for)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        " ON CONFLICT (opportunity_id, seq) DO UPDATE SET at = EXCLUDED.at,"
        " from_stage = EXCLUDED.from_stage, to_stage = EXCLUDED.to_stage,"
        " source = EXCLUDED.source, by = EXCLUDED.by, reason = EXCLUDED.reason,"
        " canceled_activities = EXCLUDED.canceled_activities,"
        " created_activities = EXCLUDED.created_activities,"
        " left_at = COALESCE(EXCLUDED.left_at, opportunity_history.left_at),"
        " duration_seconds = COALESCE(EXCLUDED.duration_seconds,"
        " opportunity_history.duration_seconds), actor = EXCLUDED.actor,"
        " actor_service = EXCLUDED.actor_service, verified = EXCLUDED.verified,"
        " left_for = COALESCE(EXCLUDED.left_for, opportunity_history.left_for)",
        [
            (
                opportunity_id,
                entry.seq,
                entry.at,
                entry.from_stage,
                entry.to_stage,
                entry.source,
                entry.by,
                entry.reason,
                entry.canceled_activities,
                entry.created_activities,
                entry.left_at,
                entry.duration_seconds,
                entry.actor,
                entry.actor_service,
                entry.verified,
                entry.left_for,
            )
            for entry in history
        ],
    )


async def _record_left(
    conn: asyncpg.pool.PoolConnectionProxy, opportunity_id: str, left: Sequence[StageLeft]
) -> None:
    """When the stages the history entries entered were left (after the entries, so an entry
    written in the same write is there)."""
    await conn.executemany(
        "UPDATE opportunity_history SET left_at = $3, duration_seconds = $4, left_for = $5"
        " WHERE opportunity_id = $1 AND seq = $2",
        [
            (opportunity_id, stay.seq, stay.left_at, stay.duration_seconds, stay.left_for)
            for stay in left
        ],
    )


async def _insert_details(
    conn: asyncpg.pool.PoolConnectionProxy, opportunity_id: str, changes: Sequence[DetailChange]
) -> None:
    await conn.executemany(
        "INSERT INTO opportunity_detail_changes (opportunity_id, seq, what, from_value,"
        " to_value, by, at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (opportunity_id, seq) DO UPDATE SET what = EXCLUDED.what,"
        " from_value = EXCLUDED.from_value, to_value = EXCLUDED.to_value, by = EXCLUDED.by,"
        " at = EXCLUDED.at",
        [(opportunity_id, c.seq, c.what, c.from_value, c.to_value, c.by, c.at) for c in changes],
    )


async def insert_events(
    conn: asyncpg.pool.PoolConnectionProxy, events: Sequence[OpportunityEvent]
) -> None:
    """The outbox's rows, and the audit trail's; an event written again (a retried write) is
    not written twice."""
    await conn.executemany(
        "WITH outbox AS (INSERT INTO opportunity_events (opportunity_id, seq, event_id, type,"
        " at, data) VALUES ($1, $2, $3, $4, $5, $6::text::jsonb) ON CONFLICT DO NOTHING)"
        " INSERT INTO opportunity_audit (opportunity_id, seq, type, at, data)"
        " VALUES ($1, $2, $4, $5, $6::text::jsonb) ON CONFLICT DO NOTHING",
        [(e.opportunity_id, e.seq, e.event_id, e.type, e.at, json.dumps(e.data)) for e in events],
    )


async def audit_trail(
    pool: asyncpg.Pool, opportunity_id: str, *, limit: int = 10_000
) -> list[dict[str, Any]]:
    """The opportunity's audit trail, oldest first: every event, kept for good."""
    rows = await pool.fetch(
        "SELECT seq, type, at, data FROM opportunity_audit WHERE opportunity_id = $1"
        " ORDER BY seq LIMIT $2",
        opportunity_id,
        limit,
    )
    return [
        {**dict(row), "data": json.loads(row["data"]) if isinstance(row["data"], str)
         else row["data"]} for row in rows
    ]  # fmt: skip


async def detail_changes(
    pool: asyncpg.Pool, opportunity_id: str, *, limit: int = 1000
) -> list[DetailChange]:
    """The opportunity's detail changes, oldest first."""
    rows = await pool.fetch(
        "SELECT seq, what, from_value, to_value, by, at FROM opportunity_detail_changes"
        " WHERE opportunity_id = $1 ORDER BY seq LIMIT $2",
        opportunity_id,
        limit,
    )
    return [DetailChange.model_validate(dict(row)) for row in rows]


async def _insert_remarks(
    conn: asyncpg.pool.PoolConnectionProxy, opportunity_id: str, remarks: Sequence[Remark]
) -> None:
    await conn.executemany(
        "INSERT INTO remarks (opportunity_id, seq, at, by, text) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (opportunity_id, seq) DO UPDATE SET at = EXCLUDED.at, by = EXCLUDED.by,"
        " text = EXCLUDED.text",
        [(opportunity_id, r.seq, r.at, r.by, r.text) for r in remarks],
    )


async def list_remarks(
    pool: asyncpg.Pool, opportunity_id: str, *, limit: int = 1000
) -> list[Remark]:
    """The opportunity's remarks, newest first."""
    rows = await pool.fetch(
        "SELECT seq, at, by, text FROM remarks WHERE opportunity_id = $1"
        " ORDER BY seq DESC LIMIT $2",
        opportunity_id,
        limit,
    )
    return [Remark.model_validate(dict(row)) for row in rows]


async def _upsert_summary(
    conn: asyncpg.pool.PoolConnectionProxy, summary: OpportunitySummary, run_id: str | None
) -> bool:
    """The opportunity's row, replaced by the same or a higher revision; whether it was
    written."""
    written = await conn.fetchval(
        """
        INSERT INTO opportunities (opportunity_id, contact_id, process_id, process_version,
            name, owner, status, current_stage, stage_entered_at, closed_at, open_actions,
            created_at, updated_at, revision, failed_actions, run_id, amount, currency,
            won_amount, expected_close_date, probability, forecast_category,
            include_in_forecast, close_reason, idle_since)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now(), $13, $14, $15,
            $16, $17, $18, $19, $20, $21, $22, $23, $24)
        ON CONFLICT (opportunity_id) DO UPDATE SET
            process_id = EXCLUDED.process_id, process_version = EXCLUDED.process_version,
            name = EXCLUDED.name, owner = EXCLUDED.owner, status = EXCLUDED.status,
            current_stage = EXCLUDED.current_stage,
            stage_entered_at = EXCLUDED.stage_entered_at, closed_at = EXCLUDED.closed_at,
            open_actions = EXCLUDED.open_actions, updated_at = now(),
            revision = EXCLUDED.revision, failed_actions = EXCLUDED.failed_actions,
            run_id = COALESCE(EXCLUDED.run_id, opportunities.run_id),
            amount = EXCLUDED.amount, currency = EXCLUDED.currency,
            won_amount = EXCLUDED.won_amount,
            expected_close_date = EXCLUDED.expected_close_date,
            probability = EXCLUDED.probability, forecast_category = EXCLUDED.forecast_category,
            include_in_forecast = EXCLUDED.include_in_forecast,
            close_reason = EXCLUDED.close_reason, idle_since = EXCLUDED.idle_since
        WHERE opportunities.revision <= EXCLUDED.revision
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
        summary.failed_actions,
        run_id,
        summary.amount,
        summary.currency,
        summary.won_amount,
        summary.expected_close_date,
        summary.probability,
        summary.forecast_category,
        summary.include_in_forecast,
        summary.close_reason,
        summary.idle_since,
    )
    return bool(written)


async def get_opportunity(pool: asyncpg.Pool, opportunity_id: str) -> OpportunitySummary | None:
    row = await pool.fetchrow(
        f"SELECT {', '.join(OpportunitySummary.model_fields)} FROM opportunities"
        " WHERE opportunity_id = $1",
        opportunity_id,
    )
    return None if row is None else OpportunitySummary.model_validate(dict(row))


async def find_run(pool: asyncpg.Pool, opportunity_id: str) -> tuple[str, str | None] | None:
    """The opportunity's status and the id of the run that last wrote its row (its real
    run); None when the read model has no such opportunity."""
    row = await pool.fetchrow(
        "SELECT status, run_id FROM opportunities WHERE opportunity_id = $1", opportunity_id
    )
    return None if row is None else (row["status"], row["run_id"])


async def get_history(pool: asyncpg.Pool, opportunity_id: str) -> list[HistoryEntry]:
    rows = await pool.fetch(
        "SELECT seq, at, from_stage, to_stage, source, by, reason, canceled_activities,"
        " created_activities, left_at, duration_seconds, left_for, actor, actor_service,"
        " verified FROM opportunity_history WHERE opportunity_id = $1 ORDER BY seq",
        opportunity_id,
    )
    return [HistoryEntry.model_validate(dict(row)) for row in rows]
