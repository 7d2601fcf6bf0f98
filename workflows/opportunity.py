"""The `Opportunity` workflow: one sales opportunity of one contact, for as long as it lives.

Commands arrive as signals or as updates of the same name, undecoded: both go into one queue,
and the main loop decodes, validates and applies them one at a time in arrival order through
the pure core (`sales.core`), then carries out the effects the core returned. Updates wait for
their own result; signals that cannot be applied are kept in `rejected`. Every command ends
applied, rejected (with a code) or, for one action's side effect, failed. Before history
grows large the workflow continues as new, carrying its state and any queued command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.opportunity_activities import (
        OpportunityActivities,
        ProjectionWrite,
        SetupRequest,
    )
    from runtime import search_attributes as sa
    from runtime.workflow_ids import opportunity_workflow_id
    from sales import core
    from sales.commands import Command, parse_command
    from sales.effects import (
        CancelCalendarActivity,
        CompleteCalendarActivity,
        DeleteCalendarActivity,
        Effect,
        RecordHistory,
    )
    from sales.errors import CommandRejected, describe_validation_error
    from sales.opportunity import HistoryEntry, Opportunity
    from sales.process import Action, ProcessDefinition
    from sales.results import COMMAND_OUTCOME, ActionResult, CommandOutcome
    from sales.validation import is_short_line, json_size, safe_excerpt
    from workflows import effect_runner, payloads, telemetry
    from workflows.messages import Carried, OpportunityInput, QueuedCommand


MAX_BATCH = 50
"""At most this many commands share one projection write."""

MAX_RUN_EVENTS = 1500
"""Continue as new at this history length even without the server's suggestion (which comes
at 4 MB of history): a retried task replays the run, so runs stay short."""

INDEX_AT_MOST_EVERY = timedelta(seconds=1)
"""Search attributes are upserted at most this often: a change within this time of the last
upsert waits for one timer. Each upsert is a history event and a visibility write."""

LOCAL_PROJECTION_MAX_BATCH = 20
"""A batch answering updates, of up to this many commands, writes its projection by local
activity inside the workflow task that applied it (no activity round trip before the
answer). Batches of signals only, and larger batches, use an activity task, which lets the
server deliver what arrives meanwhile (a local activity holds the task open, and the server
fails a task during which more than 100 events pile up). Once continuing as new is due,
every batch answering updates uses the local activity, so the run applies, answers and
continues in one task even under a steady stream of updates."""

RETRY_UNWRITTEN_AFTER = timedelta(minutes=5)
"""A projection that failed for good is written with the next one, or after this long."""

CARRIED_BUDGET = 1024 * 1024
"""The most the state carried to the next run may take as JSON, well under Temporal's 2 MB
payload limit; beyond it the oldest rejections, request ids and history entries are
dropped (`core.trim`). The `state` query answers within the same budget."""
PENDING_BUDGET = 256 * 1024
"""The most the queued commands carried to the next run may take: beyond it the run applies
more before it continues."""

NO_INPUT = RawValue(Payload(metadata={"encoding": b"binary/null"}))
"""Stands for a start without an argument, which is refused like any invalid input."""


@dataclass
class _Applied:
    """A command applied (effects carried out), waiting for its projection and answer."""

    item: QueuedCommand
    command: Command
    result: core.CommandResult
    write: _Changes


@dataclass
class _Changes:
    """What commands changed in the read model beyond the opportunity's row."""

    history: list[HistoryEntry] = field(default_factory=list)
    calendar: list[Any] = field(default_factory=list)

    def __iadd__(self, other: _Changes) -> _Changes:
        self.history += other.history
        self.calendar += other.calendar
        return self


_CALENDAR_CHANGES = (CompleteCalendarActivity, CancelCalendarActivity, DeleteCalendarActivity)


def _command(name: str) -> tuple[Any, Any]:
    """The signal and the same-name update (with its validator) of one command.

    Both take the payload raw (`RawValue`) and put it in the one queue; the main loop decodes,
    validates and applies it in arrival order, so a malformed payload is rejected with a
    reason (in the update's error, or in `rejected` for a signal), never dropped by the
    converter. `payloads.OneArgument` makes sure there is exactly one argument.
    """

    @workflow.signal(name=name)
    def on_signal(self, payload: RawValue = NO_INPUT) -> None:
        self._receive(name, payload)

    @workflow.update(name=name)
    async def on_update(self, payload: RawValue = NO_INPUT) -> core.CommandResult:
        return await self._submit(name, payload)

    @on_update.validator
    def validate(self, payload: RawValue = NO_INPUT) -> None:
        self._validate(name, payload)

    return on_signal, on_update


@workflow.defn(name="Opportunity")
class OpportunityWorkflow:
    def __init__(self) -> None:
        self._state: Opportunity | None = None
        self._queue: list[QueuedCommand] = []
        self._results: dict[int, core.CommandResult | CommandRejected] = {}
        self._next_ticket = 0
        self._indexed: dict[str, Any] = {}
        self._indexed_at: datetime | None = None
        self._index_timer: asyncio.Task[None] | None = None
        self._continue_as_new_after: int | None = None
        self._replies: list[asyncio.Task[None]] = []
        self._unwritten: ProjectionWrite | None = None
        self._retry_unwritten_at: datetime | None = None

    @workflow.run
    async def run(self, input: RawValue = NO_INPUT) -> Opportunity:
        try:
            start = _parse_input(input)
        except CommandRejected as rejected:
            raise ApplicationError(
                rejected.reason, {"code": rejected.code}, type="InvalidInput", non_retryable=True
            ) from None
        _check_workflow_id(start)
        if start.carried is not None:
            # Commands that arrived before this point (the run's first task) come after the
            # ones the previous run handed over.
            self._state = _share_process(start.carried.state)
            self._queue = [*start.carried.pending, *self._queue]
            self._unwritten = start.carried.unwritten
        self._continue_as_new_after = start.continue_as_new_after_events
        if self._state is None:
            await self._open(start)
        elif start.reopen is not None:
            await self._reopen(start.reopen.stage, start.reopen.by)
        assert self._state is not None
        self._publish()
        while self._state.status == "open":
            wake = self._next_wake()
            if wake is not None and wake <= workflow.now():
                await self._on_time()
                continue
            try:
                await workflow.wait_condition(
                    lambda: bool(self._queue) or self._should_continue_as_new(),
                    timeout=None if wake is None else wake - workflow.now(),
                )
            except TimeoutError:
                continue  # a stage timer or a retry is due: the loop runs it
            await self._apply_queue(stop_for_continue_as_new=True)
            if self._state.status == "open" and self._should_continue_as_new():
                # Updates must get their results in this run: answer every queued update (the
                # signals after the last one travel with the state), then continue.
                await self._replies_sent()
                if not await self._answer_updates_before_continuing():
                    continue
                if json_size([item.model_dump(mode="json") for item in self._queue]) > (
                    PENDING_BUDGET
                ):
                    continue  # too much to carry: apply more first
                self._publish(due=True)
                workflow.continue_as_new(self._carry(start))
        # Won or lost: answer what is still queued or arriving (rejected: the opportunity is
        # closed), then end. `reopen` starts a new run from the state returned here.
        while True:
            while self._queue:
                done = await self._apply(self._queue.pop(0))
                if done is not None:
                    self._deliver(done)
            await self._replies_sent()
            if self._unwritten is not None:
                await self._write(_Changes())
            await workflow.wait_condition(
                lambda: workflow.all_handlers_finished() or bool(self._queue)
            )
            if not self._queue:
                self._publish(due=True)
                return self._state

    # --- commands: each a signal and an update of the same name (see `_command`) ----------

    change_stage_signal, change_stage = _command("change_stage")
    perform_actions_signal, perform_actions = _command("perform_actions")
    complete_actions_signal, complete_actions = _command("complete_actions")
    add_action_signal, add_action = _command("add_action")
    modify_action_signal, modify_action = _command("modify_action")
    delete_action_signal, delete_action = _command("delete_action")
    record_outcome_signal, record_outcome = _command("record_outcome")
    delete_activity_signal, delete_activity = _command("delete_activity")
    change_owner_signal, change_owner = _command("change_owner")

    @workflow.signal(dynamic=True)
    def any_other_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A signal of no known command: rejected in its turn (`unknown_command`)."""
        self._queue.append(_received(name, args))

    def _receive(self, name: str, payload: RawValue) -> None:
        self._queue.append(_received(name, [payload]))

    async def _submit(self, name: str, payload: RawValue) -> core.CommandResult:
        ticket = self._next_ticket
        self._next_ticket += 1
        self._queue.append(_received(name, [payload]).model_copy(update={"ticket": ticket}))
        await workflow.wait_condition(lambda: ticket in self._results)
        outcome = self._results.pop(ticket)
        if isinstance(outcome, CommandRejected):
            raise _rejection_error(outcome)
        return outcome

    def _validate(self, name: str, payload: RawValue) -> None:
        """Update validator: reject before anything is written to history."""
        try:
            command = parse_command(name, payloads.decode(payload, f"{name} payload"))
            if self._state is not None:
                core.check(self._state, command)
        except CommandRejected as rejected:
            raise _rejection_error(rejected) from None

    # --- queries ----------------------------------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> Opportunity:
        if self._state is None:
            raise ApplicationError("the opportunity is still being opened; ask again shortly")
        return _within_budget(self._state)

    @workflow.query(name="history")
    def history(self) -> list[HistoryEntry]:
        return [] if self._state is None else self._state.history

    # --- internals --------------------------------------------------------------------------

    async def _open(self, start: OpportunityInput) -> None:
        """Load the setup, enter the initial stage and write the first projection.

        Unknown contact, process or stage fail the workflow with a message naming it, before
        anything is written.
        """
        try:
            setup = await effect_runner.load(
                OpportunityActivities.load_setup,
                SetupRequest(contact_id=start.contact_id, process_id=start.process_id),
                "Load contact and sales process",
            )
        except ActivityError as error:
            code, message = effect_runner.failure(error)
            cause = error.cause
            kind = cause.type if isinstance(cause, ApplicationError) and cause.type else code
            raise ApplicationError(message, type=kind, non_retryable=True) from None
        try:
            decision = core.open_opportunity(
                start,
                setup.process,
                workflow.now(),
                contact_name=setup.contact_name,
                day_seconds=setup.day_seconds,
            )
        except CommandRejected as rejected:
            raise ApplicationError(
                rejected.reason, type="UnknownStage", non_retryable=True
            ) from None
        self._state = _share_process(decision.state)
        _, changes = await self._carry_out(decision.effects)
        await self._write(changes)

    def _carry(self, start: OpportunityInput) -> OpportunityInput:
        """The next run's input: the start, the state (within `CARRIED_BUDGET`), the queued
        commands and a projection still to write."""
        assert self._state is not None
        return OpportunityInput(
            **start.model_dump(exclude={"carried", "reopen"}),
            carried=Carried(
                state=_within_budget(self._state),
                pending=self._queue,
                unwritten=self._unwritten,
            ),
        )

    async def _apply_queue(
        self, *, stop_for_continue_as_new: bool = False, upto: int | None = None
    ) -> None:
        """Apply what is queued (or its first `upto` items), in arrival order. Commands applied
        back to back share one projection write (at most `MAX_BATCH`), and their updates are
        answered after it. With `stop_for_continue_as_new`, stop after a batch once continuing
        as new is due, even if more keeps arriving."""
        assert self._state is not None
        applied: list[_Applied] = []
        while self._queue and self._state.status == "open" and (upto is None or upto > 0):
            if upto is not None:
                upto -= 1
            done = await self._apply(self._queue.pop(0))
            if done is not None:
                applied.append(done)
            if len(applied) >= MAX_BATCH:
                await self._write_batch(applied)
                applied = []
                if stop_for_continue_as_new and self._should_continue_as_new():
                    break
        if applied:
            await self._write_batch(applied)

    async def _answer_updates_before_continuing(self) -> bool:
        """Before continuing as new: apply the queue up to its last update (updates must be
        answered in this run; the signals after it travel with the state), until no handler
        is running. False when the opportunity closed meanwhile."""
        assert self._state is not None
        while True:
            tickets = [n for n, item in enumerate(self._queue) if item.ticket is not None]
            if tickets:
                await self._apply_queue(upto=tickets[-1] + 1)
                await self._replies_sent()
                if self._state.status != "open":
                    return False
                continue
            if workflow.all_handlers_finished():
                return True
            await workflow.wait_condition(
                lambda: (
                    workflow.all_handlers_finished()
                    or any(item.ticket is not None for item in self._queue)
                )
            )

    async def _apply(self, item: QueuedCommand) -> _Applied | None:
        """Apply one command and carry out its effects; return it for `_write_batch` (None
        when it was rejected). Its `reply_to` is answered at once, before the projection."""
        assert self._state is not None
        try:
            if item.problem is not None:
                code, reason = item.problem
                raise CommandRejected(reason, code=code)
            command = parse_command(item.name, item.payload)
            decision = core.apply(self._state, command, workflow.now())
        except CommandRejected as rejected:
            self._reject(item, rejected)
            return None
        before = self._state
        self._state = decision.state
        result = decision.result
        changes = _Changes()
        if not result.duplicate:
            settled, changes = await self._carry_out(decision.effects)
            follow = core.follow_through(before, self._state, workflow.now())
            if follow is not None:
                self._state = follow.state
                more, more_changes = await self._carry_out(follow.effects)
                settled += more
                changes += more_changes
            result = core.finish(
                self._state, result, settled, follow.result if follow is not None else None
            )
        outcome: Literal["applied", "duplicate"] = "duplicate" if result.duplicate else "applied"
        self._reply(command.reply_to, item.name, command.request_id, outcome)
        return _Applied(item, command, result, changes)

    def _reject(self, item: QueuedCommand, rejected: CommandRejected) -> None:
        """A command that cannot be applied: the update's error, or for a signal an entry in
        `rejected`; its `reply_to` is told either way."""
        assert self._state is not None
        if item.ticket is None:
            self._state = core.reject(
                self._state, item.name, item.payload, rejected, workflow.now()
            )
            self._publish()
        else:
            self._results[item.ticket] = rejected
        self._reply(
            item.reply_to or _reply_to(item.payload),
            item.name,
            item.request_id or _request_id(item.payload),
            "rejected",
            rejected.reason,
            rejected.code,
        )
        telemetry.count_command(item.name, "rejected")
        workflow.logger.info("%s rejected: %s", _loggable(item.name), rejected.code)

    async def _write_batch(self, applied: list[_Applied]) -> None:
        """Write what a batch changed (nothing when it only acknowledged duplicates), then
        answer its commands."""
        if not all(done.result.duplicate for done in applied):
            changes = _Changes()
            for done in applied:
                changes += done.write
            await self._write(
                changes,
                commands=len(applied),
                answers=any(done.item.ticket is not None for done in applied),
            )
        for done in applied:
            self._deliver(done)

    def _deliver(self, done: _Applied) -> None:
        """Answer an applied command: the update's result, metrics and log."""
        result = done.result
        if done.item.ticket is not None:
            self._results[done.item.ticket] = result
        outcome = "duplicate" if result.duplicate else "applied"
        telemetry.count_command(done.item.name, outcome)
        failed = [a.code for a in result.actions if a.outcome == "failed"]
        workflow.logger.info(
            "%s %s%s", done.item.name, outcome, f" (failed: {failed})" if failed else ""
        )

    def _reply(
        self,
        reply_to: str | None,
        name: str,
        request_id: str | None,
        result: Literal["applied", "duplicate", "rejected"],
        reason: str = "",
        code: str | None = None,
    ) -> None:
        """Signal the command's outcome to `reply_to`, without holding up the next command.

        The signal is sent in the background; `_replies_sent` waits for it before the run
        ends, because the server drops a signal whose sender has already closed.
        """
        if reply_to is None:
            return
        assert self._state is not None
        outcome = CommandOutcome(
            opportunity_id=self._state.opportunity_id,
            command=name[:200],
            request_id=request_id,
            result=result,
            reason=reason,
            code=code,
        )
        self._replies = [task for task in self._replies if not task.done()]
        self._replies.append(asyncio.ensure_future(_send_outcome(reply_to, outcome)))

    async def _replies_sent(self) -> None:
        while self._replies:
            await self._replies.pop()

    def _next_wake(self) -> datetime | None:
        """When the loop must act without a command: a stage timer, or a retry of a
        projection that failed."""
        assert self._state is not None
        due = [core.next_deadline(self._state), self._retry_unwritten_at]
        return min((d for d in due if d is not None), default=None)

    async def _on_time(self) -> None:
        assert self._state is not None
        if self._retry_unwritten_at is not None and self._retry_unwritten_at <= workflow.now():
            await self._write(_Changes())
        deadline = core.next_deadline(self._state)
        if deadline is None or deadline > workflow.now():
            return
        decision = core.fire_timers(self._state, workflow.now())
        if decision is None:
            return
        self._state = decision.state
        _, changes = await self._carry_out(decision.effects)
        await self._write(changes)

    async def _reopen(self, stage: str, by: str | None) -> None:
        assert self._state is not None
        try:
            decision = core.reopen(self._state, stage, by, workflow.now())
        except CommandRejected as rejected:
            self._state = core.reject(
                self._state, "reopen", {"stage": stage}, rejected, workflow.now()
            )
            return
        self._state = decision.state
        _, changes = await self._carry_out(decision.effects)
        await self._write(changes)

    async def _carry_out(self, effects: list[Effect]) -> tuple[list[ActionResult], _Changes]:
        """Perform what needs an activity, in order, settling each outcome; collect what the
        projection writes (history entries, changes to existing calendar activities)."""
        settled: list[ActionResult] = []
        changes = _Changes()
        for effect in effects:
            if isinstance(effect, RecordHistory):
                changes.history.append(effect.entry)
            elif isinstance(effect, _CALENDAR_CHANGES):
                changes.calendar.append(effect)
            else:
                outcome = await effect_runner.perform(effect)
                assert self._state is not None
                self._state, result = core.settle(
                    self._state,
                    effect,
                    outcome,
                    workflow.now(),
                )
                settled.append(result)
        return settled, changes

    async def _write(self, changes: _Changes, *, commands: int = 1, answers: bool = True) -> None:
        """Write the projection of what `commands` commands did (`answers`: among them
        updates waiting for it), with any earlier write that failed, and refresh what
        operators see; by local activity as `LOCAL_PROJECTION_MAX_BATCH` says. A write that
        fails for good is kept and written with the next one, or after
        `RETRY_UNWRITTEN_AFTER`: the commands stay applied and the opportunity goes on."""
        assert self._state is not None
        local = answers and (
            commands <= LOCAL_PROJECTION_MAX_BATCH or self._should_continue_as_new()
        )
        write = ProjectionWrite(
            summary=self._state.summary(), history=changes.history, calendar=changes.calendar
        )
        if self._unwritten is not None:
            write = self._unwritten + write
        try:
            await effect_runner.project(write, local=local)
        except ActivityError as error:
            code, _ = effect_runner.failure(error)
            self._unwritten = write
            self._retry_unwritten_at = workflow.now() + RETRY_UNWRITTEN_AFTER
            telemetry.count_effect_failure("project_opportunity", code)
            workflow.logger.error("projection not written (%s); kept for the next write", code)
        else:
            self._unwritten = None
            self._retry_unwritten_at = None
        self._publish()

    def _publish(self, *, due: bool = False) -> None:
        """Upsert the search attributes that changed, and set the UI's current details.

        Unless `due`, a change within `INDEX_AT_MOST_EVERY` of the last upsert waits for
        `_index_when_due`."""
        assert self._state is not None
        state = self._state
        wanted: dict[str, Any] = {
            sa.OPPORTUNITY_STAGE.name: state.current_stage,
            sa.SALES_PROCESS.name: state.process_id,
            sa.OPPORTUNITY_STATUS.name: state.status,
            sa.CONTACT_ID.name: state.contact_id,
            sa.OPPORTUNITY_OWNER.name: state.owner,
            sa.OPEN_ACTIONS.name: state.open_actions(),
        }
        changed = {
            key.name: value
            for key in sa.ALL
            if self._indexed.get(key.name, ...) != (value := wanted[key.name])
        }
        if changed and not due and self._index_later():
            if self._index_timer is None:
                self._index_timer = asyncio.ensure_future(self._index_when_due())
        elif changed:
            workflow.upsert_search_attributes([
                key.value_unset() if changed[key.name] is None else key.value_set(changed[key.name])
                for key in sa.ALL
                if key.name in changed
            ])  # fmt: skip
            self._indexed.update(changed)
            self._indexed_at = workflow.now()
        workflow.set_current_details(_details(state))

    def _index_later(self) -> bool:
        return (
            self._indexed_at is not None and workflow.now() - self._indexed_at < INDEX_AT_MOST_EVERY
        )

    async def _index_when_due(self) -> None:
        """One timer for every change that waits: at `INDEX_AT_MOST_EVERY` after the last
        upsert, upsert what changed since."""
        assert self._indexed_at is not None
        await workflow.sleep(self._indexed_at + INDEX_AT_MOST_EVERY - workflow.now())
        self._index_timer = None
        if self._state is not None and self._state.status == "open":
            self._publish(due=True)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        limit = self._continue_as_new_after or MAX_RUN_EVENTS
        return info.get_current_history_length() >= limit


def _parse_input(raw: RawValue) -> OpportunityInput:
    """The start input, or `CommandRejected` naming what is wrong with it."""
    value = payloads.decode(raw, "Opportunity input", CARRIED_BUDGET * 2)
    if not isinstance(value, dict):
        raise CommandRejected(
            "invalid Opportunity input: expected a JSON object with opportunity_id, "
            "contact_id and optionally process_id, name, owner, stage",
            code="invalid_payload",
        )
    try:
        return OpportunityInput.model_validate(value)
    except ValidationError as error:
        raise CommandRejected(
            describe_validation_error(error, "Opportunity input"), code="invalid_payload"
        ) from None


def _check_workflow_id(start: OpportunityInput) -> None:
    expected = opportunity_workflow_id(start.opportunity_id)
    if workflow.info().workflow_id != expected:
        raise ApplicationError(
            f"workflow id {workflow.info().workflow_id!r} does not match opportunity_id "
            f"{start.opportunity_id!r}; start it as {expected!r}",
            {"code": "invalid_payload"},
            type="InvalidInput",
            non_retryable=True,
        )


def _received(name: str, args: Sequence[RawValue]) -> QueuedCommand:
    """A command as it arrived: its decoded payload, or its problem and an excerpt (with the
    fields needed to answer it, if they can be read)."""
    try:
        return QueuedCommand(name=name, payload=payloads.decode_one(args, f"{name} payload"))
    except CommandRejected as rejected:
        data = args[0].payload.data if args else b""
        readable = payloads.loosely(data)
        return QueuedCommand(
            name=_loggable(name),
            payload=safe_excerpt(data),
            problem=(rejected.code, rejected.reason),
            reply_to=_reply_to(readable),
            request_id=_request_id(readable),
        )


def _rejection_error(rejected: CommandRejected) -> ApplicationError:
    return ApplicationError(
        rejected.reason, {"code": rejected.code}, type="CommandRejected", non_retryable=True
    )


def _within_budget(state: Opportunity) -> Opportunity:
    """The state, or a copy without its oldest rejections, request ids and history entries
    when it would not fit `CARRIED_BUDGET`."""
    size = json_size(state.model_dump(mode="json"))
    if size <= CARRIED_BUDGET:
        return state
    return core.trim(state, size - CARRIED_BUDGET)


def _loggable(name: str) -> str:
    """A command name fit for logs and the state: cut, and with no control characters."""
    return safe_excerpt(name.encode("utf-8", "replace"), 100)


_SHARED_PROCESSES: dict[tuple[str, int], ProcessDefinition] = {}
"""One copy of each process version for all the opportunities a worker keeps cached: each
state carries its process definition (about 9 KiB for the example process), which every
opening and continue-as-new parses anew, and each action state its action's definition.
Versions are immutable (a changed definition is a new version), definitions are frozen and
never changed in place by the rules (`modify_action` replaces an action's definition
whole), so sharing equal objects changes no behaviour; it only lowers memory per cached
opportunity."""
_SHARED_ACTIONS: dict[tuple[str, int], dict[tuple[str, str], Action]] = {}
"""The shared process's action definitions by (stage, action id)."""
MAX_SHARED_PROCESSES = 256


def _share_process(state: Opportunity) -> Opportunity:
    """The state, its process definition and every action definition equal to the
    process's replaced by the worker's shared copies (an action an operator modified keeps
    its own)."""
    key = (state.process_id, state.process_version)
    if key not in _SHARED_PROCESSES and len(_SHARED_PROCESSES) >= MAX_SHARED_PROCESSES:
        _SHARED_PROCESSES.clear()
        _SHARED_ACTIONS.clear()
    shared = _SHARED_PROCESSES.setdefault(key, state.process)
    if shared is not state.process:
        if shared != state.process:
            return state
        state.process = shared
    actions = _SHARED_ACTIONS.get(key)
    if actions is None:
        actions = {(st.name, a.action_id): a for st in shared.stages for a in st.actions}
        _SHARED_ACTIONS[key] = actions
    for stage in state.stages:
        for action in stage.actions:
            same = actions.get((stage.name, action.definition.action_id))
            if same is not None and same is not action.definition and same == action.definition:
                action.definition = same
    return state


def _reply_to(payload: Any) -> str | None:
    """Where to report a command's outcome, read from the decoded payload so that a command
    rejected as malformed is still answered (when the field itself is valid)."""
    return _short_line(payload, "reply_to")


def _request_id(payload: Any) -> str | None:
    return _short_line(payload, "request_id")


def _short_line(payload: Any, name: str) -> str | None:
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and is_short_line(value) else None


async def _send_outcome(reply_to: str, outcome: CommandOutcome) -> None:
    try:
        await workflow.get_external_workflow_handle(reply_to).signal(COMMAND_OUTCOME, outcome)
    except Exception as error:  # the asker is gone (finished, cancelled): nobody to tell
        workflow.logger.warning("could not report %s to %s: %s", outcome.command, reply_to, error)


def _details(state: Opportunity) -> str:
    """The UI's current details (markdown): what the opportunity is doing, without payloads."""
    contact = (
        f"{state.contact_name} ({state.contact_id})" if state.contact_name else state.contact_id
    )
    name = f"{state.name} · " if state.name else ""
    lines = [
        f"**{name}{contact}**",
        f"**Stage:** {state.current_stage} (since {state.stage_entered_at:%Y-%m-%d %H:%M} UTC)"
        f" · **Status:** {state.status} · **Owner:** {state.owner or '-'}",
        f"**Process:** {state.process_id} v{state.process_version}",
    ]
    current = state.stage_state(state.current_stage).actions
    open_actions = [a for a in current if not a.completed]
    lines.append(f"**Open actions ({len(open_actions)}):**")
    lines += [f"- {a.title} (`{a.action_id}`, {a.type})" for a in open_actions] or ["- none"]
    linked = [
        action
        for stage in state.stages
        for action in stage.actions
        if action.activity_id is not None
    ]
    if linked:
        lines.append(f"**Linked activities ({len(linked)}):**")
        lines += [
            f"- `{a.activity_id}` {a.title}: {a.activity_status or 'unknown'}"
            + (f", outcome {a.activity_outcome}" if a.activity_outcome else "")
            for a in linked
        ]
    if state.rejected:
        last = state.rejected[-1]
        lines.append(
            f"**Last rejection:** `{last.command}` at {last.at:%Y-%m-%d %H:%M} UTC: {last.reason}"
        )
    return "\n".join(lines)
