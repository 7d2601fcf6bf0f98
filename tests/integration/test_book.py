"""`opportunities import` and `export`, run as a user would against the real servers: a book
opens with its values, a second run opens nothing new, every bad row is reported with its line
and nothing starts, `--skip-bad-rows` and `--dry-run`, and an exported file imports again."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from temporalio.service import RPCError
from temporalio.worker import Worker

from runtime.workflow_ids import opportunity_workflow_id
from sales.contact import Contact
from starter.cli.book import COLUMNS, new_writer, write_cells, write_header
from starter.client import OpportunitiesClient
from store import contacts
from tests.support.helpers import setup_contact, setup_process
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")

HEADER = ",".join(COLUMNS)


def book(path: Path, *lines: str | bytes) -> Path:
    """A CSV file of the header and `lines` (bytes kept as they are), CRLF line ends."""
    raw = [line if isinstance(line, bytes) else line.encode() for line in (HEADER, *lines)]
    path.write_bytes(b"\r\n".join(raw) + b"\r\n")
    return path


async def rows_of(pool: asyncpg.Pool, contact_id: str) -> dict[str, asyncpg.Record]:
    found = await pool.fetch("SELECT * FROM opportunities WHERE contact_id = $1", contact_id)
    return {row["opportunity_id"]: row for row in found}


async def setup(pool: asyncpg.Pool, uid: str) -> tuple[str, str]:
    """This test's process (no activity on entry) and contact."""
    return await setup_process(pool, uid, on_entry=False), await setup_contact(pool, uid)


async def never_started(opportunities: OpportunitiesClient, opportunity_id: str) -> bool:
    handle = opportunities.temporal.get_workflow_handle(opportunity_workflow_id(opportunity_id))
    try:
        await handle.describe()
    except RPCError:
        return True
    return False


async def test_a_book_opens_with_its_values_and_a_second_run_opens_nothing_new(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    process, contact = await setup(pool, uid)
    path = book(
        tmp_path / "book.csv",
        f"i1-{uid},{contact},{process},,Term life,ann,250000.50,EUR,2027-03-31",
        f'i2-{uid},{contact},{process},Proposal,"Smith, ""Jr"" cover",bob,1000,JPY,',
        f",{contact},{process},,,,,,",
        f",{contact},{process},,,,,,",
    )
    first = await cli("import", str(path))
    assert first.code == 0, first.stderr
    assert "opened 4, skipped 0, bad 0" in first.stdout
    rows = await rows_of(pool, contact)
    assert len(rows) == 4, "two identical rows without an id are two opportunities"
    one, two = rows[f"i1-{uid}"], rows[f"i2-{uid}"]
    assert (one["name"], one["owner"], one["current_stage"]) == ("Term life", "ann", "Prospect")
    assert (one["amount"], one["currency"]) == (Decimal("250000.50"), "EUR")
    assert one["expected_close_date"] == date(2027, 3, 31)
    assert (two["name"], two["owner"], two["current_stage"]) == ('Smith, "Jr" cover', "bob",
                                                                 "Proposal")  # fmt: skip
    assert (two["amount"], two["currency"], two["expected_close_date"]) == (
        Decimal("1000"), "JPY", None)  # fmt: skip
    generated = [row for id, row in rows.items() if id.startswith("opp-")]
    assert len(generated) == 2
    assert all(row["name"] == "Ada Lovelace" and row["amount"] is None for row in generated)

    again = await cli("import", str(path), "--json")
    assert again.code == 0, again.stderr
    assert again.json() == {
        "opened": 0, "skipped": 4, "bad": 0, "failed": 0, "to_open": 0, "dry_run": False,
    }  # fmt: skip
    assert again.stderr.count("already exists, skipped") == 4
    assert f"line 2: opportunity 'i1-{uid}' already exists, skipped" in again.stderr
    assert len(await rows_of(pool, contact)) == 4, "nothing new"


async def test_every_bad_row_is_reported_with_its_line_and_nothing_starts(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient,
    tmp_path: Path, uid: str,
) -> None:  # fmt: skip
    process, contact = await setup(pool, uid)
    good = f"g-{uid},{contact},{process},,Good,ann,100,EUR,2027-01-31"
    bad_rows = {
        3: (f"b1-{uid},{contact},{process},,Caf\xe9,ann,,,".encode("latin-1"), "not UTF-8"),
        4: (good.replace("Good", "Twice"), f"opportunity id 'g-{uid}' is also on line 2"),
        5: (f"b3-{uid},nobody-{uid},{process},,,,,,", f"unknown contact 'nobody-{uid}'"),
        6: (f"b4-{uid},{contact},{process},,,,12.5,JPY,", "12.5 JPY has 1 decimals; JPY has 0"),
        7: (f"b5-{uid},{contact},{process},,,,-5,EUR,", "amount: an amount is a non-negative"),
        8: (f"b6-{uid},{contact},{process},,,,1e5,EUR,", "amount: an amount is a non-negative"),
        9: (f"b7-{uid},{contact},{process},,,,10,XYZ,", "'XYZ' is not an ISO 4217 currency"),
        10: (f"b8-{uid},{contact},{process},,,,,,2027-02-30", "expected_close_date:"),
        11: (f"b9-{uid},{contact},{process},,,,,,31/03/2027", "'31/03/2027' is not a date"),
        12: (f"b10-{uid},{contact},{process},Signed,,,,,", "unknown stage 'Signed'"),
        13: (f"b11-{uid},{contact},{process},,,nobody-{uid},,,", f"unknown user 'nobody-{uid}'"),
        14: (f"b12-{uid},{contact},none-{uid},,,,,,", f"unknown process 'none-{uid}'"),
        15: (f"b13-{uid},{contact}", "2 cells where the header has 9"),
    }
    path = book(tmp_path / "bad.csv", good, *(line for line, _ in bad_rows.values()))
    refused = await cli("import", str(path))
    assert refused.code == 1
    reported = refused.stderr.splitlines()
    for line, (_, reason) in bad_rows.items():
        assert any(r.startswith(f"line {line}: ") and reason in r for r in reported), (
            line, reason, refused.stderr)  # fmt: skip
    assert "13 bad rows: nothing was started" in refused.stderr
    assert "opened 0, skipped 0, bad 13" in refused.stdout
    assert await rows_of(pool, contact) == {}
    assert await never_started(opportunities, f"g-{uid}")

    dry = await cli("import", str(path), "--dry-run", "--skip-bad-rows")
    assert dry.code == 0, dry.stderr
    assert "dry run: would open 1, skipped 0, bad 13; nothing was started" in dry.stdout
    assert await never_started(opportunities, f"g-{uid}")

    skipping = await cli("import", str(path), "--skip-bad-rows", "--concurrency", "3")
    assert skipping.code == 0, skipping.stderr
    assert "opened 1, skipped 0, bad 13" in skipping.stdout
    assert "line 6: " in skipping.stderr
    assert set(await rows_of(pool, contact)) == {f"g-{uid}"}


async def test_a_bad_header_is_reported_and_nothing_starts(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    process, contact = await setup(pool, uid)
    row = f"h-{uid},{contact},{process},,,,,,"
    missing = tmp_path / "missing.csv"
    missing.write_text(HEADER.replace(",currency", "") + "\n" + row.rsplit(",", 1)[0] + "\n")
    result = await cli("import", str(missing))
    assert result.code == 1 and "line 1: missing column 'currency'" in result.stderr
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(HEADER + ",colour\n" + row + ",red\n")
    result = await cli("import", str(unknown))
    assert result.code == 1 and "line 1: unknown column 'colour'" in result.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = await cli("import", str(empty))
    assert result.code == 1 and "line 1: no header row" in result.stderr
    assert await rows_of(pool, contact) == {}


async def test_export_escapes_formulas_and_imports_again(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    process, contact = await setup(pool, uid)
    names = ["=SUM(A1:A9)", "+cmd|' /C calc'!A0", "@risk", "'=quoted", "Plain, with a comma"]
    written = io.StringIO(newline="")
    writer = new_writer(written)
    write_header(writer)
    for n, name in enumerate(names):
        write_cells(writer, [f"x{n}-{uid}", contact, process, "", name, "ann", f"{n + 1}0.50",
                             "EUR", f"2027-0{n + 1}-15"])  # fmt: skip
    write_cells(writer, [f"y-{uid}", contact, process, "Proposal", "Bob's", "bob", "7", "JPY", ""])
    source = tmp_path / "in.csv"
    source.write_text(written.getvalue(), encoding="utf-8", newline="")
    imported = await cli("import", str(source))
    assert imported.code == 0, imported.stderr
    rows = await rows_of(pool, contact)
    assert [rows[f"x{n}-{uid}"]["name"] for n in range(len(names))] == names

    exported = tmp_path / "out.csv"
    result = await cli("export", str(exported), "--contact", contact, "--owner", "ann", "--json")
    assert result.code == 0, result.stderr
    assert result.json() == {"exported": len(names), "file": str(exported)}
    text = exported.read_bytes().decode("utf-8")
    assert text.startswith(HEADER + "\r\n")
    first_row = f"x0-{uid},{contact},{process},Prospect,'=SUM(A1:A9),ann,10.50,EUR,2027-01-15"
    assert first_row + "\r\n" in text
    assert f"y-{uid}" not in text, "the filter holds"
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert [r[4] for r in records[1:]] == ["'=SUM(A1:A9)", "'+cmd|' /C calc'!A0", "'@risk",
                                            "''=quoted", "Plain, with a comma"]  # fmt: skip

    again = await cli("import", str(exported), "--dry-run")
    assert again.code == 0, again.stderr
    assert f"dry run: would open 0, skipped {len(names)}, bad 0" in again.stdout

    fresh = io.StringIO(newline="")
    csv.writer(fresh, lineterminator="\r\n").writerows(
        [records[0], *([f"r{n}-{uid}", *r[1:]] for n, r in enumerate(records[1:]))]
    )  # the cells as export wrote them, escaped
    (tmp_path / "fresh.csv").write_text(fresh.getvalue(), encoding="utf-8", newline="")
    reopened = await cli("import", str(tmp_path / "fresh.csv"))
    assert reopened.code == 0, reopened.stderr
    assert f"opened {len(names)}, skipped 0, bad 0" in reopened.stdout
    rows = await rows_of(pool, contact)
    for n, name in enumerate(names):
        copy, original = rows[f"r{n}-{uid}"], rows[f"x{n}-{uid}"]
        assert copy["name"] == name
        for column in ("owner", "current_stage", "amount", "currency", "expected_close_date"):
            assert copy[column] == original[column]

    piped = await cli("export", "-", "--contact", contact, "--stage", "Proposal")
    assert piped.code == 0, piped.stderr
    assert piped.stdout.splitlines() == [
        HEADER, f"y-{uid},{contact},{process},Proposal,Bob's,bob,7,JPY,"
    ]  # fmt: skip
    assert "exported 1 opportunity to stdout" in piped.stderr


async def test_an_id_used_by_another_contact_is_bad(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    process, contact = await setup(pool, uid)
    await contacts.add_contact(pool, Contact(contact_id=f"d-{uid}", first_name="B", last_name="C"))
    first = await cli("import", str(book(tmp_path / "a.csv", f"u-{uid},{contact},{process},,,,,,")))
    assert first.code == 0, first.stderr
    other = book(tmp_path / "b.csv", f"u-{uid},d-{uid},{process},,,,,,")
    result = await cli("import", str(other))
    assert result.code == 1
    assert f"line 2: opportunity 'u-{uid}' already exists for contact '{contact}'" in result.stderr
