"""Commands in arrival order: every signal and update of a command goes into one queue, and
the run takes them one at a time, in batches that share one projection write
(`projection.MAX_BATCH`). Payloads are decoded as they arrive; one that cannot be decoded is
queued with its problem, so that it is rejected in its turn like any other. An update waits
for its result.

The queue holds at most `MAX_QUEUED` commands and `QUEUED_BUDGET` bytes of payloads, and
while the run is due to continue as new at most what the next run can carry: past that, a
signal is rejected (`limit_reached`, kept in `rejected`) and an update is refused by its
validator, so a storm can neither grow a run's memory without bound nor keep it from
continuing as new. While the run holds (its read model cannot be written), and while it
drains to continue as new, updates are refused as `unavailable` (the latter with `resend`:
the next run takes them)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from runtime.escaping import escaped
    from sales import core
    from sales.authorization import Actor
    from sales.commands import Envelope
    from sales.errors import CommandRejected
    from sales.opportunity import MAX_REASON, MAX_REJECTED
    from sales.registry import REGISTRY, parse_command
    from sales.results import CommandResult
    from sales.validation import cut, is_short_line, safe_excerpt
    from workflows import continue_as_new, payloads
    from workflows.authorization import authenticate, credentials_of
    from workflows.messages import NO_INPUT, QueuedCommand

MAX_QUEUED = 2000
QUEUED_BUDGET = 8 * 1024 * 1024


def command_handlers(name: str) -> tuple[Any, Any]:
    """The signal and the same-name update (with its validator) of one declared command, its
    summary as their description, for a workflow with a `queue`, a `state`, `settled()` and
    `require_accepting()`:
    both take the payload raw into the queue (`payloads.OneArgument` makes it exactly one
    argument). The validator judges an update by the state only when nothing is ahead of it
    (`settled()`); otherwise it is judged in its turn, after the commands that came first."""

    summary = REGISTRY[name].summary  # shown by the Temporal UI and `temporal workflow metadata`

    @workflow.signal(name=name, description=summary)
    def on_signal(self, payload: RawValue = NO_INPUT) -> None:
        try:
            actor = authenticate(name, payload, credentials_of(payload), signal=True)
        except CommandRejected as refused:
            self.queue.receive(name, [payload], refused=refused)
            return
        self.queue.receive(name, [payload], actor=actor)

    @workflow.update(name=name, description=summary)
    async def on_update(self, payload: RawValue = NO_INPUT) -> CommandResult:
        try:  # again: the validator does not run on replay
            actor = authenticate(name, payload, credentials_of(payload), signal=False)
        except CommandRejected as refused:
            raise rejection_error(refused) from None
        return await self.queue.submit(name, [payload], actor=actor)

    @on_update.validator
    def validate(self, payload: RawValue = NO_INPUT) -> None:
        """Reject before anything is written to history."""
        try:
            self.queue.require_room(payload)
            self.require_accepting()
            authenticate(name, payload, credentials_of(payload), signal=False)
            command = parse_command(name, payloads.decode(payload, f"{name} payload"))
            if self.state is not None and self.settled():
                core.check(self.state, command)
        except CommandRejected as rejected:
            raise rejection_error(rejected) from None

    return on_signal, on_update


class CommandQueue:
    def __init__(self, continuing: Callable[[], bool]) -> None:
        """`continuing`: whether the run is due to continue as new (then the queue takes only
        what the next run can carry, so that a storm cannot keep the run from continuing)."""
        self.items: list[QueuedCommand] = []
        self.refused = Refused()
        """Signals that found the queue full, until the run takes them (`take_refused`) in
        the same activation: a storm brings thousands in one, so each costs only a count
        here, and the run rejects them together."""
        self._continuing = continuing
        self._bytes = 0
        self.signals = 0
        """Signals received in this run."""
        self.idle_before_last = timedelta(0)
        """How long no command had arrived when the last one did (the run's start counts as
        an arrival, so a run continued under a storm is not idle)."""
        self._last_arrival = workflow.now()
        self._next_ticket = 0
        self._results: dict[int, CommandResult | CommandRejected] = {}

    def __bool__(self) -> bool:
        return bool(self.items)

    def receive(
        self,
        name: str,
        args: Sequence[RawValue],
        *,
        actor: Actor | None = None,
        refused: CommandRejected | None = None,
    ) -> None:
        """A signal: queued, nobody waits (refused when the queue is full); `refused`: queued
        to be rejected in its turn (its token was refused)."""
        self._arrived()
        self.signals += 1
        payload = args[0] if args else NO_INPUT
        try:
            self.require_room(payload)
        except CommandRejected as full:
            self.refused.add(name, payload, full)
            return
        self._add(received(name, args, refused, actor=actor))

    def take_refused(self) -> Refused:
        """The signals refused since the last call."""
        refused, self.refused = self.refused, Refused()
        return refused

    @property
    def payload_bytes(self) -> int:
        """The queued commands' payloads, as they arrived, in bytes."""
        return self._bytes

    def require_room(self, payload: RawValue) -> None:
        """`CommandRejected` (`limit_reached`) when a command of this payload would not fit:
        past `MAX_QUEUED` or `QUEUED_BUDGET`, or, while the run is due to continue as new,
        past what the next run can carry."""
        size = len(payload.payload.data)
        fits = len(self.items) < MAX_QUEUED and self._bytes + size <= QUEUED_BUDGET
        if fits and self._continuing():
            fits = continue_as_new.carries(len(self.items) + 1, self._bytes + size)
        if not fits:
            raise CommandRejected(
                f"{len(self.items)} commands ({self._bytes:,} bytes) wait to be applied; "
                "nothing was applied: send it again shortly",
                code="limit_reached",
                resend=True,
            )

    def _add(self, item: QueuedCommand) -> None:
        self._bytes += item.size
        self.items.append(item)

    async def submit(
        self, name: str, args: Sequence[RawValue], *, actor: Actor | None = None
    ) -> CommandResult:
        """An update: queued, and its result awaited (a rejection raised as the update's
        error)."""
        self._arrived()
        ticket = self._next_ticket
        self._next_ticket += 1
        self._add(received(name, args, actor=actor).model_copy(update={"ticket": ticket}))
        await workflow.wait_condition(lambda: ticket in self._results)
        outcome = self._results.pop(ticket)
        if isinstance(outcome, CommandRejected):
            raise rejection_error(outcome)
        return outcome

    def _arrived(self) -> None:
        now = workflow.now()
        self.idle_before_last = now - self._last_arrival
        self._last_arrival = now

    def resolve(self, item: QueuedCommand, outcome: CommandResult | CommandRejected) -> None:
        """Hand an update its result."""
        if item.ticket is not None:
            self._results[item.ticket] = outcome

    def take(self) -> QueuedCommand:
        item = self.items.pop(0)
        self._bytes -= item.size
        return item

    def updates(self) -> list[QueuedCommand]:
        """The queued updates, taken out of the queue (the signals stay, in order)."""
        taken = [item for item in self.items if item.ticket is not None]
        self.items = [item for item in self.items if item.ticket is None]
        self._bytes -= sum(item.size for item in taken)
        return taken

    def carry(self, items: list[QueuedCommand]) -> None:
        """Commands a continued run carried, before what arrived since."""
        self.items[:0] = items
        self._bytes += sum(item.size for item in items)

    def through_last_update(self) -> int:
        """How many of the queued commands go up to the last update (0: none is an update)."""
        tickets = [n for n, item in enumerate(self.items) if item.ticket is not None]
        return tickets[-1] + 1 if tickets else 0


class Refused:
    """Signals refused on arrival, as cheaply as a storm needs: a count by command, and
    only the newest `MAX_REJECTED` (kept in the state's `rejected`) and those that name a
    `reply_to` (answered there) as commands with their problem."""

    def __init__(self) -> None:
        self.count = 0
        self.by_command: dict[str, int] = {}
        self._newest: deque[tuple[str, RawValue, CommandRejected]] = deque(maxlen=MAX_REJECTED)
        self._replying: list[tuple[str, RawValue, CommandRejected]] = []

    def __bool__(self) -> bool:
        return self.count > 0

    def add(self, name: str, payload: RawValue, rejected: CommandRejected) -> None:
        self.count += 1
        key = name if name in REGISTRY else "unknown"
        self.by_command[key] = self.by_command.get(key, 0) + 1
        self._newest.append((name, payload, rejected))
        if b"reply_to" in payload.payload.data:  # decoded only if it may name one
            self._replying.append((name, payload, rejected))

    def newest(self) -> list[QueuedCommand]:
        return [received(name, [raw], refused=why) for name, raw, why in self._newest]

    def replying(self) -> list[QueuedCommand]:
        """Those with a `reply_to` to answer."""
        items = [received(name, [raw], refused=why) for name, raw, why in self._replying]
        return [item for item in items if item.envelope.reply_to is not None]


def received(
    name: str,
    args: Sequence[RawValue],
    refused: CommandRejected | None = None,
    *,
    actor: Actor | None = None,
) -> QueuedCommand:
    """A command as it arrived: its decoded payload, or its problem and an excerpt; its
    envelope read once, here; a name that is no command's kept as an escaped excerpt. One
    `refused` on arrival is not validated (a storm's refusals must stay cheap)."""
    name = loggable(name)
    size = len(args[0].payload.data) if args else 0
    try:
        payload = payloads.decode_one(args, f"{name} payload")
    except CommandRejected as rejected:
        data = args[0].payload.data if args else b""
        readable = payloads.loosely(data)
        kept = safe_excerpt(data)
        return QueuedCommand(
            name=name,
            payload=kept,
            problem=(rejected.code, cut(rejected.reason, MAX_REASON)),
            envelope=envelope_of(readable),
            size=len(kept.encode()),  # what it holds and carries: the excerpt, not the payload
        )
    problem = None if refused is None else (refused.code, cut(refused.reason, MAX_REASON))
    return QueuedCommand(
        name=name,
        payload=payload,
        size=size,
        envelope=envelope_of(payload),
        problem=problem,
        actor=actor,
    )


def envelope_of(payload: object) -> Envelope:
    """The envelope fields a decoded payload carries, each if it is valid (read even from a
    payload that is rejected, so that its sender can still be answered)."""
    return Envelope(
        request_id=field_of(payload, "request_id"),
        by=field_of(payload, "by"),
        reply_to=field_of(payload, "reply_to"),
    )


def field_of(payload: object, name: str) -> str | None:
    """A one-line text field of a decoded payload, if it is valid."""
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and is_short_line(value) else None


def loggable(name: str) -> str:
    """A command name fit for logs and the state: a command's own, or an escaped excerpt."""
    return name if name in REGISTRY else cut(escaped(name[:200]), 100)


def rejection_error(rejected: CommandRejected) -> ApplicationError:
    """The error an update is rejected with (`payloads.refusal`)."""
    return payloads.refusal(rejected, "CommandRejected")
