"""What every `opportunities` command shares: output, errors, connections.

Everything printed goes through `console` or `errors` (or `print_json`): data is shown as
data. A string is never read as rich markup, and its control and bidi characters are shown
escaped (`runtime.escaping`), so a stored name cannot drive the terminal; styled text is built
with `styled`. `--json` output writes those characters as `\\uXXXX`.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from temporalio.client import WorkflowQueryFailedError
from temporalio.runtime import Runtime

import store
from runtime import settings
from runtime.codec import KeySettingError
from runtime.escaping import UNSAFE, escaped, json_text, neutralized
from runtime.signer import Signer, user_signer
from runtime.temporal import Unreachable
from sales.errors import CommandRejected, describe_validation_error
from sales.validation import MAX_PROCESS_BYTES
from starter.client import NoWorker, OpportunityNotFound, StartFailed


class SafeConsole(Console):
    """A rich console that prints every string as data: never as markup or emoji codes, its
    control and bidi characters escaped. Text it did not build from a string (a `styled`
    piece) passes a last guard that escapes any such character left."""

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(escaped(text), **{**options, "markup": False, "emoji": False})

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or segment.text == "\n" or not UNSAFE.search(segment.text):
                yield segment
            else:
                yield Segment(neutralized(segment.text, newlines=True), segment.style)


def styled(text: str, style: str | Style) -> Text:
    """`text` (data) in a style: escaped as every printed string is."""
    return Text(escaped(text), style=style)


console = SafeConsole()
errors = SafeConsole(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
T = TypeVar("T")


class UserError(Exception):
    """Bad input or a refused command: printed as one line, exit code 1."""


class Unsuccessful(Exception):
    """A command that ran and printed its result, but did not do what was asked (an action
    failed, a batch changed nothing): its one-line summary on stderr, exit code 1."""


ID_COLUMNS = frozenset({
    "opportunity", "activity", "action", "contact", "process", "event", "template", "letter",
    "linked activity", "stage", "from", "to",
})  # fmt: skip
"""Columns whose values are typed into the next command: never wrapped or cut."""


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], what: str, data: dict[str, Any]) -> M:
    """`data` as a `model`, or a one-line `UserError` saying what in `what` is invalid."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise UserError(describe_validation_error(error, what)) from None


def new_table(*headers: str, **options: Any) -> Table:
    """A table whose id columns never wrap and whose other cells fold rather than end in an
    ellipsis."""
    result = Table(*headers, **options)
    for column in result.columns:
        if str(column.header) in ID_COLUMNS:
            column.no_wrap = True
            column.overflow = "ignore"
        else:
            column.overflow = "fold"
    return result


def print_fields(fields: dict[str, str | None]) -> None:
    """Labelled values, one a line (those without a value left out)."""
    grid = Table.grid(padding=(0, 2))
    for label, value in fields.items():
        if value:
            grid.add_row(label, value)
    console.print(grid, highlight=False)


ColumnsOption = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="The columns to show, comma-separated (remembered for next time; `default` "
        "shows them all again).",
    ),
]


def cli_settings_file() -> Path:
    """Where the CLI remembers a user's choices (the list layouts):
    `$XDG_CONFIG_HOME/opportunities/cli.json`, or `OPPORTUNITIES_CLI_SETTINGS`."""
    if explicit := os.environ.get("OPPORTUNITIES_CLI_SETTINGS"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "opportunities" / "cli.json"


def _settings() -> dict[str, Any]:
    try:
        loaded = json.loads(cli_settings_file().read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def layout(view: str, available: list[str], asked: str | None) -> list[str]:
    """The columns `view` shows: those `asked` for (then remembered), else the ones
    remembered for it, else all."""
    settings = _settings()
    kept_layouts = settings.get("layouts")
    layouts: dict[str, Any] = kept_layouts if isinstance(kept_layouts, dict) else {}
    if asked is None:
        kept = layouts.get(view)
        if isinstance(kept, list) and kept and all(name in available for name in kept):
            return [str(name) for name in kept]
        return available
    if asked.strip() == "default":
        layouts.pop(view, None)
        chosen = available
    else:
        chosen = [name.strip() for name in asked.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in available]
        if unknown or not chosen:
            raise UserError(
                f"unknown column {', '.join(map(repr, unknown)) or '(none given)'}; "
                f"the columns are {', '.join(available)}"
            )
        layouts[view] = chosen
    settings["layouts"] = layouts
    path = cli_settings_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2) + "\n")
    except OSError as error:
        errors.print(f"(could not remember the columns in {path}: {error.strerror})")
    return chosen


def keep_columns(table: Table, names: list[str]) -> Table:
    """The table with only the columns `names`, in that order (rows keep their style)."""
    by_name = {str(column.header): column for column in table.columns}
    kept = [by_name[name] for name in names if name in by_name]
    if len(kept) == len(table.columns) and kept == table.columns:
        return table
    new = new_table(*(str(column.header) for column in kept), title=table.title)
    cells = [list(column.cells) for column in kept]
    for n, row in enumerate(table.rows):
        new.add_row(*(column[n] for column in cells), style=row.style)
    return new


def print_table(table: Table, *, view: str | None = None, columns: str | None = None) -> None:
    """Print `table`; with `view`, in the list layout the user chose (`--columns`)."""
    if view is not None:
        table = keep_columns(table, layout(view, [str(c.header) for c in table.columns], columns))
    print_fitted(table)


def print_fitted(table: Table) -> None:
    """Print `table` at the terminal's width, or wider when its ids and words would not fit
    (the terminal then wraps the lines): a column may wrap between words, never inside one,
    so an id is never cut."""
    needed = 1 + len(table.columns)  # the borders
    for column in table.columns:
        texts = [shown(column.header), *(shown(cell) for cell in column.cells)]
        if column.no_wrap:
            longest = max(len(line) for text in texts for line in text.splitlines() or [""])
        else:
            longest = max(len(word) for text in texts for word in text.split() or [""])
            column.min_width = longest
        needed += longest + 2  # the padding
    width = console.width
    console.width = max(width, needed)
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


def shown(cell: Any) -> str:
    """A cell's text as printed: a string escaped (`SafeConsole`), styled text as it is."""
    return str(cell) if isinstance(cell, Text) else escaped(str(cell))


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 opportunity`, `2 opportunities`, `0 open activities`."""
    if count == 1:
        return f"{count} {noun}"
    if plural is None:
        consonant_y = noun.endswith("y") and noun[-2:-1] not in "aeiou"
        plural = noun[:-1] + "ies" if consonant_y else noun + "s"
    return f"{count} {plural}"


def new_app(help: str) -> typer.Typer:
    return typer.Typer(
        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=help
    )


def run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    _temporal_threads_without_sigint()
    return asyncio.run(work())


_runtime_started = False


def _temporal_threads_without_sigint() -> None:
    """Start Temporal's runtime (its threads) with SIGINT blocked, so that they never take a
    Ctrl-C: one they took would not wake the main thread waiting for an answer to a
    question, and the command would hang. Done once, on the first command's work."""
    global _runtime_started
    if _runtime_started:
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        Runtime.default()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    _runtime_started = True


EXPECTED_ERRORS = (
    UserError,
    Unsuccessful,
    CommandRejected,
    StartFailed,
    NoWorker,
    OpportunityNotFound,
    store.StoreError,
    settings.NotConfigured,
    Unreachable,
    KeySettingError,
    WorkflowQueryFailedError,
)
"""Errors that are the user's to fix: one line on stderr, no traceback."""


@asynccontextmanager
async def database() -> AsyncIterator[asyncpg.Pool]:
    pool = await store.create_pool(settings.database_url(), max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def cli_signer(by: str | None = None) -> Signer | None:
    """The key the CLI signs with: that of the user it acts as (`--by`, else
    `OPPORTUNITIES_USER` or the login name), made by `opportunities keys create`, if any."""
    try:
        return user_signer(by or actor())
    except ValueError as error:
        raise UserError(str(error)) from None


def actor() -> str:
    """Who is issuing commands from this terminal: `OPPORTUNITIES_USER`, else the login name."""
    return os.environ.get("OPPORTUNITIES_USER") or getpass.getuser()


def print_json(value: Any) -> None:
    """`value` (models, lists and dicts of them) as JSON on stdout, control and bidi
    characters written as `\\uXXXX`."""
    sys.stdout.write(json_text(to_jsonable_python(value, fallback=str)) + "\n")


MAX_FILE_BYTES = 4 * MAX_PROCESS_BYTES
"""The largest file a command reads: more than any document the service takes (a process
definition, the largest, is at most `MAX_PROCESS_BYTES` as compact JSON), in any layout."""


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """A UTF-8 text file of at most `limit` bytes (line breaks read as `\\n`), or a one-line
    `UserError` saying why it cannot be read."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    if len(data) > limit:
        raise UserError(f"cannot read {path}: it is larger than {limit:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"cannot read {path}: not UTF-8 text") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_document(path: Path, limit: int = MAX_FILE_BYTES) -> Any:
    """A JSON or YAML document of at most `limit` bytes (as a file, and as compact JSON), told
    apart by its content whatever the file's extension: a document that opens with `{` or `[`
    is JSON (whose errors read better), any other YAML. Whatever keeps it from being read (bad
    syntax, an integer too long to convert, nesting too deep, a YAML alias expanding past the
    limit) is a one-line `UserError`."""
    text = read_text(path, limit)
    kind = "JSON" if text.lstrip().startswith(("{", "[")) else "YAML"
    try:
        document = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path} is neither JSON nor valid YAML: {reason(error)}") from None
    except Exception as error:  # any other failure to read it is the file's, told in one line
        raise UserError(f"{path} is not valid {kind}: {reason(error)}") from None
    if not isinstance(document, dict | list):
        raise UserError(f"{path} holds no JSON or YAML document (an object or a list)")
    try:
        too_large = json_size_over(document, limit)
    except (ValueError, RecursionError) as error:  # a YAML alias inside itself, say
        raise UserError(f"{path} cannot be a JSON document: {reason(error)}") from None
    if too_large:
        raise UserError(f"{path} is larger than {limit:,} bytes as JSON")
    return document


def json_size_over(value: Any, limit: int) -> bool:
    """Whether `value` is larger than `limit` bytes as compact JSON (as `json_size` counts);
    encoding stops as soon as it is, so an expanding YAML alias costs no more than the limit.
    `ValueError` for a value that refers to itself."""
    size = 0
    for chunk in json.JSONEncoder(separators=(",", ":"), default=str).iterencode(value):
        size += len(chunk)
        if size > limit:
            return True
    return False


def reason(error: BaseException, limit: int = 200) -> str:
    """An exception's message as one short line: its first line, cut to `limit` characters
    (its type when it has none)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
