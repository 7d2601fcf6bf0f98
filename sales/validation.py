"""Input validated at the edge: what every command, start input, contact, process, event and
template name must be before anything acts on it.

One module for every entry point (the workflow's raw payloads, the client, the CLI, the
store), so that a value the database, a mail header or Temporal's payload limits would
refuse never gets in:

- strings hold no NUL, no other control character and no lone surrogate; free text
  (notes, reasons) may hold newlines and tabs, one-line text (names, subjects, owners, ids)
  may not, so nothing reaches a mail header with a CR or LF;
- raw JSON is at most `MAX_COMMAND_BYTES`, nested at most `MAX_DEPTH` deep, with finite
  numbers only and integers within `MAX_INTEGER` (I-JSON's exact range); any error while
  decoding or converting a payload is a rejection (`invalid_payload`), never an exception;
- every date and time lies in the business range `EARLIEST` to `LATEST` (UTC);
- a process definition is at most `MAX_PROCESS_BYTES` with bounded stages and actions.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, overload

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError

from sales.errors import CommandRejected, describe_validation_error

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

MAX_COMMAND_BYTES = 64 * 1024
"""A command (or start input) payload, as JSON."""
MAX_PROCESS_BYTES = 256 * 1024
"""A process definition, as JSON."""
MAX_DEPTH = 32
"""Nesting of raw JSON: the deepest legitimate payload (a process definition) needs 6."""
MAX_STAGES = 50
MAX_ACTIONS_PER_STAGE = 50
MAX_ACTIONS = 200
"""Actions of a process, and of an opportunity in all its stages together."""
MAX_ACTION_BYTES = 4 * 1024
"""One action definition, as JSON."""
MAX_OUTCOME_STAGES = 200
MAX_INTEGER = 2**53 - 1
"""The largest integer (either sign) a payload may hold: what every JSON reader represents
exactly (RFC 7493). Longer digit strings are refused before they are converted."""
_MAX_INTEGER_DIGITS = len(str(MAX_INTEGER)) + 1

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
"""The business range: every date and time a command carries or the rules compute (a due
date plus its duration, a stage timer) lies between `EARLIEST` and `LATEST`, UTC."""

_LINE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _describe(char: str) -> str:
    if "\ud800" <= char <= "\udfff":
        return f"a lone surrogate (U+{ord(char):04X})"
    if char in "\r\n":
        return "a line break"
    return f"a control character (U+{ord(char):04X})"


def one_line(value: str) -> str:
    """No control character at all (no CR, LF or tab), no lone surrogate."""
    bad = _LINE_FORBIDDEN.search(value)
    if bad is not None:
        raise ValueError(f"must be one line of text; it contains {_describe(bad.group())}")
    return value


def free_text(value: str) -> str:
    """Newlines and tabs allowed; no other control character, no lone surrogate."""
    bad = _TEXT_FORBIDDEN.search(value)
    if bad is not None:
        raise ValueError(f"contains {_describe(bad.group())}; only newlines and tabs are allowed")
    return value


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"),
]
"""Ids travel in workflow ids, URLs and CLI arguments: no spaces, no slashes (display ids of
calendar activities and letters join ids with `/`, so they cannot collide)."""

_LINE_SCHEMA = {"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"}
_TEXT_SCHEMA = {"pattern": "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"}

Line = Annotated[
    str,
    Field(min_length=1, max_length=500, json_schema_extra=_LINE_SCHEMA),
    AfterValidator(one_line),
]
"""One line of text: a title, a stage, an owner, an outcome."""
ShortLine = Annotated[
    str,
    Field(min_length=1, max_length=200, json_schema_extra=_LINE_SCHEMA),
    AfterValidator(one_line),
]
"""One short line: a name, who issued a command, a request id."""
Notes = Annotated[
    str, Field(max_length=4000, json_schema_extra=_TEXT_SCHEMA), AfterValidator(free_text)
]
"""Free text: notes, reasons."""


def out_of_range(value: datetime) -> str | None:
    """Why `value` lies outside the business range (None when it lies inside). Never raises,
    even for a time whose offset takes it past the calendar's ends."""
    try:
        inside = EARLIEST <= value.astimezone(UTC) <= LATEST
    except (OverflowError, ValueError):
        inside = False
    if inside:
        return None
    return (
        f"{value.isoformat()} is outside the business range "
        f"{EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} UTC"
    )


def in_business_range(value: datetime) -> datetime:
    """`value` in UTC, if it lies in the business range."""
    problem = out_of_range(value)
    if problem is not None:
        raise ValueError(problem)
    return value.astimezone(UTC)


When = Annotated[
    AwareDatetime,
    AfterValidator(in_business_range),
    Field(json_schema_extra={"formatMinimum": "1900-01-01T00:00:00Z",
                             "formatMaximum": "2199-12-31T23:59:59Z"}),
]  # fmt: skip
"""A date and time with its time zone, within the business range; kept in UTC."""


MAX_ID = 200
MAX_LINE = 500
MAX_NOTES = 4000
MAX_DISPLAY_ID = 2 * MAX_ID + 22
"""`opportunity/action/generation`."""
MAX_CODE = 100
MAX_MESSAGE = 2000
"""What the service says back: a result's message, an error's reason (cut to fit)."""

IdText = Annotated[str, Field(max_length=MAX_ID)]
LineText = Annotated[str, Field(max_length=MAX_LINE)]
NotesText = Annotated[str, Field(max_length=MAX_NOTES + 200)]
"""Free text with a short prefix the rules add ("deleted: ...")."""
DisplayId = Annotated[str, Field(max_length=MAX_DISPLAY_ID)]
CodeText = Annotated[str, Field(max_length=MAX_CODE)]
MessageText = Annotated[str, Field(max_length=MAX_MESSAGE)]
"""Bounds of text the service builds itself from validated input (state, results, effects):
declared, so that a carried state validates, and kept by construction (`cut`)."""


def cut(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_json(value: Any, subject: str = "payload") -> None:
    """Raise `CommandRejected` (`invalid_payload`) unless `value` is plain JSON within the
    limits: bounded depth, finite numbers, strings without NUL, other control characters
    (newline and tab aside) or lone surrogates. The message names the place."""
    problem = _json_problem(value, "")
    if problem is not None:
        raise CommandRejected(f"invalid {subject}: {problem}", code="invalid_payload")


def _json_problem(value: Any, place: str, depth: int = 0) -> str | None:
    here = f"{place}: " if place else ""
    if depth > MAX_DEPTH:
        return f"{here}nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        problem = _string_problem(value)
        return None if problem is None else here + problem
    if isinstance(value, float) and not math.isfinite(value):
        return f"{here}the number {value} is not finite"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        return f"{here}{_too_large(str(value))}"
    if isinstance(value, dict):
        for key, item in value.items():
            key_problem = _string_problem(key)
            if key_problem is not None:
                return f"{here}a field name {key_problem}"
            inner = f"{place}.{key}" if place else key
            problem = _json_problem(item, inner[:100], depth + 1)
            if problem is not None:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{place}[{index}]", depth + 1)
            if problem is not None:
                return problem
    return None


def _string_problem(value: str) -> str | None:
    bad = _TEXT_FORBIDDEN.search(value)
    return None if bad is None else f"contains {_describe(bad.group())}"


class _IntegerTooLarge(ValueError):
    pass


def _too_large(digits: str) -> str:
    shown = digits if len(digits) <= 24 else f"{digits[:12]}…({len(digits):,} digits)"
    return f"the integer {shown} is too large; integers lie within ±{MAX_INTEGER:,}"


def _bounded_int(digits: str) -> int:
    """An integer of a JSON text, refused before conversion when it has too many digits (a
    string of thousands of digits is refused by Python's own conversion limit, or converts
    slowly)."""
    if len(digits) > _MAX_INTEGER_DIGITS:
        raise _IntegerTooLarge(_too_large(digits))
    return int(digits)


def decode_json(data: bytes, subject: str = "payload", limit: int = MAX_COMMAND_BYTES) -> Any:
    """JSON bytes as a value, checked by `check_json`; `CommandRejected` (`invalid_payload`)
    naming the problem when it is too large, not UTF-8, not JSON, or cannot be converted for
    any other reason: no error escapes as anything else."""
    if len(data) > limit:
        raise CommandRejected(
            f"invalid {subject}: {len(data):,} bytes; at most {limit:,}", code="invalid_payload"
        )
    try:
        value = json.loads(data.decode("utf-8"), parse_int=_bounded_int)
    except UnicodeDecodeError as error:
        why = f"not UTF-8 (byte {error.start})"
    except json.JSONDecodeError as error:
        why = f"not JSON ({error.msg} at character {error.pos})"
    except RecursionError:
        why = f"nested deeper than {MAX_DEPTH} levels"
    except _IntegerTooLarge as error:
        why = str(error)
    except Exception as error:  # any other conversion error: a rejection, never a crash
        why = f"cannot be read ({type(error).__name__}: {cut(str(error), 200)})"
    else:
        check_json(value, subject)
        return value
    raise CommandRejected(f"invalid {subject}: {why}", code="invalid_payload")


@overload
def validate(model: type[M], value: Any, subject: str) -> M: ...
@overload
def validate(model: TypeAdapter[T], value: Any, subject: str) -> T: ...
def validate(model: type[M] | TypeAdapter[T], value: Any, subject: str) -> M | T:
    """`value` (decoded JSON) as a `model` (or a type adapter's type); `CommandRejected`
    (`invalid_payload`) naming the problem for any error, pydantic's or a conversion's: the
    one way a payload from outside becomes a model."""
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(value)
        return model.model_validate(value)
    except ValidationError as error:
        why = describe_validation_error(error, subject)
    except Exception as error:  # a conversion pydantic does not wrap (overflow, recursion)
        why = f"invalid {subject}: cannot be read ({type(error).__name__}: {cut(str(error), 200)})"
    raise CommandRejected(why, code="invalid_payload")


def json_size(value: Any) -> int:
    """The size of `value` as compact JSON, in bytes."""
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def is_short_line(value: str) -> bool:
    """Whether `value` is a valid `ShortLine` (for fields read from a rejected payload)."""
    return 0 < len(value) <= 200 and _LINE_FORBIDDEN.search(value) is None


def safe_excerpt(data: bytes, limit: int = 1024) -> str:
    """Undecodable bytes as text fit to keep and show: invalid UTF-8 and control characters
    replaced by U+FFFD, cut to `limit` characters."""
    text = _TEXT_FORBIDDEN.sub("\ufffd", data[: limit * 4].decode("utf-8", "replace"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def excerpt(value: Any, limit: int = 1024) -> str:
    """`value` as compact JSON, cut to at most `limit` characters (for keeping a rejected
    payload without keeping all of it)."""
    text = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    text = _TEXT_FORBIDDEN.sub("\ufffd", text[: limit * 2])  # lone surrogates, if any
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Bounded:
    """Marks a value of any JSON shape (`Annotated[Any, Bounded(n)]`) as bounded by its size:
    at most `max_bytes` as JSON, checked where it enters (`decode_json`)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
