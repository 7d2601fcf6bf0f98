"""Authorization in the workflow: the signed actor of each command, verified as it arrives
(an update in its validator and again in its handler, which replay runs; a signal before it
is queued, a refusal queued as a rejection with its code), and the actor's roles checked as
the command is applied.

What a decision depends on (keys, revocations, roles, permissions, the mode) comes from the
worker's `Directory`, judged at `workflow.now()`: every record takes effect only once every
worker has loaded it, so a decision is the same live and on replay. The worker registers the
directory it keeps loading for its task queue (`DIRECTORIES`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    SignalExternalWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

with workflow.unsafe.imports_passed_through():
    from sales.authorization import Actor, Clearance, Directory, authorize_open
    from sales.errors import CommandRejected
    from sales.tokens import HEADER, START, audience, header_data, token_of, verify
    from workflows import payloads, telemetry

SIGNAL_GRACE = timedelta(hours=24)
"""How long after its `exp` a signal's token still counts: signals wait in Temporal while no
worker runs, and must not be lost as expired."""


class DirectoryHolder:
    """The directory a worker keeps loading (replaced whole on each load)."""

    def __init__(self, directory: Directory | None = None) -> None:
        self.current = directory or Directory()


DIRECTORIES: dict[str, DirectoryHolder] = {}
"""The directory of each task queue's worker in this process."""

_NONE = Directory()


def directory() -> Directory:
    holder = DIRECTORIES.get(workflow.info().task_queue)
    return holder.current if holder is not None else _NONE


@dataclass(frozen=True)
class Credentials:
    """What a command's `sales-authz` header held (None: no header)."""

    header: bytes | None = None


NO_CREDENTIALS = Credentials()


@dataclass(frozen=True)
class SignedValue(RawValue):
    """A command's raw payload with the credentials its headers carried, as the worker's
    interceptor hands it to the handler (a handler takes exactly the caller's arguments)."""

    credentials: Credentials = NO_CREDENTIALS


def credentials_of(raw: RawValue) -> Credentials:
    return raw.credentials if isinstance(raw, SignedValue) else NO_CREDENTIALS


def _with_credentials(args: Sequence[Any], headers: Any) -> list[Any]:
    """The arguments, the raw payload carrying the credentials of `headers`."""
    given = credentials(headers)
    return [SignedValue(arg.payload, given) if isinstance(arg, RawValue) else arg for arg in args]


def credentials(headers: dict[str, Payload] | Any) -> Credentials:
    found = headers.get(HEADER) if headers else None
    return Credentials(found.data if found is not None else None)


def _verified(
    what: str, cmd: str, given: Credentials, payload: Any, *, jti: str | None, grace: timedelta
) -> Actor | None:
    """The actor `given` proves for `what` (None: authorization off, or unsigned under
    `record`); `CommandRejected` when its token is refused, or it is unsigned under
    `enforce`. Judged at `workflow.now()` by the worker's directory."""
    now = workflow.now()
    found = directory()
    mode = found.mode_at(now)
    if mode == "off":
        return None
    if given.header is None:
        if mode == "enforce":
            raise CommandRejected(
                f"{what} is not signed: authorization is enforced (header {HEADER})",
                code="unauthenticated",
            )
        return None
    info = workflow.info()
    return verify(token_of(given.header), found, at=now, aud=audience(info.namespace),
                  wid=info.workflow_id, cmd=cmd, payload=payload, jti=jti,
                  grace=grace)  # fmt: skip


def authenticate(name: str, raw: RawValue, given: Credentials, *, signal: bool) -> Actor | None:
    """The verified actor of a command (None: unsigned, or authorization is off);
    `CommandRejected` when its token is refused, or it is unsigned under `enforce`."""
    mode = directory().mode_at(workflow.now())
    if mode == "off" or (given.header is None and mode != "enforce"):
        return None  # nothing to verify: the payload need not be decoded here
    payload = payloads.decode(raw, f"{name} payload")
    jti = payload.get("request_id") if isinstance(payload, dict) else None
    grace = SIGNAL_GRACE if signal else timedelta(0)
    return _verified(name, name, given, payload, jti=jti, grace=grace)


def clearance(name: str, actor: Actor | None) -> Clearance:
    """What a command is judged by as it is applied, from the directory at `workflow.now()`
    (the core decides: `sales.authorization.cleared`). An unsigned command applied under
    `record` is counted."""
    now = workflow.now()
    found = directory()
    mode = found.mode_at(now)
    if mode == "record" and actor is None:
        telemetry.count_unverified(name)
    if mode != "enforce" or actor is None:
        return Clearance(mode=mode, actor=actor)
    return Clearance(mode=mode, actor=actor, roles=found.roles_at(actor.sub, now),
                     permissions=found.permissions_at(now))  # fmt: skip


def check_start(headers: dict[str, Payload] | Any, raw: RawValue) -> Actor | None:
    """The verified actor of a workflow's first run (a continued run has no headers and is not
    checked); a non-retryable `ApplicationError` with the code if the start is refused. Under
    `enforce`, the start's `by` must name its signer."""
    if workflow.info().continued_run_id is not None:
        return None
    if directory().mode_at(workflow.now()) == "off":
        return None
    try:
        payload = payloads.decode(raw, "start input", payloads.MAX_START_BYTES)
        actor = _verified("the start", START, credentials(headers), payload, jti=None,
                          grace=timedelta(0))  # fmt: skip
        by = payload.get("by") if isinstance(payload, dict) else None
        now = workflow.now()
        found = directory()
        if actor is not None and found.mode_at(now) == "enforce":
            if by not in (None, actor.sub):
                raise CommandRejected(
                    f"by names {str(by)[:60]}, but the start is signed for {actor.sub}",
                    code="token_mismatch",
                )
            if workflow.info().workflow_type == "Opportunity" and isinstance(payload, dict):
                if payload.get("carried") is None and payload.get("reopen") is None:
                    owner = payload.get("owner")
                    authorize_open(actor, found.roles_at(actor.sub, now),
                                   owner if isinstance(owner, str) else None,
                                   found.permissions_at(now))  # fmt: skip
        return actor
    except CommandRejected as refused:
        raise payloads.refusal(refused, "Unauthorized") from None


_STARTED_BY: ContextVar[Actor | None] = ContextVar("sales_authz_started_by", default=None)


def started_by() -> Actor | None:
    """Who started this run, as its start's token proves (None: not verified): set by the
    interceptor before the run begins, in the run's own context."""
    return _STARTED_BY.get()


_SIGNAL_HEADERS: ContextVar[dict[str, Payload] | None] = ContextVar(
    "sales_authz_signal_headers", default=None
)


@contextmanager
def signed_with(token: str | None) -> Iterator[None]:
    """Within: signals this workflow sends carry `token` in the header `sales-authz`."""
    headers = None
    if token is not None:
        headers = {HEADER: Payload(metadata={"encoding": b"json/plain"}, data=header_data(token))}
    reset = _SIGNAL_HEADERS.set(headers)
    try:
        yield
    finally:
        _SIGNAL_HEADERS.reset(reset)


class _Outbound(WorkflowOutboundInterceptor):
    async def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> None:
        headers = _SIGNAL_HEADERS.get()
        if headers:
            input.headers = {**input.headers, **headers}
        await super().signal_external_workflow(input)


class Authorization(Interceptor):
    """Hands each command's handler the credentials its headers carry (after the payload), and
    checks the start of a first run of the `started` workflow types."""

    def __init__(self, names: Collection[str], started: Collection[str]) -> None:
        self.names = frozenset(names)
        self.started = frozenset(started)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        names, started = self.names, self.started

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound))

            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                if workflow.info().workflow_type in started and input.args:
                    _STARTED_BY.set(check_start(input.headers, input.args[0]))
                return await super().execute_workflow(input)

            async def handle_signal(self, input: HandleSignalInput) -> None:
                if input.signal in names:
                    input.args = _with_credentials(input.args, input.headers)
                await super().handle_signal(input)

            def handle_update_validator(self, input: HandleUpdateInput) -> None:
                if input.update in names:
                    input.args = _with_credentials(input.args, input.headers)
                super().handle_update_validator(input)

            async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
                if input.update in names:
                    input.args = _with_credentials(input.args, input.headers)
                return await super().handle_update_handler(input)

        return Inbound
