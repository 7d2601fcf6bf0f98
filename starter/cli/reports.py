"""`opportunities report`: the open pipeline, the conversion from stage to stage and the
forecast, read from the read model (`store.reports`; docs/reports.md defines every figure).

Each prints a table, or JSON (`--json`) or CSV (`--csv`) for machines and spreadsheets, and can
also write a chart (`--chart FILE.png|FILE.svg`) and one self-contained HTML page (`--html`).
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from runtime.escaping import neutralized
from starter.cli import charts, report_page
from starter.cli.common import (
    JsonFlag,
    UserError,
    console,
    database,
    errors,
    new_app,
    new_table,
    print_json,
    print_table,
    run,
)
from starter.client.read_model import ReadModel
from store.reports import (
    PERIODS,
    ConversionProcess,
    ConversionReport,
    ConversionStage,
    ForecastRow,
    Period,
    PipelineRow,
)

report_app = new_app("Reports over the read model: the open pipeline, conversion, the forecast.")

ProcessOption = Annotated[str | None, typer.Option("--process", help="Only this process.")]
OwnerOption = Annotated[
    str | None, typer.Option("--owner", help="Only the opportunities this user owns.")
]
CsvFlag = Annotated[
    bool,
    typer.Option("--csv", help="Print CSV for spreadsheets (UTF-8, comma, a header row)."),
]
ChartOption = Annotated[
    Path | None, typer.Option("--chart", help="Also write a chart: FILE.png or FILE.svg.")
]
HtmlOption = Annotated[
    Path | None,
    typer.Option("--html", help="Also write one self-contained HTML page: table and chart."),
]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads a cell starting with as a formula: such a text cell gets a leading
apostrophe in CSV."""


@dataclass(frozen=True)
class Output:
    """Where a report goes: stdout as a table, JSON or CSV; and a chart, an HTML page."""

    as_json: bool = False
    as_csv: bool = False
    chart: Path | None = None
    html: Path | None = None

    def check(self) -> None:
        """Refuses what cannot be done before anything is read: both --json and --csv, a chart
        of another kind than PNG or SVG, a chart or page without matplotlib."""
        if self.as_json and self.as_csv:
            raise UserError("--json and --csv print the same report two ways: choose one")
        if self.chart is not None:
            chart_format(self.chart)
        if self.chart is not None or self.html is not None:
            charts.matplotlib_figure()


@dataclass(frozen=True)
class Column:
    """A column of a report: its CSV header (the JSON field name), its table header, and
    whether it holds numbers."""

    field: str
    header: str
    numeric: bool = False


def cells(row: Any, columns: list[Column]) -> list[Any]:
    """A row's values for these columns, by their fields (a date as ISO 8601)."""
    values = [getattr(row, column.field) for column in columns]
    return [value.isoformat() if isinstance(value, date) else value for value in values]


@dataclass
class Rendered:
    """A report ready to show in every form."""

    title: str
    note: str
    data: Any
    """What `--json` prints: the report's typed rows."""
    columns: list[Column]
    rows: list[list[Any]]
    """The report's values by column (text, numbers, or None)."""
    chart: charts.Chart
    shown_columns: int | None = None
    """How many of the columns the terminal and the page show (None: all; the others are in
    `extra`)."""
    extra: list[report_page.Table] = field(default_factory=list)
    """Tables shown after the main one (in the terminal and the page)."""


def chart_format(path: Path) -> charts.ImageFormat:
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise UserError(f"--chart {path}: the chart is FILE.png or FILE.svg")
    return cast(charts.ImageFormat, suffix[1:])


def emit(rendered: Rendered, output: Output) -> None:
    """Writes the chart and the page that were asked for, then prints the report."""
    if output.chart is not None:
        image = charts.render(rendered.chart, chart_format(output.chart))
        write(output.chart, image)
    if output.html is not None:
        svg = charts.render(rendered.chart, "svg")
        write(output.html, report_page.page(rendered.title, rendered.note, tables(rendered), svg))
    if output.as_json:
        print_json(rendered.data)
    elif output.as_csv:
        sys.stdout.flush()
        sys.stdout.buffer.write(csv_text(rendered).encode("utf-8"))
        sys.stdout.buffer.flush()
    else:
        print_tables(rendered)


def write(path: Path, content: bytes | str) -> None:
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        path.write_bytes(data)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror}") from None
    errors.print(f"wrote {path}", highlight=False)


def csv_text(rendered: Rendered) -> str:
    """The report as CSV: RFC 4180 (comma, CRLF, quotes where needed, doubled inside), a header
    row of field names; numbers as plain decimals, a text cell a spreadsheet would run as a
    formula with a leading apostrophe, unsafe characters escaped as everywhere the CLI prints."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([column.field for column in rendered.columns])
    for row in rendered.rows:
        writer.writerow([csv_cell(value) for value in row])
    return buffer.getvalue()


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralized(spreadsheet_safe(value))
    return number(value)


def spreadsheet_safe(text: str) -> str:
    """`text` with a leading apostrophe when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def number(value: Any) -> str:
    """A number as plain text: a decimal with its scale, whole seconds without a fraction."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return format(value, ".3f").rstrip("0").rstrip(".")
    return str(value)


def tables(rendered: Rendered) -> list[report_page.Table]:
    """The report's tables as text, as the terminal and the page show them."""
    columns = rendered.columns[: rendered.shown_columns]
    main = report_page.Table(
        title=rendered.title,
        headers=[column.header for column in columns],
        rows=[
            [
                shown(value, column)
                for value, column in zip(row[: len(columns)], columns, strict=True)
            ]
            for row in rendered.rows
        ],
        numeric=frozenset(i for i, column in enumerate(columns) if column.numeric),
    )
    return [main, *rendered.extra]


def shown(value: Any, column: Column) -> str:
    """A value as a person reads it: durations in minutes, hours or days, rates in percent."""
    if value is None:
        return "-"
    if column.field.endswith("seconds") and isinstance(value, int | float):
        return duration(value)
    if column.field.endswith("win_rate") and isinstance(value, Decimal):
        return f"{value * 100:.1f}%"
    return value if isinstance(value, str) else number(value)


def duration(seconds: float) -> str:
    if abs(seconds) < 3600:
        return f"{seconds / 60:.0f} min"
    if abs(seconds) < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def print_tables(rendered: Rendered) -> None:
    for shown_table in tables(rendered):
        table = new_table(*shown_table.headers, title=shown_table.title)
        for column in shown_table.numeric:
            table.columns[column].justify = "right"
        for row in shown_table.rows:
            table.add_row(*row)
        print_table(table)
    console.print(rendered.note, highlight=False)


def currency(code: str | None) -> str:
    return code or "(none)"


def label(process_id: str, stage: str, several: bool) -> str:
    """A stage's label on a chart: with its process when the chart shows several."""
    return f"{process_id} · {stage}" if several else stage


# --- pipeline -----------------------------------------------------------------------------

PIPELINE_COLUMNS = [
    Column("process_id", "process"),
    Column("stage", "stage"),
    Column("currency", "currency"),
    Column("count", "open", numeric=True),
    Column("without_amount", "no amount", numeric=True),
    Column("amount", "amount", numeric=True),
    Column("weighted_amount", "weighted", numeric=True),
    Column("average_seconds", "avg in stage", numeric=True),
    Column("median_seconds", "median in stage", numeric=True),
    Column("idle", "idle", numeric=True),
]


def pipeline_report(rows: list[PipelineRow], note: str) -> Rendered:
    values = [cells(row, PIPELINE_COLUMNS) for row in rows]
    return Rendered(
        title="Open pipeline",
        note=note,
        data=rows,
        columns=PIPELINE_COLUMNS,
        rows=values,
        chart=pipeline_chart(rows),
    )


def pipeline_chart(rows: list[PipelineRow]) -> charts.Chart:
    """A funnel: the open opportunities of each stage (every currency together: a count)."""
    several = len({row.process_id for row in rows}) > 1
    counts: dict[str, float] = {}
    for row in rows:
        key = label(row.process_id, row.stage, several)
        counts[key] = counts.get(key, 0) + row.count
    bars = charts.Bars(
        title="Open opportunities by stage",
        labels=list(counts),
        series={"open": list(counts.values())},
        axis="opportunities",
    )
    return charts.Chart(title="Open pipeline", panels=[bars])


@report_app.command("pipeline")
def pipeline_command(
    process: ProcessOption = None,
    owner: OwnerOption = None,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
    chart: ChartOption = None,
    html: HtmlOption = None,
) -> None:
    """The open opportunities by process, stage and currency: count, amount, weighted amount,
    time in the current stage, idle ones."""
    output = Output(as_json, as_csv, chart, html)
    output.check()
    now = datetime.now(UTC)

    async def work() -> list[PipelineRow]:
        async with database() as pool:
            return await ReadModel(pool).pipeline(process, owner, now)

    rows = run(work)
    note = described(now, process=process, owner=owner)
    emit(pipeline_report(rows, note), output)


def described(now: datetime, **filters: str | None) -> str:
    """What a report shows: its filters and when it was read."""
    given = [f"{name} {value}" for name, value in filters.items() if value is not None]
    return f"{', '.join(given) or 'all processes'}; read {now:%Y-%m-%d %H:%M} UTC"


# --- conversion ---------------------------------------------------------------------------

CONVERSION_COLUMNS = [
    Column("process_id", "process"),
    Column("stage", "stage"),
    Column("entered", "entered", numeric=True),
    Column("moved_on", "moved on", numeric=True),
    Column("won", "won", numeric=True),
    Column("lost", "lost", numeric=True),
    Column("win_rate", "win rate", numeric=True),
    Column("process_won", "process won", numeric=True),
    Column("process_lost", "process lost", numeric=True),
    Column("process_win_rate", "process win rate", numeric=True),
    Column("process_average_cycle_seconds", "process avg cycle", numeric=True),
]
"""The CSV's columns: each stage's figures, then its process's (repeated on each of its
stages, so that the file is one table)."""
STAGE_COLUMNS = 7
"""The terminal and the page show the stage columns in one table, the process's in another."""


CLOSED_COLUMNS = [
    Column("process_id", "process"),
    Column("won", "won", numeric=True),
    Column("lost", "lost", numeric=True),
    Column("win_rate", "win rate", numeric=True),
    Column("average_cycle_seconds", "avg cycle (open to close)", numeric=True),
]


def conversion_report(report: ConversionReport, note: str) -> Rendered:
    return Rendered(
        title="Conversion by stage",
        note=note,
        data=report,
        columns=CONVERSION_COLUMNS,
        rows=conversion_rows(report),
        chart=conversion_chart(report.stages),
        shown_columns=STAGE_COLUMNS,
        extra=[closed_table(report.processes)],
    )


def conversion_rows(report: ConversionReport) -> list[list[Any]]:
    """Each stage's figures with its process's."""
    processes = {row.process_id: row for row in report.processes}
    rows = []
    for stage in report.stages:
        closed = processes.get(stage.process_id)
        of_process = CLOSED_COLUMNS[1:]
        rows.append([
            *cells(stage, CONVERSION_COLUMNS[:STAGE_COLUMNS]),
            *(cells(closed, of_process) if closed else [None] * len(of_process)),
        ])  # fmt: skip
    return rows


def closed_table(processes: list[ConversionProcess]) -> report_page.Table:
    """Per process, those closed in the period: the table after the stages'."""
    rows = [
        [shown(value, column) for value, column in zip(
            cells(p, CLOSED_COLUMNS), CLOSED_COLUMNS, strict=True)]
        for p in processes
    ]  # fmt: skip
    return report_page.Table(
        title="Closed in the period",
        headers=[column.header for column in CLOSED_COLUMNS],
        rows=rows,
        numeric=frozenset(i for i, column in enumerate(CLOSED_COLUMNS) if column.numeric),
    )


def conversion_chart(stages: list[ConversionStage]) -> charts.Chart:
    """A funnel: per stage, the entries, those that moved on and those now won."""
    several = len({stage.process_id for stage in stages}) > 1
    bars = charts.Bars(
        title="Entries by stage",
        labels=[label(stage.process_id, stage.stage, several) for stage in stages],
        series={
            "entered": [float(stage.entered) for stage in stages],
            "moved on": [float(stage.moved_on) for stage in stages],
            "won": [float(stage.won) for stage in stages],
        },
        axis="stage entries",
    )
    return charts.Chart(title="Conversion by stage", panels=[bars])


@report_app.command("conversion")
def conversion_command(
    process: ProcessOption = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="First day of the period (YYYY-MM-DD, UTC).")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Last day of the period (YYYY-MM-DD, UTC).")
    ] = None,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
    chart: ChartOption = None,
    html: HtmlOption = None,
) -> None:
    """Per stage, the entries in the period and how many moved on and were won or lost; per
    process, the win rate and cycle time of those closed in the period."""
    output = Output(as_json, as_csv, chart, html)
    output.check()
    first, last = day("--from", from_), day("--to", to)
    if first is not None and last is not None and last < first:
        raise UserError(f"--to {last} is before --from {first}")
    since = None if first is None else datetime.combine(first, time(), UTC)
    until = None if last is None else datetime.combine(last + timedelta(days=1), time(), UTC)

    async def work() -> ConversionReport:
        async with database() as pool:
            return await ReadModel(pool).conversion(process, since, until)

    report = run(work)
    period = f"{first or 'the beginning'} to {last or 'today'}"
    note = f"{period}; " + described(datetime.now(UTC), process=process)
    emit(conversion_report(report, note), output)


def day(option: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


# --- forecast -----------------------------------------------------------------------------

FORECAST_COLUMNS = [
    Column("period", "period"),
    Column("period_start", "from"),
    Column("forecast_category", "category"),
    Column("currency", "currency"),
    Column("count", "count", numeric=True),
    Column("without_amount", "no amount", numeric=True),
    Column("amount", "amount", numeric=True),
    Column("weighted_amount", "weighted", numeric=True),
]


def forecast_report(rows: list[ForecastRow], period: Period, note: str) -> Rendered:
    values = [cells(row, FORECAST_COLUMNS) for row in rows]
    return Rendered(
        title=f"Forecast by {period}",
        note=note,
        data=rows,
        columns=FORECAST_COLUMNS,
        rows=values,
        chart=forecast_chart(rows, period),
    )


def forecast_chart(rows: list[ForecastRow], period: Period) -> charts.Chart:
    """Per currency (amounts are never added across currencies), the weighted amount of each
    period stacked by forecast category."""
    panels = []
    for code in dict.fromkeys(row.currency for row in rows):
        mine = [row for row in rows if row.currency == code]
        periods = list(dict.fromkeys(row.period for row in mine))
        categories = list(dict.fromkeys(row.forecast_category or "(not set)" for row in mine))
        series = {category: [0.0] * len(periods) for category in categories}
        for row in mine:
            category = row.forecast_category or "(not set)"
            series[category][periods.index(row.period)] += float(row.weighted_amount)
        panels.append(
            charts.Bars(
                title=f"Weighted amount, {currency(code)}",
                labels=periods,
                series=series,
                axis=currency(code),
                horizontal=False,
                stacked=True,
            )
        )
    return charts.Chart(title=f"Forecast by {period}", panels=panels)


@report_app.command("forecast")
def forecast_command(
    period: Annotated[
        str, typer.Option("--period", help="Group by month or quarter of the close date.")
    ] = "month",
    process: ProcessOption = None,
    owner: OwnerOption = None,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
    chart: ChartOption = None,
    html: HtmlOption = None,
) -> None:
    """The open opportunities in the forecast by close period, forecast category and
    currency: count, amount, weighted amount."""
    if period not in PERIODS:
        raise UserError(f"--period {period!r}: month or quarter")
    output = Output(as_json, as_csv, chart, html)
    output.check()
    chosen = cast(Period, period)

    async def work() -> list[ForecastRow]:
        async with database() as pool:
            return await ReadModel(pool).forecast(chosen, process, owner)

    rows = run(work)
    note = described(datetime.now(UTC), process=process, owner=owner)
    emit(forecast_report(rows, chosen, note), output)
