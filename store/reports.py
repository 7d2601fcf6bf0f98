"""Reports over the read model: the open pipeline by stage, the conversion from stage to
stage, and the forecast by close period (`docs/reports.md` defines every figure).

Each report reads `opportunities` and `opportunity_history` through their indexes (nothing is
read from Temporal) and lets PostgreSQL group the rows; the process's stage order, which lives
in its definition, orders and classifies the few grouped rows here. Amounts are summed per
currency only, as exact decimals, and a weighted amount (amount x probability / 100) is
rounded once, after summing, to its currency's minor units. A deleted opportunity is in none
of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, computed_field

from sales.value import FORECAST_CATEGORIES, minor_units

Period = Literal["month", "quarter"]
PERIODS: tuple[str, ...] = ("month", "quarter")

UNKNOWN_CURRENCY_UNITS = 2
"""The decimals a sum is rounded to when its opportunities have no currency."""


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)


class PipelineRow(_Row):
    """The open opportunities of one stage of a process in one currency."""

    process_id: str
    stage: str
    currency: str | None
    """None: opportunities without a currency."""
    count: int
    without_amount: int
    """Of `count`, those without an amount (they add nothing to the sums)."""
    amount: Decimal
    weighted_amount: Decimal
    """Sum of amount x probability / 100 (a probability not set counts as 0), rounded to the
    currency's minor units."""
    average_seconds: float
    """Average time in the current stage: now - stage_entered_at."""
    median_seconds: float
    idle: int
    """Of `count`, those idle (`idle_since` set)."""


class ConversionStage(_Row):
    """One stage of a process: its entries in the period, and what became of them."""

    process_id: str
    stage: str
    entered: int
    """History entries into the stage in the period (an opportunity entering it twice counts
    twice)."""
    moved_on: int
    """Of `entered`, the stays whose next entry is a later stage of the process's order that
    does not close as lost, or a stage that closes as won."""
    won: int
    """Of `entered`, those of opportunities now won."""
    lost: int
    """Of `entered`, those of opportunities now lost."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def win_rate(self) -> Decimal | None:
        """won / (won + lost), to 4 decimals; None while none of them is closed."""
        return rate(self.won, self.won + self.lost)


class ConversionProcess(_Row):
    """A process's opportunities closed (won or lost) in the period."""

    process_id: str
    won: int
    lost: int
    average_cycle_seconds: float | None
    """Average of closed_at - created_at over them; None when none closed."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def win_rate(self) -> Decimal | None:
        """won / (won + lost), to 4 decimals; None when none closed."""
        return rate(self.won, self.won + self.lost)


class ConversionReport(_Row):
    stages: list[ConversionStage]
    """Every stage of each process, in the process's order (a stage only earlier versions
    have, when it was entered in the period)."""
    processes: list[ConversionProcess]


class ForecastRow(_Row):
    """The open opportunities in the forecast expected to close in one period, of one forecast
    category and currency."""

    period_start: date
    """The first day of the period (a month, or a quarter)."""
    period: str
    """The period as `2026-07` (a month) or `2026-Q3` (a quarter)."""
    forecast_category: str | None
    """None: not set."""
    currency: str | None
    count: int
    without_amount: int
    amount: Decimal
    weighted_amount: Decimal


def rate(part: int, whole: int) -> Decimal | None:
    """part / whole rounded half up to 4 decimals (None for an empty whole)."""
    if whole == 0:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def money(value: Decimal | None, currency: str | None) -> Decimal:
    """A sum rounded half up to the currency's minor units (0 for no sum)."""
    units = minor_units(currency) if currency else None
    exponent = Decimal(1).scaleb(-(UNKNOWN_CURRENCY_UNITS if units is None else units))
    with localcontext(prec=60):
        return (value or Decimal(0)).quantize(exponent, ROUND_HALF_UP)


def weighted(amount_times_percent: Decimal | None, currency: str | None) -> Decimal:
    """A sum of amount x probability (a percentage), divided by 100 and rounded once."""
    with localcontext(prec=60):
        return money((amount_times_percent or Decimal(0)) / 100, currency)


class _Params:
    """A query's parameters: SQL is built from fixed fragments, every value is a parameter."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        """The placeholder of `value`, added."""
        self.values.append(value)
        return f"${len(self.values)}"


def _all(clauses: list[str]) -> str:
    return " AND ".join(clauses) or "true"


async def _fetch(pool: asyncpg.Pool, *queries: tuple[str, list[Any]]) -> list[list[Any]]:
    """The rows of each query, each planned for its own values: a plan cached for any values
    (which PostgreSQL switches to after a few runs of a prepared statement) cannot see how
    many rows a period or a filter selects, and is slower."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        return [await conn.fetch(sql, *params) for sql, params in queries]


def _opportunity_filters(
    param: _Params, process_id: str | None, owner: str | None = None
) -> list[str]:
    clauses = [] if process_id is None else [f"o.process_id = {param(process_id)}"]
    return clauses + ([] if owner is None else [f"o.owner = {param(owner)}"])


def _period(
    param: _Params, column: str, since: datetime | None, until: datetime | None
) -> list[str]:
    clauses = [] if since is None else [f"{column} >= {param(since)}"]
    return clauses + ([] if until is None else [f"{column} < {param(until)}"])


@dataclass
class StageOrder:
    """A process's stages in order: those of its latest version in their order, then those
    only earlier versions have (the newest version first), with what each closes as."""

    stages: list[str] = field(default_factory=list)
    closes_as: dict[str, str | None] = field(default_factory=dict)
    latest: set[str] = field(default_factory=set)
    """The stages of the latest version."""

    def rank(self, stage: str | None) -> int | None:
        return self.stages.index(stage) if stage in self.closes_as else None

    def moved_on(self, stage: str, went_to: str | None) -> bool:
        """Whether leaving `stage` for `went_to` moves on: to a stage that closes as won, or
        to a later one that does not close as lost."""
        if went_to is None or went_to not in self.closes_as:
            return False
        closes = self.closes_as[went_to]
        if closes == "won":
            return True
        here, there = self.rank(stage), self.rank(went_to)
        return closes != "lost" and here is not None and there is not None and there > here


async def stage_orders(pool: asyncpg.Pool, process_id: str | None) -> dict[str, StageOrder]:
    """The stage order of each process (or of the one given), by process id."""
    param = _Params()
    where = [] if process_id is None else [f"p.process_id = {param(process_id)}"]
    rows = await pool.fetch(
        f"""
        SELECT p.process_id, p.version,
               array_agg(s.stage ->> 'name' ORDER BY s.position) AS names,
               array_agg(s.stage ->> 'closes_as' ORDER BY s.position) AS closes
        FROM sales_processes p
        CROSS JOIN LATERAL jsonb_array_elements(p.definition -> 'stages')
            WITH ORDINALITY AS s(stage, position)
        WHERE {_all(where)}
        GROUP BY p.process_id, p.version
        ORDER BY p.process_id, p.version DESC
        """,
        *param.values,
    )
    orders: dict[str, StageOrder] = {}
    for row in rows:
        newest = row["process_id"] not in orders
        order = orders.setdefault(row["process_id"], StageOrder())
        for name, closes in zip(row["names"], row["closes"], strict=True):
            if name not in order.closes_as:
                order.stages.append(name)
                order.closes_as[name] = closes
            if newest:
                order.latest.add(name)
    return orders


def stage_names(orders: dict[str, StageOrder]) -> list[str]:
    """Every stage name of these processes (the stages whose entries are read)."""
    return sorted({name for order in orders.values() for name in order.stages})


def _in_stage_order(orders: dict[str, StageOrder], process_id: str, stage: str) -> tuple[Any, ...]:
    """Rows by process, then stage order (a stage the process does not name last, by name)."""
    rank = orders[process_id].rank(stage) if process_id in orders else None
    return (process_id, rank is None, rank or 0, stage)


def pipeline_query(
    process_id: str | None = None, owner: str | None = None, now: datetime | None = None
) -> tuple[str, list[Any]]:
    """The pipeline's SQL and parameters: the open opportunities grouped."""
    param = _Params()
    where = ["o.status = 'open'", *_opportunity_filters(param, process_id, owner)]
    at = param(now or datetime.now(UTC))
    sql = f"""
        SELECT o.process_id, o.current_stage AS stage, o.currency,
               count(*) AS count,
               count(*) - count(o.amount) AS without_amount,
               sum(o.amount) AS amount,
               sum(o.amount * coalesce(o.probability, 0)) AS amount_times_percent,
               avg(extract(epoch FROM {at} - o.stage_entered_at)::float8) AS average_seconds,
               percentile_cont(0.5) WITHIN GROUP
                   (ORDER BY extract(epoch FROM {at} - o.stage_entered_at)::float8)
                   AS median_seconds,
               count(*) FILTER (WHERE o.idle_since IS NOT NULL) AS idle
        FROM opportunities o
        WHERE {_all(where)}
        GROUP BY o.process_id, o.current_stage, o.currency
        """
    return sql, param.values


async def pipeline(
    pool: asyncpg.Pool,
    process_id: str | None = None,
    owner: str | None = None,
    now: datetime | None = None,
) -> list[PipelineRow]:
    """The open opportunities by process, stage (in the process's order) and currency; the
    time in stage counts to `now` (default: the current time)."""
    [rows] = await _fetch(pool, pipeline_query(process_id, owner, now))
    orders = await stage_orders(pool, process_id)
    result = [
        PipelineRow(
            process_id=row["process_id"],
            stage=row["stage"],
            currency=row["currency"],
            count=row["count"],
            without_amount=row["without_amount"],
            amount=money(row["amount"], row["currency"]),
            weighted_amount=weighted(row["amount_times_percent"], row["currency"]),
            average_seconds=row["average_seconds"],
            median_seconds=row["median_seconds"],
            idle=row["idle"],
        )
        for row in rows
    ]

    def order(row: PipelineRow) -> tuple[Any, ...]:
        currency = (row.currency is None, row.currency or "")
        return (*_in_stage_order(orders, row.process_id, row.stage), *currency)

    return sorted(result, key=order)


def conversion_stays_query(
    names: list[str],
    process_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[str, list[Any]]:
    """The stays in the stages `names` entered in [since, until), counted by process, stage,
    the opportunity's status and the stage each was left for (`left_for`, on its own row):
    read from the index of stays alone (notes beside the stages are not stays)."""
    param = _Params()
    history = [
        f"h.to_stage = ANY ({param(names)}::text[])",
        "h.source <> 'note'",
        *_period(param, "h.at", since, until),
    ]
    where = ["o.status <> 'deleted'", *_opportunity_filters(param, process_id)]
    sql = f"""
        SELECT o.process_id, h.to_stage AS stage, o.status, h.left_for AS went_to,
               count(*) AS count
        FROM opportunity_history h
        JOIN opportunities o ON o.opportunity_id = h.opportunity_id
        WHERE {_all([*history, *where])}
        GROUP BY 1, 2, 3, 4
        """
    return sql, param.values


def conversion_closed_query(
    process_id: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> tuple[str, list[Any]]:
    """Per process, the opportunities closed (won or lost) in [since, until) and their average
    cycle time."""
    param = _Params()
    where = [
        "o.status IN ('won', 'lost')",
        "o.closed_at IS NOT NULL",
        *_opportunity_filters(param, process_id),
        *_period(param, "o.closed_at", since, until),
    ]
    sql = f"""
        SELECT o.process_id,
               count(*) FILTER (WHERE o.status = 'won') AS won,
               count(*) FILTER (WHERE o.status = 'lost') AS lost,
               avg(extract(epoch FROM o.closed_at - o.created_at)::float8)
                   AS average_cycle_seconds
        FROM opportunities o
        WHERE {_all(where)}
        GROUP BY o.process_id
        """
    return sql, param.values


async def conversion(
    pool: asyncpg.Pool,
    process_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ConversionReport:
    """Stage by stage, the entries in [since, until) and what became of them; per process,
    the opportunities closed in the period, their win rate and cycle time. Without `since`
    or `until` the period is open at that end."""
    orders = await stage_orders(pool, process_id)
    stays, closed = await _fetch(
        pool,
        conversion_stays_query(stage_names(orders), process_id, since, until),
        conversion_closed_query(process_id, since, until),
    )
    return ConversionReport(
        stages=_stage_rows(orders, stays),
        processes=_process_rows(orders, closed),
    )


def _no_entries() -> dict[str, int]:
    return {"entered": 0, "moved_on": 0, "won": 0, "lost": 0}


def _stage_rows(orders: dict[str, StageOrder], grouped: Iterable[Any]) -> list[ConversionStage]:
    """The grouped entries classified by each process's stage order: a row for every stage of
    a process's latest version, and for an older stage entered in the period."""
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(_no_entries)
    for row in grouped:
        order = orders.get(row["process_id"])
        if order is None or row["stage"] not in order.closes_as:
            continue  # an entry into another process's stage, from before a move
        figures = counts[row["process_id"], row["stage"]]
        figures["entered"] += row["count"]
        if order.moved_on(row["stage"], row["went_to"]):
            figures["moved_on"] += row["count"]
        if row["status"] in ("won", "lost"):
            figures[row["status"]] += row["count"]
    rows = []
    for process_id, order in sorted(orders.items()):
        for stage in order.stages:
            if stage in order.latest or (process_id, stage) in counts:
                figures = counts.get((process_id, stage)) or _no_entries()
                rows.append(ConversionStage(process_id=process_id, stage=stage, **figures))
    return rows


def _process_rows(orders: dict[str, StageOrder], closed: Iterable[Any]) -> list[ConversionProcess]:
    """A row per process, zeros for one with none closed in the period."""
    found = {row["process_id"]: dict(row) for row in closed}
    empty = {"won": 0, "lost": 0, "average_cycle_seconds": None}
    return [
        ConversionProcess.model_validate(found.get(process_id, {"process_id": process_id, **empty}))
        for process_id in sorted({*orders, *found})
    ]


def forecast_query(
    period: Period = "month", process_id: str | None = None, owner: str | None = None
) -> tuple[str, list[Any]]:
    """The forecast's SQL and parameters."""
    if period not in PERIODS:
        raise ValueError(f"the period is month or quarter, not {period!r}")
    param = _Params()
    unit, categories = param(period), param(list(FORECAST_CATEGORIES))
    where = [
        "o.status = 'open'",
        "o.include_in_forecast",
        "o.expected_close_date IS NOT NULL",
        *_opportunity_filters(param, process_id, owner),
    ]
    sql = f"""
        SELECT date_trunc({unit}, o.expected_close_date::timestamp)::date AS period_start,
               o.forecast_category, o.currency,
               count(*) AS count,
               count(*) - count(o.amount) AS without_amount,
               sum(o.amount) AS amount,
               sum(o.amount * coalesce(o.probability, 0)) AS amount_times_percent
        FROM opportunities o
        WHERE {_all(where)}
        GROUP BY 1, 2, 3
        ORDER BY 1, array_position({categories}::text[], o.forecast_category) NULLS LAST,
                 3 NULLS LAST
        """
    return sql, param.values


async def forecast(
    pool: asyncpg.Pool,
    period: Period = "month",
    process_id: str | None = None,
    owner: str | None = None,
) -> list[ForecastRow]:
    """The open opportunities in the forecast with an expected close date, by close period
    (`month` or `quarter`), forecast category and currency."""
    [rows] = await _fetch(pool, forecast_query(period, process_id, owner))
    return [
        ForecastRow(
            period_start=row["period_start"],
            period=period_label(row["period_start"], period),
            forecast_category=row["forecast_category"],
            currency=row["currency"],
            count=row["count"],
            without_amount=row["without_amount"],
            amount=money(row["amount"], row["currency"]),
            weighted_amount=weighted(row["amount_times_percent"], row["currency"]),
        )
        for row in rows
    ]


def period_label(start: date, period: Period) -> str:
    """`2026-07` for a month, `2026-Q3` for a quarter."""
    if period == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return f"{start.year}-{start.month:02d}"


async def queries(pool: asyncpg.Pool, report: str, **filters: Any) -> list[tuple[str, list[Any]]]:
    """The SQL and parameters a report runs with these filters."""
    if report == "pipeline":
        return [pipeline_query(**filters)]
    if report == "forecast":
        return [forecast_query(**filters)]
    if report != "conversion":
        raise ValueError(f"no report {report!r}")
    names = stage_names(await stage_orders(pool, filters.get("process_id")))
    return [conversion_stays_query(names, **filters), conversion_closed_query(**filters)]


async def explain(pool: asyncpg.Pool, report: str, *, analyze: bool = False, **filters: Any) -> str:
    """PostgreSQL's plans of a report's queries with these filters (for tests and the
    benchmark), one after the other."""
    plans = []
    verb = "EXPLAIN (ANALYZE, BUFFERS)" if analyze else "EXPLAIN"
    for sql, params in await queries(pool, report, **filters):
        rows = await pool.fetch(f"{verb} {sql}", *params)
        plans.append("\n".join(row[0] for row in rows))
    return "\n\n".join(plans)
