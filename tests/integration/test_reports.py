"""The reports over the read model: exact figures of the pipeline, the conversion and the
forecast on a known data set seeded straight into the tables (two currencies and one without
minor units, stages with probabilities, idle opportunities, stays of known lengths, won, lost
and deleted ones), their plans, and what `opportunities report` prints and writes: a table,
JSON, CSV, a PNG or SVG chart, and an HTML page read in a headless Chromium."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, async_playwright, expect

from sales.contact import Contact
from sales.process import ProcessDefinition
from starter.client.read_model import ReadModel
from store import contacts, processes, reports
from tests.support.servers import Cli

NOW = datetime(2026, 3, 1, tzinfo=UTC)
JANUARY = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
HOUR, DAY = 3600, 86400
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FORMULA_STAGE = '=HYPERLINK("http://x")'

OPPORTUNITY_COLUMNS = [
    "opportunity_id", "contact_id", "process_id", "process_version", "name", "owner", "status",
    "current_stage", "stage_entered_at", "closed_at", "open_actions", "created_at", "updated_at",
    "revision", "amount", "currency", "expected_close_date", "probability", "forecast_category",
    "include_in_forecast", "idle_since",
]  # fmt: skip


@dataclass
class Opp:
    """One opportunity of the data set (its id is suffixed with the test's uid)."""

    key: str
    stage: str
    status: str = "open"
    owner: str = "bob"
    amount: str | None = None
    currency: str | None = None
    probability: int | None = None
    entered_ago: float = DAY
    """Seconds between entering the current stage and NOW."""
    idle: bool = False
    close_date: date | None = None
    category: str | None = None
    in_forecast: bool = True
    created: datetime = NOW - timedelta(days=30)
    closed: datetime | None = None
    history: tuple[tuple[str, datetime], ...] = ()
    """(stage entered, when), oldest first."""


OPEN = [
    Opp("o1", "Lead", owner="ann", amount="1000.00", currency="EUR", probability=10,
        entered_ago=1 * DAY, close_date=date(2026, 3, 15), category="pipeline"),
    Opp("o2", "Lead", amount="2000.50", currency="EUR", probability=10, entered_ago=2 * DAY,
        idle=True, close_date=date(2026, 3, 31), category="commit"),
    Opp("o3", "Lead", owner="ann", amount="500", currency="USD", probability=10,
        entered_ago=4 * DAY, close_date=date(2026, 4, 2), category="pipeline"),
    Opp("o4", "Lead", currency="EUR", probability=10, entered_ago=6 * DAY,
        close_date=date(2026, 3, 10), category="pipeline"),
    Opp("o5", "Qualified", amount="333.33", currency="EUR", probability=40,
        entered_ago=1 * HOUR, close_date=date(2026, 5, 20), category="best_case"),
    Opp("o6", "Qualified", amount="0.01", currency="EUR", probability=50, entered_ago=2 * HOUR,
        close_date=date(2026, 5, 20), category="best_case", in_forecast=False),
    Opp("o7", "Qualified", amount="0.01", currency="EUR", probability=50, entered_ago=4 * HOUR,
        idle=True, close_date=date(2026, 5, 20), category="best_case", in_forecast=False),
    Opp("o8", "Proposal", amount="12345", currency="JPY", probability=75, entered_ago=10 * DAY,
        category="commit"),
]  # fmt: skip
"""Open, with no history in January: the pipeline and the forecast."""


def jan(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=UTC)


CLOSED_AND_HISTORY = [
    Opp("w1", "Won", status="won", created=datetime(2025, 12, 20, tzinfo=UTC), closed=jan(20),
        amount="900", currency="EUR", probability=100, close_date=date(2026, 3, 1),
        history=(("Lead", datetime(2025, 12, 20, tzinfo=UTC)), ("Qualified", jan(5)),
                 ("Proposal", jan(10)), ("Won", jan(20)))),
    Opp("l1", "Lost", status="lost", created=jan(2), closed=jan(8),
        history=(("Lead", jan(2)), ("Qualified", jan(3)), ("Lead", jan(4)), ("Lost", jan(8)))),
    Opp("r1", "Qualified", created=jan(10),
        history=(("Lead", jan(10)), ("Qualified", jan(12)), ("Lead", jan(13)),
                 ("Qualified", jan(15)))),
    Opp("x1", "Won", status="won", created=jan(25), closed=datetime(2026, 2, 10, tzinfo=UTC),
        history=(("Lead", jan(25)), ("Proposal", datetime(2026, 2, 3, tzinfo=UTC)),
                 ("Won", datetime(2026, 2, 10, tzinfo=UTC)))),
    Opp("y1", "Lost", status="lost", created=jan(20), closed=jan(22),
        history=(("Lead", jan(20)), ("Proposal", jan(21)), ("Lost", jan(22)))),
    Opp("d1", "Lead", status="deleted", created=jan(5), amount="5", currency="EUR",
        probability=10, close_date=date(2026, 3, 1), history=(("Lead", jan(5)),)),
]  # fmt: skip
"""Won, lost, open and deleted ones whose stays in January have known ends (r1 enters Lead
and Qualified twice, x1 leaves Lead after January, d1 is deleted): the conversion."""


def definition(process_id: str, first: str = "Lead") -> ProcessDefinition:
    """Stages whose order differs from their names' (Lead, Qualified, Proposal)."""
    return ProcessDefinition.model_validate({
        "process_id": process_id, "name": "Reports",
        "stages": [
            {"name": first, "probability": 10}, {"name": "Qualified", "probability": 40},
            {"name": "Proposal", "probability": 75},
            {"name": "Won", "probability": 100, "closes_as": "won"},
            {"name": "Lost", "closes_as": "lost"},
        ],
    })  # fmt: skip


async def seed(pool: asyncpg.Pool, uid: str, process_id: str, opps: list[Opp]) -> None:
    """The process, a contact, the opportunities and their history, straight into the tables."""
    await processes.apply_process(pool, definition(process_id, opps[0].stage))
    contact = Contact(contact_id=f"c-{uid}", first_name="Rita", last_name="Ports")
    if await contacts.get_contact(pool, contact.contact_id) is None:
        await contacts.add_contact(pool, contact)
    rows, history = [], []
    for opp in opps:
        opportunity_id = f"{opp.key}-{uid}"
        entered = opp.history[-1][1] if opp.history else NOW - timedelta(seconds=opp.entered_ago)
        rows.append((
            opportunity_id, contact.contact_id, process_id, 1, opp.key, f"{opp.owner}-{uid}",
            opp.status, opp.stage, entered, opp.closed, 0, opp.created, entered, 1,
            None if opp.amount is None else Decimal(opp.amount), opp.currency, opp.close_date,
            opp.probability, opp.category, opp.in_forecast, entered if opp.idle else None,
        ))  # fmt: skip
        for seq, (stage, at) in enumerate(opp.history, start=1):
            left = opp.history[seq][1] if seq < len(opp.history) else None
            history.append((
                opportunity_id, seq, at, opp.history[seq - 2][0] if seq > 1 else None, stage,
                "start" if seq == 1 else "manual", left,
                None if left is None else int((left - at).total_seconds()),
                opp.history[seq][0] if seq < len(opp.history) else None,
            ))  # fmt: skip
        if opp.history:  # a note beside the stages, which no report counts as a stay
            stage, at = opp.history[-1]
            history.append((opportunity_id, len(opp.history) + 1, at, stage, stage, "note",
                            None, None, None))  # fmt: skip
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("opportunities", records=rows, columns=OPPORTUNITY_COLUMNS)
        await conn.copy_records_to_table(
            "opportunity_history",
            records=history,
            columns=["opportunity_id", "seq", "at", "from_stage", "to_stage", "source",
                     "left_at", "duration_seconds", "left_for"],
        )  # fmt: skip


@pytest.fixture
async def seeded(pool: asyncpg.Pool, uid: str) -> str:
    """The data set under process `rep-<uid>`, and an open opportunity of another process
    that no filtered report may show."""
    process_id = f"rep-{uid}"
    await seed(pool, uid, process_id, OPEN + CLOSED_AND_HISTORY)
    other = Opp("z1", "Lead", amount="7", currency="EUR", probability=10,
                close_date=date(2026, 3, 15), category="pipeline")  # fmt: skip
    await seed(pool, uid, f"other-{uid}", [other])
    return process_id


def figures(row: Any, *names: str) -> tuple[Any, ...]:
    return tuple(getattr(row, name) for name in names)


async def test_the_pipeline_groups_open_opportunities_by_stage_in_order_and_currency(
    pool: asyncpg.Pool, seeded: str
) -> None:
    rows = await reports.pipeline(pool, process_id=seeded, now=NOW)
    got = [
        figures(r, "stage", "currency", "count", "without_amount", "amount", "weighted_amount",
                "average_seconds", "median_seconds", "idle")
        for r in rows
    ]  # fmt: skip
    assert got == [
        # 1000.00 and 2000.50 at 10 %; o4 has no amount but counts; 1, 2 and 6 days in Lead
        ("Lead", "EUR", 3, 1, Decimal("3000.50"), Decimal("300.05"), 3 * DAY, 2 * DAY, 1),
        ("Lead", "USD", 1, 0, Decimal("500.00"), Decimal("50.00"), 4 * DAY, 4 * DAY, 0),
        # 133.332 + 0.005 + 0.005 rounded once: 133.34 (each rounded first would make 133.35)
        ("Qualified", "EUR", 3, 0, Decimal("333.35"), Decimal("133.34"), 8400, 7200, 1),
        # r1, with no amount nor currency, in Qualified since 15 January: after the currencies
        ("Qualified", None, 1, 1, Decimal("0.00"), Decimal("0.00"), 45 * DAY, 45 * DAY, 0),
        # JPY has no minor units: 12345 x 75 % = 9258.75 is 9259
        ("Proposal", "JPY", 1, 0, Decimal("12345"), Decimal("9259"), 10 * DAY, 10 * DAY, 0),
    ]
    assert {r.process_id for r in rows} == {seeded}
    assert str(rows[0].weighted_amount) == "300.05" and str(rows[4].amount) == "12345"


async def test_the_pipeline_by_owner_and_over_every_process(
    pool: asyncpg.Pool, seeded: str, uid: str
) -> None:
    mine = await ReadModel(pool).pipeline(owner=f"ann-{uid}", now=NOW)
    assert [figures(r, "process_id", "stage", "currency", "count", "amount") for r in mine] == [
        (seeded, "Lead", "EUR", 1, Decimal("1000.00")),
        (seeded, "Lead", "USD", 1, Decimal("500.00")),
    ]
    every = await reports.pipeline(pool, now=NOW)
    ours = [r for r in every if r.process_id in (seeded, f"other-{uid}")]
    assert [(r.process_id, r.stage, r.count) for r in ours] == [
        (f"other-{uid}", "Lead", 1),
        (seeded, "Lead", 3), (seeded, "Lead", 1), (seeded, "Qualified", 3),
        (seeded, "Qualified", 1), (seeded, "Proposal", 1),
    ]  # fmt: skip


async def test_the_conversion_counts_entries_what_became_of_them_and_cycle_times(
    pool: asyncpg.Pool, seeded: str
) -> None:
    report = await reports.conversion(pool, seeded, *JANUARY)
    got = [figures(s, "stage", "entered", "moved_on", "won", "lost", "win_rate")
           for s in report.stages]  # fmt: skip
    assert got == [
        # l1 twice, r1 twice, x1 (left for Proposal after January), y1; d1 is deleted.
        # Moved on: all but l1's second stay (to Lost)
        ("Lead", 6, 5, 1, 3, Decimal("0.2500")),
        # w1 moved on to Proposal; l1 and r1 went back to Lead; r1's second stay runs on
        ("Qualified", 4, 1, 1, 1, Decimal("0.5000")),
        ("Proposal", 2, 1, 1, 1, Decimal("0.5000")),
        ("Won", 1, 0, 1, 0, Decimal("1.0000")),
        ("Lost", 2, 0, 0, 2, Decimal("0.0000")),
    ]
    [closed] = report.processes
    # closed in January: w1 won after 31 days, l1 lost after 6, y1 lost after 2 (x1 closed
    # in February)
    assert figures(closed, "process_id", "won", "lost", "win_rate", "average_cycle_seconds") == (
        seeded,
        1,
        2,
        Decimal("0.3333"),
        (31 + 6 + 2) * DAY / 3,
    )
    whole = await ReadModel(pool).conversion(seeded)
    assert [(s.stage, s.entered, s.moved_on) for s in whole.stages][:3] == [
        ("Lead", 7, 6),
        ("Qualified", 4, 1),
        ("Proposal", 3, 2),
    ]  # with w1's Lead in December and x1's Proposal in February
    assert figures(whole.processes[0], "won", "lost") == (2, 2)


async def test_the_conversion_of_an_idle_period_has_every_stage_at_zero(
    pool: asyncpg.Pool, seeded: str
) -> None:
    report = await reports.conversion(
        pool, seeded, datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC)
    )
    assert [(s.stage, s.entered, s.win_rate) for s in report.stages] == [
        (stage, 0, None) for stage in ("Lead", "Qualified", "Proposal", "Won", "Lost")
    ]
    assert figures(report.processes[0], "won", "lost", "win_rate", "average_cycle_seconds") == (
        0,
        0,
        None,
        None,
    )


async def test_the_forecast_by_month_and_by_quarter(
    pool: asyncpg.Pool, seeded: str, uid: str
) -> None:
    names = ("period", "period_start", "forecast_category", "currency", "count",
             "without_amount", "amount", "weighted_amount")  # fmt: skip
    monthly = await reports.forecast(pool, "month", process_id=seeded)
    assert [figures(r, *names) for r in monthly] == [
        ("2026-03", date(2026, 3, 1), "pipeline", "EUR", 2, 1, Decimal("1000.00"),
         Decimal("100.00")),
        ("2026-03", date(2026, 3, 1), "commit", "EUR", 1, 0, Decimal("2000.50"),
         Decimal("200.05")),
        ("2026-04", date(2026, 4, 1), "pipeline", "USD", 1, 0, Decimal("500.00"),
         Decimal("50.00")),
        ("2026-05", date(2026, 5, 1), "best_case", "EUR", 1, 0, Decimal("333.33"),
         Decimal("133.33")),
    ]  # fmt: skip
    quarterly = await ReadModel(pool).forecast("quarter", process_id=seeded)
    assert [figures(r, "period", "forecast_category", "currency", "count") for r in quarterly] == [
        ("2026-Q1", "pipeline", "EUR", 2),
        ("2026-Q1", "commit", "EUR", 1),
        ("2026-Q2", "pipeline", "USD", 1),
        ("2026-Q2", "best_case", "EUR", 1),
    ]
    ann = await reports.forecast(pool, "month", owner=f"ann-{uid}")
    assert [figures(r, "period", "currency", "amount") for r in ann] == [
        ("2026-03", "EUR", Decimal("1000.00")), ("2026-04", "USD", Decimal("500.00"))
    ]  # fmt: skip
    with pytest.raises(ValueError, match="month or quarter"):
        await reports.forecast(pool, "week")  # type: ignore[arg-type]


async def test_a_process_version_orders_its_stages_and_keeps_older_ones_after(
    pool: asyncpg.Pool, uid: str
) -> None:
    process_id = f"ver-{uid}"
    await seed(pool, uid, process_id, [Opp("v1", "Lead", currency="EUR")])
    await processes.apply_process(pool, definition(process_id, first="Intake"))
    await seed(pool, uid, process_id, [Opp("v2", "Intake", currency="EUR")])
    rows = await reports.pipeline(pool, process_id=process_id, now=NOW)
    assert [(r.stage, r.count) for r in rows] == [("Intake", 1), ("Lead", 1)]


async def test_the_reports_read_through_indexes(pool: asyncpg.Pool, seeded: str) -> None:
    """With sequential scans priced out, every report still has a plan: an index serves each
    table it reads (on a table this small the planner may rightly prefer a scan)."""
    filters: dict[str, dict[str, Any]] = {
        "pipeline": {"process_id": seeded, "now": NOW},
        "conversion": {"process_id": seeded, "since": JANUARY[0], "until": JANUARY[1]},
        "forecast": {"period": "month", "process_id": seeded},
    }
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        for report, given in filters.items():
            plan = await reports.explain(conn, report, **given)  # type: ignore[arg-type]
            assert "Seq Scan" not in plan, plan


# --- the command line ---------------------------------------------------------------------


async def test_report_commands_print_tables_json_and_csv(cli: Cli, seeded: str, uid: str) -> None:
    table = await cli("report", "pipeline", "--process", seeded)
    assert table.code == 0, table.stderr
    assert "Open pipeline" in table.stdout and "3000.50" in table.stdout
    assert "9259" in table.stdout and "Qualified" in table.stdout

    as_json = await cli("report", "pipeline", "--process", seeded, "--owner", f"ann-{uid}",
                        "--json")  # fmt: skip
    assert as_json.code == 0, as_json.stderr
    assert [(r["stage"], r["currency"], r["amount"], r["weighted_amount"])
            for r in as_json.json()] == [("Lead", "EUR", "1000.00", "100.00"),
                                         ("Lead", "USD", "500.00", "50.00")]  # fmt: skip

    conversion = await cli("report", "conversion", "--process", seeded,
                           "--from", "2026-01-01", "--to", "2026-01-31", "--csv")  # fmt: skip
    assert conversion.code == 0, conversion.stderr
    lines = list(csv.reader(io.StringIO(conversion.stdout)))
    assert lines[0][:7] == ["process_id", "stage", "entered", "moved_on", "won", "lost",
                            "win_rate"]  # fmt: skip
    assert lines[1] == [seeded, "Lead", "6", "5", "1", "3", "0.2500", "1", "2", "0.3333",
                        "1123200"]  # fmt: skip

    forecast = await cli("report", "forecast", "--period", "quarter", "--process", seeded,
                         "--json")  # fmt: skip
    assert [r["period"] for r in forecast.json()] == ["2026-Q1", "2026-Q1", "2026-Q2", "2026-Q2"]

    bad = await cli("report", "conversion", "--from", "2026-02-01", "--to", "2026-01-01")
    assert bad.code == 1 and "before --from" in bad.stderr
    both = await cli("report", "forecast", "--json", "--csv")
    assert both.code == 1 and "choose one" in both.stderr


async def test_csv_escapes_a_cell_a_spreadsheet_would_run(
    cli: Cli, pool: asyncpg.Pool, uid: str
) -> None:
    process_id = f"csv-{uid}"
    formula = Opp("f1", FORMULA_STAGE, amount="1.5", currency="EUR", probability=10)
    await seed(pool, uid, process_id, [formula])
    result = await cli("report", "pipeline", "--process", process_id, "--csv")
    assert result.code == 0, result.stderr
    [header, row] = list(csv.reader(io.StringIO(result.stdout)))
    assert header[:3] == ["process_id", "stage", "currency"]
    assert row[1] == "'" + FORMULA_STAGE and row[5:7] == ["1.50", "0.15"]
    assert '"\'=HYPERLINK(""http://x"")"' in result.stdout  # RFC 4180 quoting


async def test_charts_are_written_as_png_and_svg(cli: Cli, seeded: str, tmp_path: Path) -> None:
    from matplotlib import image

    png, svg = tmp_path / "pipeline.png", tmp_path / "forecast.svg"
    made = await cli("report", "pipeline", "--process", seeded, "--chart", str(png))
    assert made.code == 0, made.stderr
    assert f"wrote {png}" in made.stderr
    pixels = await asyncio.to_thread(image.imread, png)
    height, width = pixels.shape[:2]
    assert width == 900 and height >= 200
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[2])[::7]}) > 2, "blank"

    made = await cli("report", "forecast", "--process", seeded, "--chart", str(svg), "--json")
    assert made.code == 0, made.stderr
    json.loads(made.stdout)  # the chart's message went to stderr
    text = await asyncio.to_thread(svg.read_text)
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "<path" in text

    refused = await cli("report", "pipeline", "--chart", str(tmp_path / "chart.gif"))
    assert refused.code == 1 and "FILE.png or FILE.svg" in refused.stderr


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert await asyncio.to_thread(os.path.exists, CHROMIUM), (
        f"no Chromium at {CHROMIUM}: install Debian's chromium, or set CHROMIUM to its path"
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking"],
        )  # fmt: skip
        yield browser
        await browser.close()


async def test_the_html_page_shows_the_table_and_the_chart_offline(
    cli: Cli, seeded: str, tmp_path: Path, browser: Browser
) -> None:
    page_file = tmp_path / "conversion.html"
    made = await cli("report", "conversion", "--process", seeded, "--from", "2026-01-01",
                     "--to", "2026-01-31", "--html", str(page_file))  # fmt: skip
    assert made.code == 0, made.stderr
    text = await asyncio.to_thread(page_file.read_text)
    assert "http://" not in text and "https://" not in text and "<script" not in text
    context = await browser.new_context(offline=True)
    page = await context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.goto(page_file.as_uri())
    await expect(page.locator("h1")).to_have_text("Conversion by stage")
    stages = page.locator("#table-0")
    await expect(stages.locator("tbody tr")).to_have_count(5)
    await expect(stages.locator("tbody tr").first).to_contain_text("Lead")
    await expect(stages.locator("tbody tr").first).to_contain_text("25.0%")
    await expect(page.locator("#table-1")).to_contain_text("33.3%")
    chart = page.locator("#chart")
    await expect(chart).to_be_visible()
    size = await chart.evaluate("image => [image.complete, image.naturalWidth]")
    assert size[0] is True and size[1] > 100, size
    fetched = [url for url in requests if not url.startswith("data:")]
    assert fetched == [page_file.as_uri()], fetched
    await context.close()
