"""What the CLI prints and the logs write shows every control and bidi character escaped, and
reads data as data (never as rich markup); the escaped form tells every original apart, and
`--json` carries the very same values. No error message is large, and no file a command reads
fails with anything but a one-line error."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from runtime.escaping import UNSAFE, escaped, json_text, neutralized
from runtime.observability import JsonFormatter, TextFormatter
from sales.errors import (
    MAX_PLACE_CHARS,
    MAX_PROBLEMS,
    MAX_REASON_CHARS,
    describe_validation_error,
)
from sales.process import ProcessDefinition
from sales.validation import MAX_PROCESS_BYTES
from starter import cli
from starter.cli import common as cli_common
from starter.cli import setup as cli_setup
from starter.cli.common import (
    SafeConsole,
    UserError,
    load_document,
    new_table,
    print_fields,
    print_fitted,
)
from tests.support.helpers import example_definition

UNSAFE_CHARACTERS = (
    [chr(n) for n in range(0x20)]
    + [chr(n) for n in range(0x7F, 0xA0)]
    + ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029"]
    + [chr(n) for n in range(0x202A, 0x202F)]
    + [chr(n) for n in range(0x2066, 0x206A)]
    + ["\ud800", "\udfff"]
)
FORGED = "evil\x1b[31mRED\x1b[0m\nFAKE 2026 INFO line"
"""The issue's signal name: colours the terminal and forges a log line when printed raw."""

texts = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(UNSAFE_CHARACTERS),
        st.sampled_from(["\\", "x", "u", "[", "]", "/", ":", " ", "é", "漢"]),
    ),
    max_size=60,
)
"""Any text, rich in what a terminal must not see raw, backslashes and markup brackets."""


def unescape(text: str) -> str:
    """The inverse of `escaped`: what the reader of an escaped text can tell."""
    return re.sub(
        r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})",
        lambda found: "\\" if found.group(1) == "\\" else chr(int(found.group(1)[1:], 16)),
        text,
    )


def raw(text: str, *, newlines: bool = True) -> list[str]:
    """The unsafe characters `text` holds as they are (line feeds aside, with `newlines`)."""
    return [c for c in UNSAFE.findall(text) if not (newlines and c == "\n")]


@settings(deadline=None)
@given(texts)
def test_escaped_text_holds_no_unsafe_character_and_tells_every_original_apart(
    text: str,
) -> None:
    shown = escaped(text)
    assert raw(shown, newlines=False) == []
    assert unescape(shown) == text
    lines = escaped(text, newlines=True)
    assert raw(lines) == [] and unescape(lines) == text
    assert raw(neutralized(text), newlines=False) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None)
@given(json_values)
def test_json_output_is_the_same_value_with_no_unsafe_character(value: Any) -> None:
    text = json_text(value)
    assert raw(text) == []  # line feeds only between its lines (the indentation)
    assert json.loads(text) == value
    compact = json_text(value, indent=None)
    assert raw(compact, newlines=False) == [] and json.loads(compact) == value


@contextlib.contextmanager
def captured(console: Console) -> Iterator[io.StringIO]:
    """What `console` prints meanwhile (as to a pipe: no colours)."""
    out = io.StringIO()
    before = console.file
    console.file = out
    try:
        yield out
    finally:
        console.file = before


@settings(deadline=None)
@given(texts)
def test_a_printed_string_is_shown_escaped_and_never_as_markup(text: str) -> None:
    console = SafeConsole(file=io.StringIO(), width=200)
    with captured(console) as out:
        console.print(text, soft_wrap=True)
    assert out.getvalue() == escaped(text) + "\n"
    with captured(console) as out:
        console.print(f"[red]{text}[/red] :smile:", soft_wrap=True)
    assert out.getvalue() == f"[red]{escaped(text)}[/red] :smile:\n"


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50, deadline=None
)
@given(texts, texts)
def test_tables_fields_and_errors_show_data_escaped(
    monkeypatch: pytest.MonkeyPatch, name: str, reason: str
) -> None:
    console = SafeConsole(file=io.StringIO(), width=80)
    errors = SafeConsole(file=io.StringIO(), width=80, stderr=True, soft_wrap=True)
    monkeypatch.setattr(cli_common, "console", console)
    monkeypatch.setattr(cli, "errors", errors)
    with captured(console) as out:
        table = new_table("opportunity", "name", title=name)
        table.add_row(name, reason)
        print_fitted(table)
        print_fields({"Name": name, "Reason": reason})
    assert raw(out.getvalue()) == []
    with captured(errors) as err:
        cli.failed(f"unknown stage {name!r}: {reason}")
    assert err.getvalue().count("\n") == 1 and err.getvalue().startswith("error: ")
    assert raw(err.getvalue()) == []


def test_markup_in_data_is_printed_as_it_is() -> None:
    console = SafeConsole(file=io.StringIO(), width=80)
    with captured(console) as out:
        table = new_table("name")
        table.add_row("[red]x[/red]")
        console.print(table)
        console.print("error: [bold]oops[/bold]")
    assert "[red]x[/red]" in out.getvalue() and "[bold]oops[/bold]" in out.getvalue()


@settings(max_examples=50, deadline=None)
@given(texts)
def test_a_usage_error_quoting_what_was_typed_shows_it_escaped(text: str) -> None:
    before = sys.argv
    for argv in (["nosuch" + text], ["search", "--x" + text], ["search", "--limit", "x" + text]):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                sys.argv = ["opportunities", *argv]
                code = cli._run_app()
        finally:
            sys.argv = before
        assert code == 2, err.getvalue()
        assert raw(err.getvalue()) == [], argv


def record(message: str, *args: Any, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    return logging.LogRecord("opportunities.test", logging.INFO, __file__, 1, message, args,
                             exc_info)  # fmt: skip


@settings(deadline=None)
@given(texts)
def test_a_log_line_is_one_line_whatever_it_quotes(text: str) -> None:
    entry = record("%s rejected: %s", text, "unknown_command")
    line = TextFormatter().format(entry)
    assert "\n" not in line and raw(line) == []
    assert unescape(line).endswith(f"{text} rejected: unknown_command")
    document = JsonFormatter().format(entry)
    assert "\n" not in document and raw(document) == []
    assert json.loads(document)["message"] == f"{text} rejected: unknown_command"


def test_a_forged_signal_name_neither_colours_nor_breaks_a_log_line() -> None:
    try:
        raise ValueError(FORGED)
    except ValueError as error:
        entry = record("%s rejected: %s", FORGED, "unknown_command", error=error)
    line = TextFormatter().format(entry)
    assert "\n" not in line and "\x1b" not in line
    assert "evil\\x1b[31mRED\\x1b[0m\\x0aFAKE 2026 INFO line rejected: unknown_command" in line
    document = json.loads(JsonFormatter().format(entry))
    assert document["message"].startswith(FORGED) and FORGED in document["error"]
    assert "\n" not in JsonFormatter().format(entry)


@settings(deadline=None)
@given(st.integers(1, 2000), texts.filter(lambda t: not re.search("[\ud800-\udfff]", t)))
def test_a_validation_error_message_is_short_however_much_is_wrong(count: int, text: str) -> None:
    """(Lone surrogates aside: pydantic refuses such a key with another message.)"""
    adapter = TypeAdapter(dict[str, Literal["a"]])
    with pytest.raises(ValidationError) as raised:
        adapter.validate_python({f"{text * 50}{n}": text * 100 for n in range(count)})
    message = describe_validation_error(raised.value, "process")
    per_problem = MAX_PLACE_CHARS + MAX_REASON_CHARS + 4
    assert len(message) <= len("invalid process: ") + MAX_PROBLEMS * per_problem + 20
    listed = min(count, MAX_PROBLEMS)
    assert message.count("Input should be 'a'") == listed
    assert (f"and {count - MAX_PROBLEMS} more" in message) == (count > MAX_PROBLEMS)


def test_a_large_invalid_process_is_refused_for_its_size_before_it_is_validated(
    tmp_path: Path,
) -> None:
    document = example_definition("big")
    action = {"type": "fax", "action_id": "x" * 150, "title": "漢" * 400}
    path = tmp_path / "big.json"
    for stages, says in [
        (50, f"cannot read {path}: it is larger than {cli_common.MAX_FILE_BYTES:,} bytes"),
        (5, f"process definition {path} is too large: at most {MAX_PROCESS_BYTES:,} bytes as JSON"),
    ]:
        document["stages"] = [{"name": f"s{n}", "actions": [action] * 50} for n in range(stages)]
        path.write_text(json.dumps(document))
        with pytest.raises(UserError) as refused:
            cli_setup.process_apply(path, allow_missing=False, as_json=False)
        assert str(refused.value) == says
    assert path.stat().st_size > MAX_PROCESS_BYTES
    with pytest.raises(ValidationError) as invalid:  # what it was refused for before
        ProcessDefinition.model_validate(document)
    assert invalid.value.error_count() == 5 * 50
    assert len(describe_validation_error(invalid.value)) < 2000


def write(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "document"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"n": 1' + "0" * 5000 + "}", "is not valid JSON: Exceeds the limit"),
        ("n: 1" + "0" * 5000, "is not valid YAML: Exceeds the limit"),
        ("[" * 100_000, "is not valid JSON"),
        ("- " * 5000 + "x", "is not valid YAML"),
        ("when: 2027-02-30", "is not valid YAML: day is out of range"),
        ('{"a": "\\ud800"}', None),
        ("a: &a [*a]", "cannot be a JSON document"),
        ("a: &a [x" + ", x" * 999 + "]\n"
         + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                   for p, c in zip("abcdefg", "bcdefgh", strict=True)),
         "is larger than"),
        ("x" * (cli_common.MAX_FILE_BYTES + 1), "it is larger than"),
        (b"\xff\xfe{}", "not UTF-8 text"),
        ("7", "holds no JSON or YAML document"),
    ],
)  # fmt: skip
def test_a_document_that_cannot_be_read_is_one_line_error(
    tmp_path: Path, content: str | bytes, says: str | None
) -> None:
    path = write(tmp_path, content)
    if says is None:
        assert load_document(path) == {"a": "\ud800"}  # a value: the command's checks judge it
        return
    with pytest.raises(UserError) as refused:
        load_document(path)
    message = str(refused.value)
    assert says in message and "\n" not in message and len(message) < 400, message


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.binary(max_size=300) | texts.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_file_is_a_document_or_a_one_line_error(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, data)
    try:
        document = load_document(path)
    except UserError as refused:
        assert "\n" not in str(refused)
    else:
        assert isinstance(document, dict | list)
