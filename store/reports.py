"""Reports over the read model: the open pipeline by stage, the conversion from stage to
stage, and the forecast by close period (`docs/reports.md` defines every figure).

Each report is one query over `opportunities` and `opportunity_history`, using their indexes;
nothing is read from Temporal. Amounts are summed per currency only, as exact decimals, and a
weighted amount (amount x probability / 100) is rounded once, after summing, to its currency's
minor units. A deleted opportunity is in none of them.
"""

from __future__ import annotations

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
    """One stage of a process: the opportunities that entered it in the period, and what
    became of them."""

    process_id: str
    stage: str
    entered: int
    """Opportunities with a history entry into the stage in the period (one entering twice
    counts once)."""
    moved_on: int
    """Of `entered`, those that left one of those stays for a later stage of the process's
    order that does not close as lost, or for a stage that closes as won."""
    won: int
    """Of `entered`, those now won."""
    lost: int
    """Of `entered`, those now lost."""

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
    """Every stage of each process, in the process's order."""
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


class _Where:
    """A WHERE clause built from fixed fragments; every value is a parameter."""

    def __init__(self, *fixed: str) -> None:
        self.clauses = list(fixed)
        self.params: list[Any] = []

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def add(self, clause: str, value: Any) -> None:
        """`clause` with `{}` standing for the value's parameter."""
        self.clauses.append(clause.format(self.param(value)))

    def sql(self) -> str:
        return " AND ".join(self.clauses) or "true"


STAGE_ORDER = """
    SELECT process_id, stage, closes_as, latest,
           row_number() OVER (PARTITION BY process_id ORDER BY version DESC, position) AS rank
    FROM (
        SELECT DISTINCT ON (p.process_id, s.stage ->> 'name')
               p.process_id, s.stage ->> 'name' AS stage, s.stage ->> 'closes_as' AS closes_as,
               p.version, s.position,
               p.version = max(p.version) OVER (PARTITION BY p.process_id) AS latest
        FROM sales_processes p
        CROSS JOIN LATERAL jsonb_array_elements(p.definition -> 'stages')
            WITH ORDINALITY AS s(stage, position)
        WHERE {processes}
        ORDER BY p.process_id, s.stage ->> 'name', p.version DESC
    ) named
"""
"""The stages of each process in order: those of its latest version in their order, then those
only earlier versions have (newest version first). `latest`: the latest version has it."""


def pipeline_query(
    process_id: str | None = None, owner: str | None = None, now: datetime | None = None
) -> tuple[str, list[Any]]:
    """The pipeline's SQL and parameters."""
    where = _Where("o.status = 'open'")
    processes = _process_filter(where, process_id)
    if owner is not None:
        where.add("o.owner = {}", owner)
    at = where.param(now or datetime.now(UTC))
    sql = f"""
        WITH open_ones AS (
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
            WHERE {where.sql()}
            GROUP BY o.process_id, o.current_stage, o.currency
        ), stage_order AS ({STAGE_ORDER.format(processes=processes)})
        SELECT g.* FROM open_ones g
        LEFT JOIN stage_order s ON s.process_id = g.process_id AND s.stage = g.stage
        ORDER BY g.process_id, s.rank NULLS LAST, g.stage, g.currency NULLS LAST
        """
    return sql, where.params


async def pipeline(
    pool: asyncpg.Pool,
    process_id: str | None = None,
    owner: str | None = None,
    now: datetime | None = None,
) -> list[PipelineRow]:
    """The open opportunities by process, stage (in the process's order) and currency; the
    time in stage counts to `now` (default: the current time)."""
    sql, params = pipeline_query(process_id, owner, now)
    rows = await pool.fetch(sql, *params)
    return [
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


async def conversion(
    pool: asyncpg.Pool,
    process_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ConversionReport:
    """Stage by stage, the opportunities that entered a stage in [since, until) and what
    became of them; per process, those closed in the period, their win rate and cycle time."""
    stages_sql, stages_params = conversion_stages_query(process_id, since, until)
    closed_sql, closed_params = conversion_closed_query(process_id, since, until)
    async with pool.acquire() as conn:
        stages = await conn.fetch(stages_sql, *stages_params)
        closed = await conn.fetch(closed_sql, *closed_params)
    return ConversionReport(
        stages=[ConversionStage.model_validate(dict(row)) for row in stages],
        processes=[ConversionProcess.model_validate(dict(row)) for row in closed],
    )


def _process_filter(where: _Where, process_id: str | None) -> str:
    """Adds `o.process_id = $n` for a given process; the matching filter of `sales_processes`
    (alias `p`) for the stage order."""
    if process_id is None:
        return "true"
    placeholder = where.param(process_id)
    where.clauses.append(f"o.process_id = {placeholder}")
    return f"p.process_id = {placeholder}"


def _period(where: _Where, column: str, since: datetime | None, until: datetime | None) -> None:
    if since is not None:
        where.add(f"{column} >= {{}}", since)
    if until is not None:
        where.add(f"{column} < {{}}", until)


def conversion_stages_query(
    process_id: str | None, since: datetime | None, until: datetime | None
) -> tuple[str, list[Any]]:
    """The stays entered in the period, each with the entry that followed it: the next one in
    the period by a window over them, else (a stay left after the period, or a move to another
    process's stage in between) the next row by the history's primary key. Counted once per
    opportunity and stage."""
    where = _Where("o.status <> 'deleted'")
    processes = _process_filter(where, process_id)
    where.clauses.append("h.to_stage = ANY (ARRAY(SELECT DISTINCT stage FROM stage_order))")
    _period(where, "h.at", since, until)
    sql = f"""
        WITH stage_order AS ({STAGE_ORDER.format(processes=processes)}),
        stays AS (
            SELECT h.opportunity_id, h.seq, h.to_stage, h.left_at, o.process_id, o.status,
                   lead(h.seq) OVER next AS next_seq, lead(h.to_stage) OVER next AS next_stage
            FROM opportunity_history h
            JOIN opportunities o ON o.opportunity_id = h.opportunity_id
            WHERE {where.sql()}
            WINDOW next AS (PARTITION BY h.opportunity_id ORDER BY h.seq)
        ), followed AS (
            SELECT t.*,
                   CASE WHEN t.left_at IS NULL THEN NULL
                        WHEN t.next_seq = t.seq + 1 THEN t.next_stage
                        ELSE (SELECT n.to_stage FROM opportunity_history n
                              WHERE n.opportunity_id = t.opportunity_id AND n.seq > t.seq
                              ORDER BY n.seq LIMIT 1)
                   END AS went_to
            FROM stays t
        ), per_opportunity AS (
            SELECT f.process_id, f.to_stage AS stage, f.opportunity_id, f.status,
                   bool_or(n.stage IS NOT NULL AND (n.closes_as = 'won' OR
                           (n.rank > s.rank AND n.closes_as IS DISTINCT FROM 'lost')))
                       AS moved_on
            FROM followed f
            JOIN stage_order s ON s.process_id = f.process_id AND s.stage = f.to_stage
            LEFT JOIN stage_order n ON n.process_id = f.process_id AND n.stage = f.went_to
            GROUP BY f.process_id, f.to_stage, f.opportunity_id, f.status
        ), counted AS (
            SELECT process_id, stage, count(*) AS entered,
                   count(*) FILTER (WHERE moved_on) AS moved_on,
                   count(*) FILTER (WHERE status = 'won') AS won,
                   count(*) FILTER (WHERE status = 'lost') AS lost
            FROM per_opportunity GROUP BY process_id, stage
        )
        SELECT s.process_id, s.stage, coalesce(c.entered, 0) AS entered,
               coalesce(c.moved_on, 0) AS moved_on, coalesce(c.won, 0) AS won,
               coalesce(c.lost, 0) AS lost
        FROM stage_order s
        LEFT JOIN counted c ON c.process_id = s.process_id AND c.stage = s.stage
        WHERE s.latest OR c.entered IS NOT NULL
        ORDER BY s.process_id, s.rank
        """
    return sql, where.params


def conversion_closed_query(
    process_id: str | None, since: datetime | None, until: datetime | None
) -> tuple[str, list[Any]]:
    """Per process, the opportunities closed (won or lost) in the period and their average
    cycle time; a process with none closed has a row of zeros."""
    where = _Where("o.status IN ('won', 'lost')", "o.closed_at IS NOT NULL")
    processes = _process_filter(where, process_id)
    _period(where, "o.closed_at", since, until)
    sql = f"""
        WITH closed AS (
            SELECT o.process_id,
                   count(*) FILTER (WHERE o.status = 'won') AS won,
                   count(*) FILTER (WHERE o.status = 'lost') AS lost,
                   avg(extract(epoch FROM o.closed_at - o.created_at)::float8)
                       AS average_cycle_seconds
            FROM opportunities o
            WHERE {where.sql()}
            GROUP BY o.process_id
        )
        SELECT p.process_id, coalesce(c.won, 0) AS won, coalesce(c.lost, 0) AS lost,
               c.average_cycle_seconds
        FROM (SELECT DISTINCT process_id FROM sales_processes p WHERE {processes}) p
        LEFT JOIN closed c ON c.process_id = p.process_id
        ORDER BY p.process_id
        """
    return sql, where.params


def forecast_query(
    period: Period = "month", process_id: str | None = None, owner: str | None = None
) -> tuple[str, list[Any]]:
    """The forecast's SQL and parameters."""
    if period not in PERIODS:
        raise ValueError(f"the period is month or quarter, not {period!r}")
    where = _Where(
        "o.status = 'open'", "o.include_in_forecast", "o.expected_close_date IS NOT NULL"
    )
    unit = where.param(period)
    categories = where.param(list(FORECAST_CATEGORIES))
    _process_filter(where, process_id)
    if owner is not None:
        where.add("o.owner = {}", owner)
    sql = f"""
        SELECT date_trunc({unit}, o.expected_close_date::timestamp)::date AS period_start,
               o.forecast_category, o.currency,
               count(*) AS count,
               count(*) - count(o.amount) AS without_amount,
               sum(o.amount) AS amount,
               sum(o.amount * coalesce(o.probability, 0)) AS amount_times_percent
        FROM opportunities o
        WHERE {where.sql()}
        GROUP BY 1, 2, 3
        ORDER BY 1, array_position({categories}::text[], o.forecast_category) NULLS LAST,
                 3 NULLS LAST
        """
    return sql, where.params


async def forecast(
    pool: asyncpg.Pool,
    period: Period = "month",
    process_id: str | None = None,
    owner: str | None = None,
) -> list[ForecastRow]:
    """The open opportunities in the forecast with an expected close date, by close period
    (`month` or `quarter`), forecast category and currency."""
    sql, params = forecast_query(period, process_id, owner)
    rows = await pool.fetch(sql, *params)
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


def queries(report: str, **filters: Any) -> list[tuple[str, list[Any]]]:
    """The SQL and parameters a report runs with these filters."""
    if report == "pipeline":
        return [pipeline_query(**filters)]
    if report == "conversion":
        return [conversion_stages_query(**filters), conversion_closed_query(**filters)]
    if report == "forecast":
        return [forecast_query(**filters)]
    raise ValueError(f"no report {report!r}")


async def explain(
    pool: asyncpg.Pool, report: str, *, analyze: bool = False, **filters: Any
) -> str:
    """PostgreSQL's plans of a report's queries with these filters (for tests and the
    benchmark), one after the other."""
    plans = []
    verb = "EXPLAIN (ANALYZE, BUFFERS)" if analyze else "EXPLAIN"
    for sql, params in queries(report, **filters):
        rows = await pool.fetch(f"{verb} {sql}", *params)
        plans.append("\n".join(row[0] for row in rows))
    return "\n\n".join(plans)
