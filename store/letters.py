"""Letter templates and the letters sent or filed (`letter_templates`, `letters`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel, computed_field

from sales.effects import SendLetter


class Template(BaseModel):
    name: str
    body: str
    updated_at: datetime | None = None
    timeouts: int = 0
    """Renders in a row that ran out of time (`activities.letters` marks it slow)."""
    last_timeout_at: datetime | None = None
    slow_since: datetime | None = None
    """When it was marked slow; None: it is not."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def slow(self) -> bool:
        return self.slow_since is not None


_TEMPLATE_COLUMNS = ", ".join(Template.model_fields)


async def put_template(pool: asyncpg.Pool, name: str, body: str) -> None:
    """Insert or replace a template as it is (`activities.letters.put_template` checks it).
    A new body starts with no timeouts and not slow; the same body keeps its record."""
    await pool.execute(
        "INSERT INTO letter_templates (name, body) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body, updated_at = now(),"
        "  timeouts = CASE WHEN letter_templates.body = EXCLUDED.body"
        "   THEN letter_templates.timeouts ELSE 0 END,"
        "  last_timeout_at = CASE WHEN letter_templates.body = EXCLUDED.body"
        "   THEN letter_templates.last_timeout_at END,"
        "  slow_since = CASE WHEN letter_templates.body = EXCLUDED.body"
        "   THEN letter_templates.slow_since END",
        name,
        body,
    )


async def get_template(pool: asyncpg.Pool, name: str) -> Template | None:
    row = await pool.fetchrow(
        f"SELECT {_TEMPLATE_COLUMNS} FROM letter_templates WHERE name = $1", name
    )
    return None if row is None else Template.model_validate(dict(row))


async def list_templates(pool: asyncpg.Pool) -> list[Template]:
    rows = await pool.fetch(f"SELECT {_TEMPLATE_COLUMNS} FROM letter_templates ORDER BY name")
    return [Template.model_validate(dict(row)) for row in rows]


async def record_timeout(
    pool: asyncpg.Pool, name: str, body: str, *, slow_after: int
) -> Template | None:
    """Count a render of this body that ran out of time; the `slow_after`th in a row marks
    the template slow. None if the template was replaced or removed meanwhile."""
    row = await pool.fetchrow(
        "UPDATE letter_templates SET timeouts = timeouts + 1, last_timeout_at = now(),"
        "  slow_since = CASE WHEN slow_since IS NULL AND timeouts + 1 >= $3 THEN now()"
        "   ELSE slow_since END"
        f" WHERE name = $1 AND body = $2 RETURNING {_TEMPLATE_COLUMNS}",
        name,
        body,
        slow_after,
    )
    return None if row is None else Template.model_validate(dict(row))


async def clear_timeouts(pool: asyncpg.Pool, name: str, body: str) -> None:
    """A render of this body finished in time: no timeouts in a row, not slow."""
    await pool.execute(
        "UPDATE letter_templates SET timeouts = 0, last_timeout_at = NULL, slow_since = NULL"
        " WHERE name = $1 AND body = $2 AND (timeouts > 0 OR slow_since IS NOT NULL)",
        name,
        body,
    )


class Letter(BaseModel):
    letter_id: str
    opportunity_id: str
    action_id: str
    generation: int
    contact_id: str
    template: str
    method: str
    subject: str | None
    body: str
    message_id: str | None
    recipient: str | None
    sent_at: datetime | None


async def list_letters(pool: asyncpg.Pool, opportunity_id: str) -> list[Letter]:
    rows = await pool.fetch(
        f"SELECT {', '.join(Letter.model_fields)} FROM letters WHERE opportunity_id = $1"
        " ORDER BY created_at",
        opportunity_id,
    )
    return [Letter.model_validate(dict(row)) for row in rows]


async def log_letter(
    pool: asyncpg.Pool,
    effect: SendLetter,
    *,
    subject: str,
    body: str,
    method: str,
    message_id: str | None,
    recipient: str | None,
    sent: bool,
) -> asyncpg.Record:
    """Insert the letter row once; return the stored row (the first attempt's)."""
    row = await pool.fetchrow(
        "INSERT INTO letters (letter_id, opportunity_id, action_id, generation, contact_id,"
        " template, method, subject, body, message_id, recipient, sent_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
        "  CASE WHEN $12 THEN now() END)"
        " ON CONFLICT (opportunity_id, action_id, generation) DO NOTHING"
        " RETURNING recipient, subject, body, message_id, sent_at",
        effect.letter_id,
        effect.opportunity_id,
        effect.action_id,
        effect.generation,
        effect.contact_id,
        effect.template,
        method,
        subject,
        body,
        message_id,
        recipient,
        sent,
    )
    if row is not None:
        return row
    row = await pool.fetchrow(  # an earlier attempt stored it
        "SELECT recipient, subject, body, message_id, sent_at FROM letters"
        " WHERE opportunity_id = $1 AND action_id = $2 AND generation = $3",
        effect.opportunity_id,
        effect.action_id,
        effect.generation,
    )
    assert row is not None
    return row


async def mark_sent(pool: asyncpg.Pool, effect: SendLetter) -> None:
    await pool.execute(
        "UPDATE letters SET sent_at = now()"
        " WHERE opportunity_id = $1 AND action_id = $2 AND generation = $3",
        effect.opportunity_id,
        effect.action_id,
        effect.generation,
    )


LetterStatus = Literal["sent", "filed", "pending"]
"""`filed`: a document to print; `sent`: e-mailed; `pending`: an e-mail not sent yet."""

_STATUS_SQL = (
    "CASE WHEN method = 'document' THEN 'filed' WHEN sent_at IS NOT NULL THEN 'sent'"
    " ELSE 'pending' END"
)


class LetterRow(Letter):
    status: str
    created_at: datetime


async def find_letters(
    pool: asyncpg.Pool,
    *,
    opportunity_id: str | None = None,
    status: LetterStatus | None = None,
    limit: int = 200,
) -> list[LetterRow]:
    """Letters, newest first, of one opportunity and in one status when given."""
    rows = await pool.fetch(
        f"SELECT {', '.join(Letter.model_fields)}, created_at, {_STATUS_SQL} AS status"
        " FROM letters WHERE ($1::text IS NULL OR opportunity_id = $1)"
        f" AND ($2::text IS NULL OR {_STATUS_SQL} = $2)"
        " ORDER BY created_at DESC, letter_id LIMIT $3",
        opportunity_id,
        status,
        limit,
    )
    return [LetterRow.model_validate(dict(row)) for row in rows]


async def get_letter(pool: asyncpg.Pool, letter_id: str) -> LetterRow | None:
    row = await pool.fetchrow(
        f"SELECT {', '.join(Letter.model_fields)}, created_at, {_STATUS_SQL} AS status"
        " FROM letters WHERE letter_id = $1",
        letter_id,
    )
    return None if row is None else LetterRow.model_validate(dict(row))
