"""The `Opportunity` workflow: one sales opportunity of one contact, for as long as it lives.

Commands arrive as signals or as updates of the same name. Both go into one queue and the main
loop applies them one at a time in arrival order through the pure core (`sales.core`), then
carries out the effects the core returned as activities. Updates wait for their own result;
signals that cannot be applied are kept in `rejected`. Before history grows large the workflow
continues-as-new, carrying its whole state and any queued command.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.opportunity_activities import (
        OpportunityActivities,
        ProjectionWrite,
        SetupRequest,
    )
    from sales import core
    from sales.commands import Command, parse_command
    from sales.effects import Effect, RecordHistory
    from sales.errors import CommandRejected, describe_validation_error
    from sales.opportunity import HistoryEntry, Opportunity
    from sales.process import Action, ProcessDefinition
    from sales.results import COMMAND_OUTCOME, ActionResult, CommandOutcome
    from workflows import effect_runner, telemetry
    from workflows import search_attributes as sa
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


@dataclass
class _Applied:
    """A command applied (effects carried out), waiting for its projection and answer."""

    item: QueuedCommand
    command: Command
    result: core.CommandResult
    history: list[HistoryEntry]


def _command(name: str) -> tuple[Any, Any]:
    """The signal and the same-name update (with its validator) of one command.

    Both put the raw payload in the one queue; the main loop validates and applies it in
    arrival order. Payloads stay raw JSON until then, so a malformed one is reported (in the
    update's error, or in `rejected` for a signal) instead of being dropped by the converter.
    """

    @workflow.signal(name=name)
    def on_signal(self: Any, payload: Any) -> None:
        self._queue.append(QueuedCommand(name=name, payload=payload))

    @workflow.update(name=name)
    async def on_update(self: Any, payload: Any) -> core.CommandResult:
        return await self._submit(name, payload)

    @on_update.validator
    def validate(self: Any, payload: Any) -> None:
        self._validate(name, payload)

    return on_signal, on_update


@workflow.defn(name="Opportunity")
class OpportunityWorkflow:
    @workflow.init
    def __init__(self, input: Any) -> None:
        self._state: Opportunity | None = None
        self._queue: list[QueuedCommand] = []
        self._results: dict[int, core.CommandResult | str] = {}
        self._next_ticket = 0
        self._indexed: dict[str, Any] = {}
        self._indexed_at: datetime | None = None
        self._index_timer: asyncio.Task[None] | None = None
        self._continue_as_new_after: int | None = None
        self._replies: list[asyncio.Task[None]] = []
        carried = input.get("carried") if isinstance(input, dict) else None
        if carried:
            restored = Carried.model_validate(carried)
            self._state = _share_process(restored.state)
            self._queue = list(restored.pending)

    @workflow.run
    async def run(self, input: Any) -> Opportunity:
        start = self._parse_input(input)
        self._continue_as_new_after = start.continue_as_new_after_events
        if self._state is None:
            await self._open(start)
        elif start.reopen is not None:
            await self._reopen(start.reopen.stage, start.reopen.by)
        assert self._state is not None
        self._publish()
        while self._state.status == "open":
            deadline = core.next_deadline(self._state)
            if deadline is not None and deadline <= workflow.now():
                await self._fire_timers()
                continue
            try:
                await workflow.wait_condition(
                    lambda: bool(self._queue) or self._should_continue_as_new(),
                    timeout=None if deadline is None else deadline - workflow.now(),
                )
            except TimeoutError:
                continue  # a stage timer is due: the loop fires it
            await self._apply_queue(stop_for_continue_as_new=True)
            if self._state.status == "open" and self._should_continue_as_new():
                # Updates must get their results in this run: answer every queued update (the
                # signals after the last one travel with the state), then continue.
                await self._replies_sent()
                if not await self._answer_updates_before_continuing():
                    continue
                self._publish(due=True)
                workflow.continue_as_new(
                    OpportunityInput(
                        **start.model_dump(exclude={"carried", "reopen"}),
                        carried=Carried(state=self._state, pending=self._queue),
                    )
                )
        # Won or lost: answer what is still queued or arriving (rejected: the opportunity is
        # closed), then end. `reopen` starts a new run from the state returned here.
        while True:
            while self._queue:
                done = await self._apply(self._queue.pop(0))
                if done is not None:
                    self._deliver(done)
            await self._replies_sent()
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

    # --- queries ----------------------------------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> Opportunity:
        if self._state is None:
            raise ApplicationError("the opportunity is still being opened; ask again shortly")
        return self._state

    @workflow.query(name="history")
    def history(self) -> list[HistoryEntry]:
        return [] if self._state is None else self._state.history

    # --- internals --------------------------------------------------------------------------

    def _parse_input(self, input: Any) -> OpportunityInput:
        if not isinstance(input, dict):
            raise ApplicationError(
                "the Opportunity input must be a JSON object with opportunity_id, contact_id "
                "and optionally process_id, name, owner, stage",
                type="InvalidInput",
            )
        try:
            start = OpportunityInput.model_validate(input)
        except ValidationError as error:
            raise ApplicationError(
                describe_validation_error(error, "Opportunity input"), type="InvalidInput"
            ) from None
        expected = f"opportunity-{start.opportunity_id}"
        if workflow.info().workflow_id != expected:
            raise ApplicationError(
                f"workflow id {workflow.info().workflow_id!r} does not match opportunity_id "
                f"{start.opportunity_id!r}; start it as {expected!r}",
                type="InvalidInput",
            )
        return start

    async def _open(self, start: OpportunityInput) -> None:
        """Load the setup, enter the initial stage and write the first projection.

        Unknown contact, process or stage fail the workflow with a message naming it, before
        anything is written.
        """
        try:
            setup = await workflow.execute_activity_method(
                OpportunityActivities.load_setup,
                SetupRequest(contact_id=start.contact_id, process_id=start.process_id),
                start_to_close_timeout=effect_runner.TIMEOUT,
                retry_policy=effect_runner.RETRY,
                summary="Load contact and sales process",
            )
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError):
                raise ApplicationError(cause.message, type=cause.type) from None
            raise
        try:
            decision = core.open_opportunity(
                start,
                setup.process,
                workflow.now(),
                contact_name=setup.contact_name,
                day_seconds=setup.day_seconds,
            )
        except CommandRejected as rejected:
            raise ApplicationError(rejected.reason, type="UnknownStage") from None
        self._state = _share_process(decision.state)
        _, history = await self._carry_out(decision.effects)
        await self._project(history)

    def _validate(self, name: str, payload: Any) -> None:
        """Update validator: reject before anything is written to history."""
        try:
            command = parse_command(name, payload)
            if self._state is not None:
                core.check(self._state, command)
        except CommandRejected as rejected:
            raise ApplicationError(
                rejected.reason, type="CommandRejected", non_retryable=True
            ) from None

    async def _submit(self, name: str, payload: Any) -> core.CommandResult:
        ticket = self._next_ticket
        self._next_ticket += 1
        self._queue.append(QueuedCommand(name=name, payload=payload, ticket=ticket))
        await workflow.wait_condition(lambda: ticket in self._results)
        outcome = self._results.pop(ticket)
        if isinstance(outcome, str):
            raise ApplicationError(outcome, type="CommandRejected", non_retryable=True)
        return outcome

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
                await self._project_batch(applied)
                applied = []
                if stop_for_continue_as_new and self._should_continue_as_new():
                    break
        if applied:
            await self._project_batch(applied)

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
        """Apply one command and carry out its effects; return it for `_project_batch` (None
        when it was rejected). Its `reply_to` is answered at once, before the projection."""
        assert self._state is not None
        reply_to = _reply_to(item.payload)
        try:
            command = parse_command(item.name, item.payload)
            decision = core.apply(self._state, command, workflow.now())
        except CommandRejected as rejected:
            if item.ticket is None:
                self._state = core.reject(
                    self._state, item.name, item.payload, rejected.reason, workflow.now()
                )
                self._publish()
            else:
                self._results[item.ticket] = rejected.reason
            self._reply(reply_to, item.name, _request_id(item.payload), "rejected", rejected.reason)
            telemetry.count_command(item.name, "rejected")
            workflow.logger.info("%s rejected: %s", item.name, rejected.reason)
            return None
        before = self._state
        self._state = decision.state
        result = decision.result
        history: list[HistoryEntry] = []
        if not result.duplicate:
            settled, history = await self._carry_out(decision.effects)
            follow = core.follow_through(before, self._state, workflow.now())
            if follow is not None:
                self._state = follow.state
                more, more_history = await self._carry_out(follow.effects)
                settled, history = settled + more, history + more_history
            result = core.finish(
                self._state, result, settled, follow.result if follow is not None else None
            )
        outcome: Literal["applied", "duplicate"] = "duplicate" if result.duplicate else "applied"
        self._reply(command.reply_to, item.name, command.request_id, outcome)
        return _Applied(item, command, result, history)

    async def _project_batch(self, applied: list[_Applied]) -> None:
        await self._project(
            [entry for done in applied for entry in done.history],
            commands=len(applied),
            answers=any(done.item.ticket is not None for done in applied),
        )
        for done in applied:
            self._deliver(done)

    def _deliver(self, done: _Applied) -> None:
        """Answer an applied command: the update's result, the reply, metrics and log."""
        result = done.result
        if done.item.ticket is not None:
            self._results[done.item.ticket] = result
        outcome = "duplicate" if result.duplicate else "applied"
        telemetry.count_command(done.item.name, outcome)
        workflow.logger.info("%s %s: %s", done.item.name, outcome, result.message)

    def _reply(
        self,
        reply_to: str | None,
        name: str,
        request_id: str | None,
        result: Literal["applied", "duplicate", "rejected"],
        reason: str = "",
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
            command=name,
            request_id=request_id,
            result=result,
            reason=reason,
        )
        self._replies = [task for task in self._replies if not task.done()]
        self._replies.append(asyncio.ensure_future(_send_outcome(reply_to, outcome)))

    async def _replies_sent(self) -> None:
        while self._replies:
            await self._replies.pop()

    async def _fire_timers(self) -> None:
        assert self._state is not None
        decision = core.fire_timers(self._state, workflow.now())
        if decision is None:
            return
        self._state = decision.state
        _, history = await self._carry_out(decision.effects)
        await self._project(history)

    async def _reopen(self, stage: str, by: str | None) -> None:
        assert self._state is not None
        try:
            decision = core.reopen(self._state, stage, by, workflow.now())
        except CommandRejected as rejected:
            self._state = core.reject(
                self._state, "reopen", {"stage": stage}, rejected.reason, workflow.now()
            )
            return
        self._state = decision.state
        _, history = await self._carry_out(decision.effects)
        await self._project(history)

    async def _carry_out(
        self, effects: list[Effect]
    ) -> tuple[list[ActionResult], list[HistoryEntry]]:
        """Execute the effects in order and settle what performing did; return the action
        results and the history entries to project."""
        settled: list[ActionResult] = []
        history: list[HistoryEntry] = []
        for effect in effects:
            if isinstance(effect, RecordHistory):
                history.append(effect.entry)
            elif effect_runner.is_perform(effect):
                outcome = await effect_runner.perform(effect)  # type: ignore[arg-type]
                assert self._state is not None
                self._state, result = core.settle(
                    self._state,
                    effect,  # type: ignore[arg-type]
                    outcome,
                    workflow.now(),
                )
                settled.append(result)
            else:
                await effect_runner.run(effect)
        return settled, history

    async def _project(
        self, history: list[HistoryEntry], *, commands: int = 1, answers: bool = True
    ) -> None:
        """Write the projection of what `commands` commands did (`answers`: among them
        updates waiting for it), and refresh what operators see; by local activity as
        `LOCAL_PROJECTION_MAX_BATCH` says."""
        assert self._state is not None
        local = answers and (
            commands <= LOCAL_PROJECTION_MAX_BATCH or self._should_continue_as_new()
        )
        await effect_runner.project(
            ProjectionWrite(summary=self._state.summary(), history=history), local=local
        )
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
    """Where to report a command's outcome, read from the raw payload so that a command
    rejected as malformed is still answered."""
    value = payload.get("reply_to") if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None


def _request_id(payload: Any) -> str | None:
    value = payload.get("request_id") if isinstance(payload, dict) else None
    return value if isinstance(value, str) else None


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
