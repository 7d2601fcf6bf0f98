"""Finding opportunities in the read model: the filters of `opportunities search`, sorting and
paging. The SQL is assembled from fixed clauses; every user value is a parameter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from sales.opportunity import OpportunitySummary, Status
from sales.validation import Line, json_size
from sales.value import Amount, CloseDate, ForecastCategory

MAX_IDS = 10_000
"""Ids one search (and one mass modification) may name or select."""
MAX_IDS_BYTES = 384 * 1024
"""The most those ids may take as JSON (a mass modification carries them in one payload):
10,000 ids of 36 characters on average."""


def json_bytes_at_most(limit: int) -> Callable[[Any], Any]:
    """A validator refusing a value larger than `limit` bytes as JSON."""

    def check(value: Any) -> Any:
        size = json_size(value)
        if size > limit:
            raise ValueError(f"takes {size:,} bytes as JSON; at most {limit:,}")
        return value

    return check


SearchIds = Annotated[
    list[Line], Field(max_length=MAX_IDS), AfterValidator(json_bytes_at_most(MAX_IDS_BYTES))
]
"""Opportunity ids to search among: at most `MAX_IDS`, `MAX_IDS_BYTES` in all."""

SortKey = Literal[
    "opportunity_id", "name", "owner", "current_stage", "stage_entered_at", "status", "created_at"
]


class SearchFilters(BaseModel):
    """All given filters must match (AND); none given matches every opportunity. Every text
    is one `Line` (500 characters), so the filters take at most `MAX_IDS_BYTES` plus a few
    KiB as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    process_id: Line | None = None
    stage: Line | None = None
    status: Status | None = None
    contact_id: Line | None = None
    owner: Line | None = None
    name: Line | None = None
    """Case-insensitive substring of the opportunity's name."""
    entered_before: datetime | None = None
    entered_after: datetime | None = None
    has_open_actions: bool | None = None
    has_failed_actions: bool | None = None
    """True: only those with an action whose last side effect failed (`search --failed`)."""
    ids: SearchIds | None = None
    """Only these opportunities (at most `MAX_IDS`, `MAX_IDS_BYTES` as JSON)."""
    amount_min: Amount | None = None
    """Amount at least this (in its own currency: amounts are never converted)."""
    amount_max: Amount | None = None
    """Amount at most this."""
    closing_before: CloseDate | None = None
    """Expected to close before this day."""
    closing_after: CloseDate | None = None
    """Expected to close on or after this day."""
    forecast_category: ForecastCategory | None = None
    idle: bool | None = None
    """True: only the idle ones (no command for their stage's `idle_after_days`)."""
    overdue: bool | None = None
    """True: only those with an active calendar activity past its due time."""


class SearchPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[OpportunitySummary]


OVERDUE = (
    "EXISTS (SELECT 1 FROM calendar_activities c WHERE c.opportunity_id ="
    " opportunities.opportunity_id AND c.status = 'active' AND c.starts_at < now())"
)
"""An opportunity with overdue work: an active activity whose due time has passed (the core's
`value_rules.overdue`, as the read model sees it)."""


def where(filters: SearchFilters) -> tuple[str, list[Any]]:
    """The WHERE clause and its parameters for `filters`."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: str, value: Any) -> None:
        params.append(value)
        clauses.append(clause.format(f"${len(params)}"))

    if filters.process_id is not None:
        add("process_id = {}", filters.process_id)
    if filters.stage is not None:
        add("current_stage = {}", filters.stage)
    if filters.status is not None:
        add("status = {}", filters.status)
    elif filters.ids is None:
        clauses.append("status <> 'deleted'")  # a deleted one only when asked for
    if filters.contact_id is not None:
        add("contact_id = {}", filters.contact_id)
    if filters.owner is not None:
        add("owner = {}", filters.owner)
    if filters.name is not None:
        escaped = filters.name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        add("lower(name) LIKE {}", f"%{escaped}%")
    if filters.entered_before is not None:
        add("stage_entered_at < {}", filters.entered_before)
    if filters.entered_after is not None:
        add("stage_entered_at >= {}", filters.entered_after)
    if filters.has_open_actions is True:
        clauses.append("open_actions > 0")
    elif filters.has_open_actions is False:
        clauses.append("open_actions = 0")
    if filters.has_failed_actions is True:
        clauses.append("failed_actions > 0")
    elif filters.has_failed_actions is False:
        clauses.append("failed_actions = 0")
    if filters.ids is not None:
        add("opportunity_id = ANY({}::text[])", filters.ids)
    if filters.amount_min is not None:
        add("amount >= {}", filters.amount_min)
    if filters.amount_max is not None:
        add("amount <= {}", filters.amount_max)
    if filters.closing_before is not None:
        add("expected_close_date < {}", filters.closing_before)
    if filters.closing_after is not None:
        add("expected_close_date >= {}", filters.closing_after)
    if filters.forecast_category is not None:
        add("forecast_category = {}", filters.forecast_category)
    if filters.idle is not None:
        clauses.append("idle_since IS NOT NULL" if filters.idle else "idle_since IS NULL")
    if filters.overdue is not None:
        clauses.append(("" if filters.overdue else "NOT ") + OVERDUE)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_COLUMNS = ", ".join(OpportunitySummary.model_fields)


async def search(
    pool: asyncpg.Pool,
    filters: SearchFilters,
    *,
    sort: SortKey = "opportunity_id",
    descending: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> SearchPage:
    if not 1 <= limit <= 1000:
        raise ValueError(f"limit must be between 1 and 1000, not {limit}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, not {offset}")
    if sort not in SortKey.__args__:  # type: ignore[attr-defined]
        raise ValueError(f"cannot sort by {sort!r}; sort keys are {list(SortKey.__args__)}")  # type: ignore[attr-defined]
    clause, params = where(filters)
    direction = "DESC" if descending else "ASC"
    order = f"{sort} {direction} NULLS LAST, opportunity_id {direction}"
    async with pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) FROM opportunities{clause}", *params)
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM opportunities{clause} ORDER BY {order}"
            f" LIMIT ${len(params) + 1} OFFSET ${len(params) + 2}",
            *params,
            limit,
            offset,
        )
    items = [OpportunitySummary.model_validate(dict(row)) for row in rows]
    return SearchPage(total=total, offset=offset, limit=limit, items=items)


async def matching_ids(pool: asyncpg.Pool, filters: SearchFilters) -> list[str]:
    """Every matching opportunity id, in id order (the frozen selection of a batch)."""
    clause, params = where(filters)
    rows = await pool.fetch(
        f"SELECT opportunity_id FROM opportunities{clause} ORDER BY opportunity_id", *params
    )
    return [row["opportunity_id"] for row in rows]


async def matching_stages(pool: asyncpg.Pool, filters: SearchFilters) -> dict[str, str]:
    """Every matching opportunity's current stage by id, in id order (the frozen selection
    of a batch moving each opportunity to its next stage). With `filters.ids`, an id without
    a row is left out."""
    clause, params = where(filters)
    rows = await pool.fetch(
        f"SELECT opportunity_id, current_stage FROM opportunities{clause} ORDER BY opportunity_id",
        *params,
    )
    return {row["opportunity_id"]: row["current_stage"] for row in rows}


async def process_versions(pool: asyncpg.Pool, filters: SearchFilters) -> list[tuple[str, int]]:
    """The (process, version) pairs the matching opportunities follow."""
    clause, params = where(filters)
    rows = await pool.fetch(
        f"SELECT DISTINCT process_id, process_version FROM opportunities{clause}"
        " ORDER BY process_id, process_version",
        *params,
    )
    return [(row["process_id"], row["process_version"]) for row in rows]


async def explain(pool: asyncpg.Pool, filters: SearchFilters, limit: int = 50) -> str:
    """PostgreSQL's plan for a page of this search (for tests and the benchmark)."""
    clause, params = where(filters)
    rows = await pool.fetch(
        f"EXPLAIN SELECT {_COLUMNS} FROM opportunities{clause}"
        f" ORDER BY opportunity_id LIMIT {int(limit)}",
        *params,
    )
    return "\n".join(row[0] for row in rows)
