"""Raw payloads into JSON values, inside the workflow: commands and start inputs arrive
undecoded (`RawValue`), so a payload the data converter could not read is rejected with a
reason (`invalid_payload`) instead of being dropped by the SDK or failing a workflow task.

A payload is accepted as JSON (`json/plain`, or `binary/null` for null). Anything else is
refused: another encoding, or a marker the codec put in place of a payload it refused or
could not open (a plaintext payload while encryption is on, an unknown key), whose
metadata `reason` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.common import RawValue

from sales.errors import CommandRejected
from sales.validation import MAX_COMMAND_BYTES, decode_json

JSON = b"json/plain"
NULL = b"binary/null"
REASON = "reason"
"""Metadata key of the codec's explanation on a marker payload."""


def decode(raw: RawValue, subject: str, limit: int = MAX_COMMAND_BYTES) -> Any:
    """The JSON value of one raw payload; `CommandRejected` (`invalid_payload`) if there is
    none."""
    payload = raw.payload
    encoding = payload.metadata.get("encoding", b"")
    if encoding == JSON:
        return decode_json(payload.data, subject, limit)
    if encoding == NULL:
        return None
    reason = payload.metadata.get(REASON)
    if reason:
        why = reason.decode("utf-8", "replace")[:300]
    else:
        name = encoding.decode("ascii", "replace")[:60] or "none"
        why = f"payload encoding {name!r} is not JSON; send a JSON object (json/plain)"
    raise CommandRejected(f"invalid {subject}: {why}", code="invalid_payload")


def decode_one(args: Sequence[RawValue], subject: str, limit: int = MAX_COMMAND_BYTES) -> Any:
    """The JSON value of the one argument a command or start carries."""
    if len(args) != 1:
        raise CommandRejected(
            f"invalid {subject}: expected one argument (a JSON object), got {len(args)}",
            code="invalid_payload",
        )
    return decode(args[0], subject, limit)
