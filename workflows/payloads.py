"""Raw payloads into JSON values, inside the workflow: commands and start inputs arrive
undecoded (`RawValue`), so a payload the data converter could not read is rejected with a
reason (`invalid_payload`) instead of being dropped by the SDK or failing a workflow task.

A payload is accepted as JSON (`json/plain`, or `binary/null` for null). Anything else is
refused: another encoding, or a marker the codec put in place of a payload it refused or
could not open (a plaintext payload while encryption is on, an unknown key), whose
metadata `reason` says why.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from sales.errors import CommandRejected, with_code
from sales.validation import MAX_COMMAND_BYTES, decode_json, validate

M = TypeVar("M", bound=BaseModel)

MAX_START_BYTES = 4 * 1024 * 1024
"""A workflow's start input, a continued run's carried state included."""

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


def loosely(data: bytes) -> Any:
    """What can still be read of a payload that was refused: its JSON value if it parses at
    all (None otherwise), for fields such as `reply_to` that are checked on their own."""
    if len(data) > MAX_COMMAND_BYTES:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None


def decode_one(args: Sequence[RawValue], subject: str, limit: int = MAX_COMMAND_BYTES) -> Any:
    """The JSON value of the one argument a command or start carries."""
    if len(args) != 1:
        raise CommandRejected(
            f"invalid {subject}: expected one argument (a JSON object), got {len(args)}",
            code="invalid_payload",
        )
    return decode(args[0], subject, limit)


ARITY = b"binary/wrong-arity"
"""Marks an argument list of the wrong length, put in place of the arguments."""


def one_argument(args: Sequence[Any]) -> list[Any]:
    """The arguments of a start or a command as exactly one raw value: unchanged when they
    are one, else a marker saying how many there were (rejected by `decode`)."""
    if len(args) == 1 and isinstance(args[0], RawValue):
        return list(args)
    reason = f"expected one argument (a JSON object), got {len(args)}"
    return [RawValue(Payload(metadata={"encoding": ARITY, REASON: reason.encode()}))]


class OneArgument(Interceptor):
    """Hands every workflow start and every command of `names` exactly one raw argument,
    whatever the caller sent: a start or a signal with no argument or several is rejected
    like any other invalid payload, instead of the SDK failing the workflow task when it calls
    a handler with the wrong number of arguments. (The worker's payload converter gives
    undecodable arguments as raw values too: `runtime.codec.TolerantPayloadConverter`.)"""

    def __init__(self, names: Collection[str]) -> None:
        self.names = frozenset(names)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        names = self.names

        class Inbound(WorkflowInboundInterceptor):
            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                input.args = one_argument(input.args)
                return await super().execute_workflow(input)

            async def handle_signal(self, input: HandleSignalInput) -> None:
                if input.signal in names:
                    input.args = one_argument(input.args)
                await super().handle_signal(input)

            def handle_update_validator(self, input: HandleUpdateInput) -> None:
                if input.update in names:
                    input.args = one_argument(input.args)
                super().handle_update_validator(input)

            async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
                if input.update in names:
                    input.args = one_argument(input.args)
                return await super().handle_update_handler(input)

        return Inbound


def parse_start(
    raw: RawValue, model: type[M], subject: str, *, not_an_object: str | None = None
) -> M:
    """A workflow's start input, decoded and validated, or a non-retryable `InvalidInput`
    failure naming what is wrong with it (the workflow fails at once). `not_an_object`: the
    message for a value that is not a JSON object, if it needs a better one than the
    model's."""
    try:
        value = decode(raw, subject, MAX_START_BYTES)
        if not_an_object is not None and not isinstance(value, dict):
            raise CommandRejected(not_an_object, code="invalid_payload")
        return validate(model, value, subject)
    except CommandRejected as rejected:
        raise invalid_input(rejected.reason) from None


def invalid_input(message: str) -> ApplicationError:
    """The failure of a start whose input is invalid: non-retryable, with its code."""
    return refusal(CommandRejected(message, code="invalid_payload"), "InvalidInput")


def refusal(rejected: CommandRejected, kind: str) -> ApplicationError:
    """A rejection as the non-retryable error of type `kind` a caller is told: the reason,
    and the code in its details (with `resend: true` when the same command sent again
    shortly may be applied)."""
    details: dict[str, Any] = {"code": rejected.code}
    if rejected.resend:
        details["resend"] = True
    return ApplicationError(
        with_code(rejected.code, rejected.reason), details, type=kind, non_retryable=True
    )
