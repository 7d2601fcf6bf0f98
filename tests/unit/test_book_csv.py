"""The CSV of `opportunities import` and `export`, without servers: any text survives export,
the CSV reader and the undoing of formula escaping exactly; a cell a spreadsheet would run is
never written as it is; lines are counted as a user counts them; rows are checked as the
workflow checks its input, and ids left empty are the same on every reading."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sales.opportunity import OpportunitySummary
from starter.cli.book import (
    COLUMNS,
    FORMULA_START,
    RowReader,
    escape_cell,
    export_book,
    new_writer,
    read_records,
    unescape_cell,
    write_cells,
    write_header,
)
from starter.cli.common import UserError
from store.search import SearchFilters

HEADER = ",".join(COLUMNS)

tricky = st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'", "''", '"', ",", "\n", "\r\n", " "])
cell = st.lists(tricky | st.text(max_size=12), max_size=5).map("".join)
"""Any text, often starting with (and holding) what CSV and spreadsheets treat specially."""


def exported(rows: list[list[str]]) -> bytes:
    stream = io.StringIO(newline="")
    writer = new_writer(stream)
    write_header(writer)
    for row in rows:
        write_cells(writer, row)
    return stream.getvalue().encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cell, min_size=len(COLUMNS), max_size=len(COLUMNS)), max_size=6))
def test_any_text_round_trips_through_export_and_import(rows: list[list[str]]) -> None:
    records = list(read_records(io.BytesIO(exported(rows))))
    assert [r.problem for r in records] == [None] * (len(rows) + 1)
    assert records[0].cells == list(COLUMNS)
    assert [[unescape_cell(c) for c in r.cells] for r in records[1:]] == rows


@given(cell)
def test_no_escaped_cell_starts_a_formula_and_unescaping_undoes_it(text: str) -> None:
    escaped = escape_cell(text)
    assert not escaped.startswith(tuple(FORMULA_START))
    assert unescape_cell(escaped) == text


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
     ("\tx", "'\tx"), ("\rx", "'\rx"), ("'=1", "''=1"), ("'abc", "'abc"), ("a=b", "a=b"),
     ("", "")],
)  # fmt: skip
def test_formula_escaping(text: str, escaped: str) -> None:
    assert escape_cell(text) == escaped
    assert unescape_cell(escaped) == text


def test_an_apostrophe_before_a_formula_character_is_dropped_on_import() -> None:
    assert [unescape_cell(c) for c in ["'=1", "'-5", "'@x", "'abc", "x'=1"]] == [
        "=1", "-5", "@x", "'abc", "x'=1"]  # fmt: skip


def test_lines_are_counted_as_a_user_counts_them() -> None:
    data = (
        b"\xef\xbb\xbfa,b\r\n"  # a byte order mark, dropped
        b'1,"two\nlines"\n'
        b"\n"
        b"3,caf\xe9\r\n"  # Latin-1
        b'"4",5\n'
        b'"x"y,6\n'
    )
    records = list(read_records(io.BytesIO(data)))
    assert [(r.line, r.cells, r.problem) for r in records[:4]] == [
        (1, ["a", "b"], None),
        (2, ["1", "two\nlines"], None),
        (4, [], None),
        (5, ["3", "caf\ufffd"], "not UTF-8: byte 0xe9 at position 6 of the line"),
    ]
    assert (records[4].line, records[4].cells) == (6, ["4", "5"])
    assert (records[5].line, records[5].problem_line) == (7, 7)
    assert records[5].problem is not None and records[5].problem.startswith("not CSV")


def test_a_line_past_the_limit_ends_the_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("starter.cli.book.MAX_LINE_BYTES", 10)
    with pytest.raises(UserError, match="line 2: longer than 10 bytes"):
        list(read_records(io.BytesIO(b"a,b\n" + b"x" * 11 + b"\n")))


def rows_of(*lines: str, header: str = HEADER) -> list[tuple[int, str, str | None, str]]:
    data = "\n".join((header, *lines)).encode()
    return [
        (row.line, row.verdict, row.start.opportunity_id if row.start else None, row.reason)
        for row in RowReader().rows(io.BytesIO(data))
    ]


def test_rows_are_checked_as_the_workflow_checks_its_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPPORTUNITIES_CURRENCY", raising=False)
    checked = rows_of(
        "o-1,c-1,p,,Name,ann,12.50,EUR,2027-03-31",
        "o-2,c-1,,,,,12.5,JPY,",
        "o-3,c-1,,,,,-1,EUR,",
        "o-4,c-1,,,,,1e5,EUR,",
        "o-5,c-1,,,,,1,EURO,",
        "o-6,c-1,,,,,,,2027-13-01",
        "o-7,c-1,,,,,12.345,,",  # the default currency, USD, has 2 decimals
        "o-1,c-2,,,,,,,",
        "o 8,,,,,,,,",
        "'=o-9,c-1,,,'=x,,,,",
    )
    assert checked[0] == (2, "open", "o-1", "")
    reasons = {line: reason for line, verdict, _, reason in checked[1:] if verdict == "bad"}
    assert reasons == {
        3: "amount: 12.5 JPY has 1 decimals; JPY has 0",
        4: reasons[4], 5: reasons[5], 6: reasons[6], 7: reasons[7],
        8: "amount: 12.345 USD has 3 decimals; USD has 2",
        9: "opportunity id 'o-1' is also on line 2",
        10: reasons[10], 11: reasons[11],
    }  # fmt: skip
    assert all(reasons[n].startswith("invalid row: amount: ") for n in (4, 5))
    assert reasons[6].startswith("invalid row: currency: 'EURO' is not an ISO 4217")
    assert reasons[7].startswith("invalid row: expected_close_date: ")
    assert "opportunity_id" in reasons[10] and "contact_id: Field required" in reasons[10]
    assert reasons[11].startswith("invalid row: opportunity_id: "), "unescaped, then checked"


def test_an_empty_id_is_the_same_on_every_reading_and_identical_rows_differ() -> None:
    lines = [",c-1,,,,,,,", ",c-1,,,,,,,", ",c-2,,,,,,,", ",c-1,,,,,,,"]
    first = [opportunity_id for _, _, opportunity_id, _ in rows_of(*lines)]
    assert first == [opportunity_id for _, _, opportunity_id, _ in rows_of(*lines)]
    assert len(set(first)) == 4 and all(str(o).startswith("opp-") for o in first)
    assert [o for _, _, o, _ in rows_of(lines[2], lines[0])] == [first[2], first[0]]


@pytest.mark.parametrize(
    ("header", "message"),
    [(HEADER.replace(",currency", ""), "line 1: missing column 'currency'"),
     (HEADER + ",colour", "line 1: unknown column 'colour'"),
     (HEADER + ",name", "line 1: column 'name' given twice"),
     (HEADER.replace("contact_id", "Contact_Id"), "unknown column 'Contact_Id'; missing column "
      "'contact_id'")],
)  # fmt: skip
def test_a_bad_header_is_refused(header: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        rows_of(header=header)


def summary(opportunity_id: str, **fields: Any) -> OpportunitySummary:
    values: dict[str, Any] = {
        "contact_id": "c-1", "process_id": "p", "current_stage": "Prospect", "name": None,
        "owner": None, "amount": None, "currency": None, "expected_close_date": None,
    }  # fmt: skip
    return OpportunitySummary.model_construct(opportunity_id=opportunity_id, **(values | fields))


async def test_export_pages_through_the_read_model_writing_each_row_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An opportunity opened between two pages, before them in id order, shifts the second
    page by one: the row seen again is not written twice."""
    book = [summary(f"o-{n}") for n in (1, 3, 4, 5, 6)]
    book[0] = summary("o-1", name="=1+1", amount=Decimal("1250.50"), currency="EUR",
                      expected_close_date=date(2027, 3, 31))  # fmt: skip

    class ReadModel:
        def __init__(self, pool: object) -> None:
            pass

        async def search(self, filters: SearchFilters, *, limit: int, offset: int) -> Any:
            page = SimpleNamespace(items=book[offset : offset + limit])
            if offset == 0:
                book.insert(0, summary("o-0"))  # opened meanwhile
            return page

    monkeypatch.setattr("starter.cli.book.ReadModel", ReadModel)
    monkeypatch.setattr("starter.cli.book.PAGE", 2)
    stream = io.StringIO(newline="")
    written = await export_book(cast(Any, None), SearchFilters(), stream)
    lines = stream.getvalue().split("\r\n")
    assert lines[0] == HEADER and lines[-1] == ""
    assert [line.split(",")[0] for line in lines[1:-1]] == ["o-1", "o-3", "o-4", "o-5", "o-6"]
    assert written == 5
    assert lines[1] == "o-1,c-1,p,Prospect,'=1+1,,1250.50,EUR,2027-03-31"
