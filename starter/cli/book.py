"""`opportunities import` and `opportunities export`: a book of opportunities in and out as CSV.

The file is UTF-8 CSV as RFC 4180 writes it (comma, `"` quoting, CRLF from export; LF is
read too), with a header row naming the columns `COLUMNS`. Export escapes a cell a
spreadsheet would run as a formula with a leading apostrophe, and import undoes it
(`escape_cell`, `unescape_cell`), so an exported file imports again as it is.

Import reads the file twice, streaming: once to check every row (nothing starts while a row
is bad, unless asked to skip bad rows), then again to start the good ones, a bounded number
at a time. It is idempotent by the opportunity id: a row whose id the read model has for the
same contact is "already exists, skipped"; an empty id is derived from the row's content, so
a second run of the same file opens nothing new.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any, BinaryIO, Literal

import asyncpg
import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.service import RPCError

from sales.errors import describe_validation_error
from sales.opportunity import OpportunitySummary, StartOpportunity
from sales.process import FoundProcess
from sales.value import require_scale
from starter.cli.common import (
    JsonFlag,
    Unsuccessful,
    UserError,
    actor,
    cli_signer,
    console,
    counted,
    database,
    errors,
    new_app,
    print_json,
    run,
)
from starter.cli.filters import with_search_filters
from starter.client import OpportunitiesClient, StartFailed
from starter.client.read_model import ReadModel
from store import contacts, processes, users
from store.search import SearchFilters

app = new_app("A book of opportunities in and out as CSV.")

COLUMNS = (
    "opportunity_id", "contact_id", "process_id", "stage", "name", "owner", "amount",
    "currency", "expected_close_date",
)  # fmt: skip
"""The columns of an imported or exported file, in the order export writes them."""

FORMULA_START = "=+-@\t\r"
"""What a spreadsheet reads a cell starting with as a formula (OWASP's CSV injection list)."""
_TO_ESCAPE = re.compile(r"'*[=+\-@\t\r]")
_ESCAPED = re.compile(r"'+[=+\-@\t\r]")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

MAX_LINE_BYTES = 1024 * 1024
"""The longest line read: a longer one is no row of opportunities, and would take memory."""
CHUNK = 500
"""Rows checked against the read model at once (one query for their ids)."""
MAX_CACHED = 10_000
"""Contacts, users and processes remembered while a file is read; past it they are looked
up again."""
PAGE = 1000
"""Opportunities export reads from the read model a page at a time."""
DEFAULT_CONCURRENCY = 20
MAX_CONCURRENCY = 500
"""Starts in flight at most: each waits for its opportunity to open, polling the server."""


def escape_cell(text: str) -> str:
    """The cell as export writes it: with a leading apostrophe when a spreadsheet would run
    it as a formula, and also when it starts with apostrophes before such a character (so
    that `unescape_cell` gives back exactly what was written)."""
    return "'" + text if _TO_ESCAPE.match(text) else text


def unescape_cell(text: str) -> str:
    """The cell as export was given it: one leading apostrophe dropped when a formula
    character follows the apostrophes."""
    return text[1:] if _ESCAPED.match(text) else text


@dataclass(slots=True)
class Record:
    """One record of a CSV file: the line it starts on, its cells, and why it cannot be read
    (not UTF-8, broken quoting), if so, with the line that says so."""

    line: int
    cells: list[str]
    problem: str | None = None
    problem_line: int = 0


def read_records(file: BinaryIO) -> Iterator[Record]:
    """The records of a CSV file read as bytes, one at a time, each with the line it starts
    on: lines are decoded one by one, so a line that is not UTF-8 is reported with its
    number (and read with replacement characters, so the rest of the file is still read).
    A UTF-8 byte order mark is dropped. A line longer than `MAX_LINE_BYTES` ends the reading
    with a `UserError`."""
    undecodable: list[tuple[int, str]] = []
    read = 0

    def lines() -> Iterator[str]:
        nonlocal read
        while raw := file.readline(MAX_LINE_BYTES + 1):
            read += 1
            if len(raw) > MAX_LINE_BYTES:
                raise UserError(f"line {read}: longer than {MAX_LINE_BYTES:,} bytes")
            if read == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as error:
                byte = f"byte 0x{raw[error.start]:02x} at position {error.start + 1}"
                undecodable.append((read, f"not UTF-8: {byte} of the line"))
                yield raw.decode("utf-8", errors="replace")

    reader = csv.reader(lines(), strict=True)
    while True:
        first = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            undecodable.append((reader.line_num, f"not CSV: {error}"))
            cells = []
        if undecodable:
            line, problem = undecodable[0]
            undecodable.clear()
            yield Record(first, cells, problem, line)
        else:
            yield Record(first, cells)


def write_header(writer: Any) -> None:
    writer.writerow(COLUMNS)


def write_cells(writer: Any, cells: Iterable[str]) -> None:
    """One row, each cell escaped (`escape_cell`)."""
    writer.writerow([escape_cell(cell) for cell in cells])


def new_writer(stream: IO[str]) -> Any:
    """A CSV writer as RFC 4180 has it: comma, `"` quoting where needed, CRLF."""
    return csv.writer(stream, lineterminator="\r\n")


Verdict = Literal["open", "skip", "bad"]


@dataclass(slots=True)
class Row:
    """One row of the file: its line, the start it asks for, and what to do with it."""

    line: int
    start: StartOpportunity | None
    problems: list[str] = field(default_factory=list)
    verdict: Verdict = "open"
    contact_name: str | None = None
    process_label: str | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


def default_currency() -> str:
    """The currency of an amount given without one: the service's setting, as the worker
    reads it."""
    return os.environ.get("OPPORTUNITIES_CURRENCY") or "USD"


class RowReader:
    """The rows of a file, each checked on its own: its cells, a start payload as the
    workflow validates it (`StartOpportunity`), the amount's scale, and an id used twice in
    the file. What it remembers is one id and line per row (to name a duplicate's first
    line) and a small digest per row without an id."""

    def __init__(self) -> None:
        self.header: list[str] = []
        self.seen: dict[str, int] = {}
        self.unnamed: dict[bytes, int] = {}

    def rows(self, file: BinaryIO) -> Iterator[Row]:
        records = read_records(file)
        header = next(records, None)
        if header is None:
            raise UserError("line 1: no header row; the columns are " + ", ".join(COLUMNS))
        self.header = check_header(header)
        for record in records:
            if record.problem is None and not record.cells:
                continue  # a blank line
            yield self.row(record)

    def row(self, record: Record) -> Row:
        if record.problem is not None:
            return Row(record.problem_line, None, [record.problem], "bad")
        if len(record.cells) != len(self.header):
            why = f"{len(record.cells)} cells where the header has {len(self.header)}"
            return Row(record.line, None, [why], "bad")
        cells = dict(zip(self.header, map(unescape_cell, record.cells), strict=True))
        given = {column: value for column, value in cells.items() if value != ""}
        given["opportunity_id"] = given.get("opportunity_id") or self.generated_id(cells)
        duplicate = self.duplicate(given["opportunity_id"], record.line)
        start, problem = parse_start(given)
        problems = [p for p in (duplicate, problem) if p is not None]
        return Row(record.line, start, problems, "bad" if problems else "open")

    def generated_id(self, cells: dict[str, str]) -> str:
        """The id of a row without one: from its content and how many identical rows came
        before it, so that the same file gives the same ids every time it is read."""
        content = "\x1f".join(cells[column] for column in COLUMNS[1:]).encode()
        digest = hashlib.sha256(content).digest()[:12]
        seen = self.unnamed.get(digest, 0)
        self.unnamed[digest] = seen + 1
        return "opp-" + hashlib.sha256(digest + seen.to_bytes(8, "big")).hexdigest()[:16]

    def duplicate(self, opportunity_id: str, line: int) -> str | None:
        first = self.seen.setdefault(opportunity_id, line)
        if first == line:
            return None
        return f"opportunity id {opportunity_id!r} is also on line {first}"


def check_header(record: Record) -> list[str]:
    """The header's column names, or a `UserError` naming a missing, unknown or repeated
    column."""
    if record.problem is not None:
        raise UserError(f"line {record.problem_line}: {record.problem} (the header row)")
    names = record.cells
    unknown = [name for name in names if name not in COLUMNS]
    missing = [name for name in COLUMNS if name not in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    problems = [f"unknown column {name!r}" for name in unknown]
    problems += [f"missing column {name!r}" for name in missing]
    problems += [f"column {name!r} given twice" for name in repeated]
    if problems:
        raise UserError(
            f"line {record.line}: " + "; ".join(problems) + "; the columns are "
            + ", ".join(COLUMNS)
        )  # fmt: skip
    return names


def parse_start(given: dict[str, str]) -> tuple[StartOpportunity | None, str | None]:
    """The start a row asks for, validated as the workflow validates its input, and the
    amount's scale as the workflow checks it; else why not, in one line."""
    date = given.get("expected_close_date")
    if date is not None and not _DATE.fullmatch(date):
        return None, f"expected_close_date: {date[:40]!r} is not a date; give it as 2027-03-31"
    try:
        start = StartOpportunity.model_validate(given)
    except ValidationError as error:
        return None, describe_validation_error(error, "row")
    if start.amount is not None:
        problem = require_scale(start.amount, start.currency or default_currency())
        if problem is not None:
            return None, f"amount: {problem}"
    return start, None


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= MAX_CACHED:
        cache.clear()
    cache[key] = value


@dataclass
class Found:
    """What one chunk's rows name, as the read model has it."""

    used_by: dict[str, str]
    """Ids already used, with the contact of their opportunity."""
    contacts: dict[str, str | None]
    """Contact ids, with the contact's name (None: unknown)."""
    users: dict[str, bool]
    processes: dict[str | None, FoundProcess]
    """Process ids (None: the default process), with what looking them up found."""


class Lookups:
    """What the rows name, looked up in the read model a chunk at a time: the ids already
    used, contacts, processes and owners (the last three remembered, up to `MAX_CACHED`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.contacts: dict[str, str | None] = {}
        self.processes: dict[str | None, FoundProcess] = {}
        self.users: dict[str, bool] = {}

    async def check(self, rows: list[Row]) -> None:
        """Give each row of the chunk its verdict (in place): `skip` when its id is used by
        an opportunity of the same contact, `bad` with its problems, else `open`."""
        starts = [row.start for row in rows if row.start is not None]
        found = Found(
            used_by=await self.used_by([start.opportunity_id for start in starts]),
            contacts={id: await self.contact(id) for id in {s.contact_id for s in starts}},
            users=await self.known_users({start.owner for start in starts if start.owner}),
            processes={id: await self.process(id) for id in {s.process_id for s in starts}},
        )
        for row in rows:
            if row.start is not None:
                judge(row, row.start, found)

    async def used_by(self, ids: list[str]) -> dict[str, str]:
        """Of `ids`, those the read model has (whatever their status), with their contact."""
        if not ids:
            return {}
        page = await ReadModel(self.pool).search(SearchFilters(ids=ids), limit=len(ids))
        return {found.opportunity_id: found.contact_id for found in page.items}

    async def contact(self, contact_id: str) -> str | None:
        if contact_id in self.contacts:
            return self.contacts[contact_id]
        contact = await contacts.get_contact(self.pool, contact_id)
        name = contact.full_name if contact else None
        _remember(self.contacts, contact_id, name)
        return name

    async def known_users(self, user_ids: set[str]) -> dict[str, bool]:
        unknown = sorted(user_ids - self.users.keys())
        found = set(await users.existing(self.pool, unknown)) if unknown else set()
        known = {user_id: self.users[user_id] for user_id in user_ids if user_id in self.users}
        for user_id in unknown:
            known[user_id] = user_id in found
            _remember(self.users, user_id, known[user_id])
        return known

    async def process(self, process_id: str | None) -> FoundProcess:
        if process_id in self.processes:
            return self.processes[process_id]
        if process_id is None:
            found = FoundProcess(process=await processes.default_process(self.pool))
        else:
            found = await processes.find(self.pool, process_id)
        _remember(self.processes, process_id, found)
        return found


def judge(row: Row, start: StartOpportunity, found: Found) -> None:
    """The row's verdict, with every problem the workflow (or a second opening) would have."""
    used_by = found.used_by.get(start.opportunity_id)
    if used_by is not None and used_by != start.contact_id:
        row.problems.append(
            f"opportunity {start.opportunity_id!r} already exists for contact {used_by!r}; "
            "an opportunity id is used once"
        )
    elif used_by is not None and not row.problems:
        row.verdict = "skip"
        row.problems.append(f"opportunity {start.opportunity_id!r} already exists, skipped")
        return
    row.contact_name = found.contacts[start.contact_id]
    if row.contact_name is None:
        row.problems.append(f"unknown contact {start.contact_id!r}; `contact add` adds one")
    row.problems += process_problems(row, start, found.processes[start.process_id])
    if start.owner is not None and not found.users[start.owner]:
        row.problems.append(f"unknown user {start.owner!r} (owner); `user add` adds one")
    row.verdict = "bad" if row.problems else "open"


def process_problems(row: Row, start: StartOpportunity, found: FoundProcess) -> list[str]:
    """What the workflow would refuse of the process and stage (as `create` checks); the
    row's process label for what the Temporal UI shows."""
    if found.process is None:
        if start.process_id is None:
            return ["no default process is set up; give a process_id"]
        return [f"unknown process {start.process_id!r}"]
    if found.retired:
        return [f"process {start.process_id!r} is retired: it takes no new opportunities"]
    definition = found.process.definition
    row.process_label = f"{definition.process_id} v{found.process.version}"
    if start.stage is not None and definition.stage(start.stage) is None:
        return [
            f"unknown stage {start.stage!r} for process {definition.process_id!r}; "
            f"stages are {definition.stage_names()}"
        ]
    return []


async def checked_rows(path: Path, pool: asyncpg.Pool) -> AsyncIterator[Row]:
    """Every row of the file with its verdict, read and checked a chunk at a time."""
    lookups = Lookups(pool)
    chunk: list[Row] = []
    with open_book(path) as file:
        for row in RowReader().rows(file):
            chunk.append(row)
            if len(chunk) == CHUNK:
                await lookups.check(chunk)
                for checked in chunk:
                    yield checked
                chunk = []
    await lookups.check(chunk)
    for checked in chunk:
        yield checked


@contextmanager
def open_book(path: Path) -> Iterator[BinaryIO]:
    try:
        file = path.open("rb")
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    with file:
        yield file


@dataclass
class Tally:
    """What an import did, or with `dry_run` would do."""

    opened: int = 0
    skipped: int = 0
    bad: int = 0
    failed: int = 0
    to_open: int = 0
    dry_run: bool = False


Report = Callable[[int, str], None]
"""Told each row that is not opened: its line and why."""


def report_line(line: int, reason: str) -> None:
    """`line N: reason` on stderr, shown as data."""
    errors.print(f"line {line}: {reason}", highlight=False)


async def validate_book(path: Path, pool: asyncpg.Pool, report: Report) -> tuple[Tally, set[int]]:
    """The first reading: every row checked, each one not to open reported; the tally and
    the lines not to open (bad or skipped)."""
    tally = Tally()
    passed_over: set[int] = set()
    async for row in checked_rows(path, pool):
        if row.verdict == "open":
            tally.to_open += 1
            continue
        passed_over.add(row.line)
        if row.verdict == "skip":
            tally.skipped += 1
        else:
            tally.bad += 1
        report(row.line, row.reason)
    return tally, passed_over


async def import_book(
    path: Path,
    *,
    pool: asyncpg.Pool,
    client: OpportunitiesClient,
    dry_run: bool = False,
    skip_bad_rows: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    by: str | None = None,
    report: Report = report_line,
    progress: bool = True,
) -> Tally:
    """Import a book: check every row, then (unless `dry_run`, or a row is bad without
    `skip_bad_rows`) open the good ones, `concurrency` at a time."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UserError(f"--concurrency must be 1 to {MAX_CONCURRENCY}, not {concurrency}")
    tally, passed_over = await validate_book(path, pool, report)
    tally.dry_run = dry_run
    if dry_run or (tally.bad and not skip_bad_rows) or not tally.to_open:
        return tally
    opener = Opener(client, by, report, tally)
    with Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
        disable=not (progress and console.is_terminal),
    ) as bar:  # fmt: skip
        task = bar.add_task(f"opening {path.name}", total=tally.to_open)
        opener.advance = lambda: bar.advance(task)
        rows = (row async for row in checked_rows(path, pool) if row.line not in passed_over)
        await opener.open_all(rows, concurrency)
    return tally


class Opener:
    """Opens the rows it is given, `concurrency` at a time, counting each outcome."""

    def __init__(
        self, client: OpportunitiesClient, by: str | None, report: Report, tally: Tally
    ) -> None:
        self.client = client
        self.by = by
        self.report = report
        self.tally = tally
        self.advance: Callable[[], None] = lambda: None

    async def open_all(self, rows: AsyncIterator[Row], concurrency: int) -> None:
        queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=2 * concurrency)

        async def produce() -> None:
            async for row in rows:
                await queue.put(row)
            for _ in range(concurrency):
                await queue.put(None)

        async def consume() -> None:
            while (row := await queue.get()) is not None:
                await self.open_one(row)
                self.advance()

        tasks = [asyncio.ensure_future(produce())]
        tasks += [asyncio.ensure_future(consume()) for _ in range(concurrency)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def open_one(self, row: Row) -> None:
        """Open one row's opportunity. A row found bad or opened meanwhile (the file was
        checked, then the read model changed) is counted as failed or skipped."""
        if row.verdict != "open" or row.start is None:
            self.counted(row, "skipped" if row.verdict == "skip" else "failed", row.reason)
            return
        start = row.start
        value = start.model_dump(
            include={"amount", "currency", "expected_close_date"}, exclude_none=True
        )
        try:
            await self.client.create(
                start.contact_id, opportunity_id=start.opportunity_id,
                process_id=start.process_id, name=start.name, owner=start.owner,
                stage=start.stage, by=self.by, contact_name=row.contact_name,
                process_label=row.process_label, **value,
            )  # fmt: skip
        except StartFailed as error:
            if error.code == "already_exists":
                self.counted(row, "skipped", f"opportunity {start.opportunity_id!r} already exists")
            else:
                self.counted(row, "failed", f"not opened: {error}")
            return
        except RPCError as error:  # the server refused this start: the others go on
            self.counted(row, "failed", f"not opened: {type(error).__name__}: {error}")
            return
        self.tally.opened += 1

    def counted(self, row: Row, outcome: Literal["skipped", "failed"], reason: str) -> None:
        if outcome == "skipped":
            self.tally.skipped += 1
        else:
            self.tally.failed += 1
        self.report(row.line, reason)


def summary(tally: Tally) -> str:
    """The counts, as the last line of an import says them."""
    if tally.dry_run:
        text = f"dry run: would open {tally.to_open}, skipped {tally.skipped}, bad {tally.bad}"
        return text + "; nothing was started"
    text = f"opened {tally.opened}, skipped {tally.skipped}, bad {tally.bad}"
    return text + (f", failed {tally.failed}" if tally.failed else "")


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="A CSV file (UTF-8, header row).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and report; start nothing.")
    ] = False,
    skip_bad_rows: Annotated[
        bool,
        typer.Option("--skip-bad-rows", help="Open the good rows even when some are bad."),
    ] = False,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", min=1, max=MAX_CONCURRENCY, help="Opportunities opened at once."
        ),
    ] = DEFAULT_CONCURRENCY,
    as_json: JsonFlag = False,
) -> None:
    """Open an opportunity for each row of a CSV file. Every row is checked before any is
    opened; a row whose id is already used by the same contact is skipped, so running a file
    again opens nothing new."""

    async def work() -> Tally:
        client = await OpportunitiesClient.connect(signer=cli_signer())
        async with database() as pool:
            return await import_book(
                file, pool=pool, client=client, dry_run=dry_run, skip_bad_rows=skip_bad_rows,
                concurrency=concurrency, by=actor(), progress=not as_json,
            )  # fmt: skip

    tally = run(work)
    if as_json:
        print_json(tally.__dict__)
    else:
        console.print(summary(tally), highlight=False)
    if tally.bad and not skip_bad_rows:
        raise Unsuccessful(
            f"{counted(tally.bad, 'bad row')}: nothing was started (fix them, or give "
            "--skip-bad-rows to open the good ones)"
        )
    if tally.failed:
        raise Unsuccessful(f"{counted(tally.failed, 'row')} not opened")


def book_row(summary: OpportunitySummary) -> list[str]:
    """An opportunity as a row of `COLUMNS`: amounts as decimal strings, dates as
    YYYY-MM-DD, nothing as an empty cell."""
    return [
        summary.opportunity_id,
        summary.contact_id,
        summary.process_id,
        summary.current_stage,
        summary.name or "",
        summary.owner or "",
        format(summary.amount, "f") if summary.amount is not None else "",
        summary.currency or "",
        summary.expected_close_date.isoformat() if summary.expected_close_date else "",
    ]


async def export_book(pool: asyncpg.Pool, filters: SearchFilters, stream: IO[str]) -> int:
    """Write the header and every opportunity matching `filters` to `stream`, in id order, a
    page at a time; how many were written. Pages are read by offset, so an opportunity
    opened meanwhile before the page shifts it: a row the previous page wrote is not
    written again."""
    writer = new_writer(stream)
    write_header(writer)
    written = offset = 0
    previous: set[str] = set()
    while True:
        page = await ReadModel(pool).search(filters, limit=PAGE, offset=offset)
        for found in page.items:
            if found.opportunity_id not in previous:
                write_cells(writer, book_row(found))
                written += 1
        previous = {found.opportunity_id for found in page.items}
        offset += len(page.items)
        if len(page.items) < PAGE:
            return written


@contextmanager
def output(file: str) -> Iterator[IO[str]]:
    """Where export writes: stdout for `-`, else a file that appears only once complete (a
    temporary file beside it, renamed)."""
    if file == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(file)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        stream = temporary.open("x", encoding="utf-8", newline="")
    except OSError as error:
        raise UserError(f"cannot write {file}: {error.strerror}") from None
    try:
        with stream:
            yield stream
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@app.command("export")
@with_search_filters()
def export_command(
    file: Annotated[str, typer.Argument(help="The CSV file to write (`-`: stdout).")],
    as_json: JsonFlag = False,
    filters: SearchFilters | None = None,
) -> None:
    """Write the opportunities matching the search filters as CSV, in the columns import
    reads: the file imports again as it is."""
    assert filters is not None

    async def work() -> int:
        async with database() as pool:
            with output(file) as stream:
                return await export_book(pool, filters, stream)

    written = run(work)
    if file == "-":  # stdout carries the file
        errors.print(f"exported {counted(written, 'opportunity')} to stdout", highlight=False)
    elif as_json:
        print_json({"exported": written, "file": file})
    else:
        console.print(f"exported {counted(written, 'opportunity')} to {file}", highlight=False)
