"""Input validated at the edge: what every command, start input, contact, process, event and
template name must be before anything acts on it.

One module for every entry point (the workflow's raw payloads, the client, the CLI, the
store), so that a value the database, a mail header or Temporal's payload limits would
refuse never gets in:

- strings hold no NUL, no other control character and no lone surrogate; free text
  (notes, reasons) may hold newlines and tabs, one-line text (names, subjects, owners, ids)
  may not, so nothing reaches a mail header with a CR or LF;
- raw JSON is at most `MAX_COMMAND_BYTES`, nested at most `MAX_DEPTH` deep, with finite
  numbers only;
- a process definition is at most `MAX_PROCESS_BYTES` with bounded stages and actions.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from sales.errors import CommandRejected

MAX_COMMAND_BYTES = 64 * 1024
"""A command (or start input) payload, as JSON."""
MAX_PROCESS_BYTES = 256 * 1024
"""A process definition, as JSON."""
MAX_DEPTH = 32
"""Nesting of raw JSON: the deepest legitimate payload (a process definition) needs 6."""
MAX_STAGES = 50
MAX_ACTIONS_PER_STAGE = 50
MAX_OUTCOME_STAGES = 200

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


def decode_json(data: bytes, subject: str = "payload", limit: int = MAX_COMMAND_BYTES) -> Any:
    """JSON bytes as a value, checked by `check_json`; `CommandRejected` (`invalid_payload`)
    naming the problem when it is too large, not UTF-8 or not JSON."""
    if len(data) > limit:
        raise CommandRejected(
            f"invalid {subject}: {len(data):,} bytes; at most {limit:,}", code="invalid_payload"
        )
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CommandRejected(
            f"invalid {subject}: not UTF-8 (byte {error.start})", code="invalid_payload"
        ) from None
    except json.JSONDecodeError as error:
        raise CommandRejected(
            f"invalid {subject}: not JSON ({error.msg} at character {error.pos})",
            code="invalid_payload",
        ) from None
    except RecursionError:
        raise CommandRejected(
            f"invalid {subject}: nested deeper than {MAX_DEPTH} levels", code="invalid_payload"
        ) from None
    check_json(value, subject)
    return value


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
