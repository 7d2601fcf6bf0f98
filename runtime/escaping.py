"""Text fit for a terminal or a log: what the CLI prints and the logs write of stored data,
commands and errors can neither drive the terminal nor forge a line.

Every character that moves the cursor, colours the terminal, breaks a line or reorders what
is shown is written as an escape instead: the C0 controls (ESC, CR, LF, ...), DEL, the C1
controls, the bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), the line
and paragraph separators (U+2028, U+2029) and lone surrogates. `escaped` writes them as Python
does (`\\x1b`, `\\u202e`) and doubles a backslash, so that the escaped form tells every
original apart; `json_text` writes them as JSON's `\\uXXXX`, so the value read back is the
same.
"""

from __future__ import annotations

import json
import re
from typing import Any

_NOT_C0 = "\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069\ud800-\udfff"
"""DEL, the C1 controls, the bidi controls, the line and paragraph separators, surrogates."""
UNSAFE = re.compile(f"[\x00-\x1f{_NOT_C0}]")
"""A character that must never reach a terminal or a log line as it is."""
_ESCAPED = re.compile(f"[\x00-\x1f{_NOT_C0}\\\\]")
_ESCAPED_BUT_NEWLINES = re.compile(f"[\x00-\x09\x0b-\x1f{_NOT_C0}\\\\]")
_UNSAFE_BUT_NEWLINES = re.compile(f"[\x00-\x09\x0b-\x1f{_NOT_C0}]")
_IN_JSON = re.compile(f"[{_NOT_C0}]")
"""What `json.dumps` leaves as it is (it escapes the C0 controls itself)."""


def code(char: str) -> str:
    """One character's escape: `\\x1b`, `\\u202e`; a backslash doubled."""
    if char == "\\":
        return "\\\\"
    number = ord(char)
    return f"\\x{number:02x}" if number < 0x100 else f"\\u{number:04x}"


def escaped(text: str, *, newlines: bool = False) -> str:
    """`text` with every unsafe character (see above) escaped and backslashes doubled; with
    `newlines`, a line feed is kept (a letter's body, shown as lines)."""
    pattern = _ESCAPED_BUT_NEWLINES if newlines else _ESCAPED
    return pattern.sub(lambda found: code(found.group()), text)


def neutralized(text: str, *, newlines: bool = False) -> str:
    """`text` with every unsafe character escaped but backslashes left as they are: for text
    that may hold escapes already (the program's own, or a usage error quoting what was typed
    with `repr`); with `newlines`, line feeds are kept (a last guard on rendered lines)."""
    pattern = _UNSAFE_BUT_NEWLINES if newlines else UNSAFE
    return pattern.sub(lambda found: code(found.group()), text)


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """`value` as JSON (other values as `str`), with the unsafe characters written as `\\uXXXX`
    escapes and other characters as they are: the same value for any JSON reader."""
    text = json.dumps(value, ensure_ascii=False, indent=indent, default=str)
    return _IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
