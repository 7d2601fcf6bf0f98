"""The opportunity projection: the `opportunities` row and its stage history, written by the
workflow's projection activity, read by reports, the CLI and `verify`."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from sales.effects import CalendarChange
from sales.opportunity import HistoryEntry, OpportunitySummary
from store import calendar


async def project_opportunity(
    pool: asyncpg.Pool,
    summary: OpportunitySummary,
    history: Sequence[HistoryEntry],
    calendar_changes: Sequence[CalendarChange] = (),
) -> bool:
    """Write the opportunity's row, its new history entries and the changes to its calendar
    activities, idempotently, in one transaction.

    A row is replaced only by the same or a higher revision, so a late retry of an older write
    cannot roll the projection back; history rows are keyed by (opportunity, seq), so a retried
    write never duplicates one; calendar changes only change an active row. The same revision
    written again replaces the row and its entries: a workflow task that wrote by local
    activity and never completed (its worker died) runs again with a later clock, and its
    second write is the one the workflow keeps. Returns whether the row was written.
    """
    async with pool.acquire() as conn:
        if not history and not calendar_changes:
            # Most commands move no stage: one statement, committed by itself, instead of a
            # transaction's three round trips (each a wake-up of a busy worker's event loop).
            return await _upsert_summary(conn, summary)
        async with conn.transaction():
            await calendar.apply_changes(conn, calendar_changes)
            written = await _upsert_summary(conn, summary)
            await conn.executemany(
                "INSERT INTO opportunity_history (opportunity_id, seq, at, from_stage, to_stage,"
                " source, by, reason, canceled_activities, created_activities)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                " ON CONFLICT (opportunity_id, seq) DO UPDATE SET at = EXCLUDED.at,"
                " from_stage = EXCLUDED.from_stage, to_stage = EXCLUDED.to_stage,"
                " source = EXCLUDED.source, by = EXCLUDED.by, reason = EXCLUDED.reason,"
                " canceled_activities = EXCLUDED.canceled_activities,"
                " created_activities = EXCLUDED.created_activities",
                [
                    (
                        summary.opportunity_id,
                        entry.seq,
                        entry.at,
                        entry.from_stage,
                        entry.to_stage,
                        entry.source,
                        entry.by,
                        entry.reason,
                        entry.canceled_activities,
                        entry.created_activities,
                    )
                    for entry in history
                ],
            )
        return written


async def _upsert_summary(
    conn: asyncpg.pool.PoolConnectionProxy, summary: OpportunitySummary
) -> bool:
    """The opportunity's row, replaced by the same or a higher revision; whether it was
    written."""
    written = await conn.fetchval(
        """
        INSERT INTO opportunities (opportunity_id, contact_id, process_id, process_version,
            name, owner, status, current_stage, stage_entered_at, closed_at, open_actions,
            created_at, updated_at, revision)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now(), $13)
        ON CONFLICT (opportunity_id) DO UPDATE SET
            process_id = EXCLUDED.process_id, process_version = EXCLUDED.process_version,
            name = EXCLUDED.name, owner = EXCLUDED.owner, status = EXCLUDED.status,
            current_stage = EXCLUDED.current_stage,
            stage_entered_at = EXCLUDED.stage_entered_at, closed_at = EXCLUDED.closed_at,
            open_actions = EXCLUDED.open_actions, updated_at = now(),
            revision = EXCLUDED.revision
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
    )
    return bool(written)


async def get_opportunity(pool: asyncpg.Pool, opportunity_id: str) -> OpportunitySummary | None:
    row = await pool.fetchrow(
        f"SELECT {', '.join(OpportunitySummary.model_fields)} FROM opportunities"
        " WHERE opportunity_id = $1",
        opportunity_id,
    )
    return None if row is None else OpportunitySummary.model_validate(dict(row))


async def get_history(pool: asyncpg.Pool, opportunity_id: str) -> list[HistoryEntry]:
    rows = await pool.fetch(
        "SELECT seq, at, from_stage, to_stage, source, by, reason, canceled_activities,"
        " created_activities FROM opportunity_history"
        " WHERE opportunity_id = $1 ORDER BY seq",
        opportunity_id,
    )
    return [HistoryEntry.model_validate(dict(row)) for row in rows]
