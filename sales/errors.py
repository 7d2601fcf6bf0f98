"""Readable errors: every rejection says what is wrong, where, and what would be valid."""

from __future__ import annotations

from pydantic import ValidationError


class CommandRejected(Exception):
    """A command that cannot be applied to the opportunity as it is; nothing was changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_validation_error(error: ValidationError, subject: str = "input") -> str:
    """One line per problem, each prefixed with the path of the offending field.

    Pydantic's own text repeats the model name and links to its docs; operators reading a CLI
    error or a rejected signal want the place and the reason, nothing else.
    """
    lines = []
    for problem in error.errors(include_url=False):
        place = _place(problem["loc"])
        message = problem["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        lines.append(f"{place}: {message}" if place else message)
    return f"invalid {subject}: " + "; ".join(lines)


def _place(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"calendar", "letter", "event"} and text.endswith("]"):
            # The discriminated union adds the tag to the path; the index already names the item.
            continue
        else:
            text += f".{part}" if text else str(part)
    return text
