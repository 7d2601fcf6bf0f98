"""The reports' figures and forms that need no database: rounding per currency, the stage
order's "moved on", the CSV dialect and its formula escaping, the HTML page's escaping, the
charts, and the one line the CLI prints without matplotlib."""

from __future__ import annotations

import csv
import io
import sys
from decimal import Decimal

import pytest

from starter.cli import _run_app, charts, report_page
from starter.cli.reports import Column, Rendered, csv_text, number, spreadsheet_safe
from store.reports import StageOrder, money, period_label, rate, weighted


def test_sums_are_rounded_half_up_to_the_currencys_minor_units() -> None:
    assert money(Decimal("3000.5"), "EUR") == Decimal("3000.50")
    assert weighted(Decimal("925875"), "JPY") == Decimal("9259")  # 12345 x 75 %
    assert weighted(Decimal("1.0005") * 100, "BHD") == Decimal("1.001")  # 3 minor units
    assert weighted(Decimal("0.5"), "EUR") == Decimal("0.01")  # 0.005: half up
    assert money(None, None) == Decimal("0.00")
    assert rate(1, 3) == Decimal("0.3333") and rate(2, 3) == Decimal("0.6667")
    assert rate(0, 0) is None


def test_moving_on_is_to_a_later_stage_that_does_not_lose_or_to_a_winning_one() -> None:
    order = StageOrder(
        stages=["Lead", "Proposal", "Lost", "Won", "Old"],
        closes_as={"Lead": None, "Proposal": None, "Lost": "lost", "Won": "won", "Old": None},
    )
    assert order.moved_on("Lead", "Proposal") and order.moved_on("Proposal", "Won")
    assert order.moved_on("Lead", "Old")  # an earlier version's stage comes last
    assert not order.moved_on("Proposal", "Lead")  # back
    assert not order.moved_on("Lead", "Lost")  # later, but a loss
    assert not order.moved_on("Lead", None)  # still there
    assert not order.moved_on("Lead", "Elsewhere")  # another process's stage


def test_period_labels() -> None:
    from datetime import date

    assert period_label(date(2026, 7, 1), "month") == "2026-07"
    assert period_label(date(2026, 7, 1), "quarter") == "2026-Q3"


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_a_cell_a_spreadsheet_would_run_gets_an_apostrophe(text: str) -> None:
    assert spreadsheet_safe(text) == "'" + text


@pytest.mark.parametrize("text", ["Lead", "1-2", "a=b", " =x", "", "'quoted"])
def test_other_cells_stay_as_they_are(text: str) -> None:
    assert spreadsheet_safe(text) == text


def test_csv_is_rfc_4180_with_a_header_row_and_plain_numbers() -> None:
    rendered = Rendered(
        title="t",
        note="n",
        data=[],
        columns=[Column("stage", "stage"), Column("amount", "amount", numeric=True),
                 Column("average_seconds", "avg", numeric=True), Column("n", "n")],
        rows=[['Négo, "final"', Decimal("1250.50"), 8400.0, None],
              ["two\nlines", Decimal("12345"), 0.5, 3], ["=2*3", Decimal("0.00"), -60.0, 0]],
        chart=charts.Chart(title="t"),
    )  # fmt: skip
    text = csv_text(rendered)
    assert text.split("\r\n")[0] == "stage,amount,average_seconds,n"
    assert text.endswith("\r\n")
    assert '"Négo, ""final""",1250.50,8400,\r\n' in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[1:] == [
        ['Négo, "final"', "1250.50", "8400", ""],
        ["two\\x0alines", "12345", "0.5", "3"],  # control characters escaped, as printed
        ["'=2*3", "0.00", "-60", "0"],  # a number is never escaped
    ]
    assert text.encode("utf-8").decode("utf-8") == text


def test_numbers_are_plain_decimals() -> None:
    assert number(Decimal("1E+3")) == "1000" and number(Decimal("0.10")) == "0.10"
    assert number(259200.0) == "259200" and number(1.25) == "1.25" and number(7) == "7"


def test_the_page_escapes_every_value_and_loads_nothing() -> None:
    table = report_page.Table(
        title="<b>Stages</b>",
        headers=["stage", "count"],
        rows=[["<script>alert(1)</script>", "3"], ["\"&'", "4"]],
        numeric=frozenset({1}),
    )
    text = report_page.page("A & B", "<i>note</i>", [table], b"<svg/>")
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&quot;&amp;&#x27;" in text and "&lt;b&gt;Stages&lt;/b&gt;" in text
    assert "<title>A &amp; B</title>" in text and "&lt;i&gt;note&lt;/i&gt;" in text
    assert "default-src 'none'" in text
    assert 'src="data:image/svg+xml;base64,PHN2Zy8+"' in text
    assert '<td class="number">3</td>' in text


def test_charts_are_png_or_svg_whatever_their_labels() -> None:
    pytest.importorskip("matplotlib")
    chart = charts.Chart(
        title="Price $5 and $6",
        panels=[
            charts.Bars(title="a", labels=["$x$", "y" * 100], series={"n": [1.0, 2.0]}),
            charts.Bars(title="b", labels=["2026-Q1"], series={"p": [1.0], "q": [2.0]},
                        horizontal=False, stacked=True),
        ],
    )  # fmt: skip
    assert charts.render(chart, "png").startswith(b"\x89PNG\r\n\x1a\n")
    svg = charts.render(chart, "svg")
    assert b"<svg" in svg and b"<script" not in svg
    assert charts.render(charts.Chart(title="empty"), "png").startswith(b"\x89PNG")


def test_without_matplotlib_the_cli_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setattr(sys, "argv", ["opportunities", "report", "pipeline", "--chart", "x.png"])
    assert _run_app() == 1
    assert capsys.readouterr().err == f"error: {charts.INSTALL_HINT}\n"
    monkeypatch.setattr(sys, "argv", ["opportunities", "report", "forecast", "--html", "x.html"])
    assert _run_app() == 1
    assert capsys.readouterr().err.count("\n") == 1
