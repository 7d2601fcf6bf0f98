"""The `Opportunity` workflow: one sales opportunity of one contact, for as long as it lives.

Every command arrives as a signal or an update of the same name, undecoded, into one queue
(`command_queue`). The run takes them in arrival order: what one needs from outside is looked
up (`lookups`), then one call into the pure core (`core.run`) applies it and performs its side
effects as activities; its read-model changes are written once per batch (`projection`), its
outcome delivered (`delivery`), what operators see refreshed (`indexing`). Before its history
grows long, the run continues as new with its state and the commands still queued
(`continue_as_new`).

A run's state comes only from Temporal: a new opportunity's from its setup (refused over an
id the read model has), a continued run's from the run before it, a reopened one's from the
run the read model names (`load_closed`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.opportunity_activities import SetupRequest
    from sales import core
    from sales.authorization import Actor
    from sales.errors import CommandRejected
    from sales.opportunity import DeadLetter, HistoryEntry, Opportunity
    from sales.writes import Writes
    from workflows import continue_as_new, effect_runner, payloads
    from workflows.alarm import Alarm
    from workflows.authorization import clearance, started_by
    from workflows.command_queue import CommandQueue, command_handlers, rejection_error
    from workflows.delivery import Delivery
    from workflows.indexing import Indexing
    from workflows.lookups import Lookups
    from workflows.messages import NO_INPUT, Carried, OpportunityInput, QueuedCommand, parse_start
    from workflows.projection import MAX_BATCH, WRITE_BUDGET, Projection
    from workflows.shared_processes import WORKER_PROCESSES


@workflow.defn(name="Opportunity")
class OpportunityWorkflow:
    def __init__(self) -> None:
        self.state: Opportunity | None = None
        self.queue = CommandQueue(self.continuing)
        self.in_hand = 0
        self.draining = False
        """Whether the run answers the updates it accepted, to continue as new: it accepts
        no more (`require_accepting`)."""
        """Commands taken from the queue and not yet applied (0 or 1)."""
        self.delivery = Delivery(self.queue)
        self.projection = Projection()
        self.indexing = Indexing(lambda: self.state)
        self.given_limit: int | None = None
        self.lookups = Lookups()
        self.alarm = Alarm()

    @workflow.run
    async def run(self, input: RawValue = NO_INPUT) -> Opportunity:
        start = parse_start(input, workflow.info())
        self.given_limit = start.continue_as_new_after_events
        if start.carried is not None:
            self.state = WORKER_PROCESSES.share(start.carried.state)
            self.queue.carry(start.carried.pending)  # before what arrived since
            self.projection = Projection(start.carried.unwritten)
            self.indexing.publish(self.state)
        elif start.reopen is not None:
            await self.reopen(start.opportunity_id, start.reopen.stage, start.reopen.by)
        else:
            await self.open(start)
        assert self.state is not None
        while self.state.status == "open":
            wake = self.next_wake()
            if wake is not None and wake <= workflow.now():
                await self.on_time()  # a stage timer, or a write to retry
                continue
            self.alarm.set(wake)
            await workflow.wait_condition(
                lambda: (
                    self.alarm.rang
                    or bool(self.queue.refused)
                    or (not self.projection.holding and (bool(self.queue) or self.continuing()))
                )
            )
            self.reject_refused()
            await self.apply_queued(stop_when_continuing=True)
            if self.state.status == "open" and self.continuing():
                if await self.ready_to_continue():
                    self.indexing.publish(self.state, due=True)
                    workflow.continue_as_new(self.carried(start))
        return await self.closed()

    # --- commands: each a signal and an update of the same name (see `command_handlers`) --

    change_stage_signal, change_stage = command_handlers("change_stage")
    perform_actions_signal, perform_actions = command_handlers("perform_actions")
    complete_actions_signal, complete_actions = command_handlers("complete_actions")
    add_action_signal, add_action = command_handlers("add_action")
    modify_action_signal, modify_action = command_handlers("modify_action")
    delete_action_signal, delete_action = command_handlers("delete_action")
    record_outcome_signal, record_outcome = command_handlers("record_outcome")
    delete_activity_signal, delete_activity = command_handlers("delete_activity")
    modify_activity_signal, modify_activity = command_handlers("modify_activity")
    assign_signal, assign = command_handlers("assign")
    move_process_signal, move_process = command_handlers("move_process")
    add_remark_signal, add_remark = command_handlers("add_remark")
    delete_opportunity_signal, delete_opportunity = command_handlers("delete_opportunity")
    change_owner_signal, change_owner = command_handlers("change_owner")
    update_details_signal, update_details = command_handlers("update_details")
    record_external_status_signal, record_external_status = command_handlers(
        "record_external_status"
    )

    @workflow.signal(dynamic=True)
    def any_other_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A signal of no known command: rejected in its turn (`unknown_command`)."""
        self.queue.receive(name, args)

    # --- queries ----------------------------------------------------------------------------

    @workflow.query(name="state")
    def state_query(self) -> Opportunity:
        if self.state is None:
            raise ApplicationError("the opportunity is still being opened; ask again shortly")
        return continue_as_new.within_budget(self.state)

    @workflow.query(name="history")
    def history(self) -> list[HistoryEntry]:
        return [] if self.state is None else self.state.history

    # --- the run's steps --------------------------------------------------------------------

    async def open(self, start: OpportunityInput) -> None:
        """Load the setup, enter the initial stage and write the first projection. An unknown
        contact, process or stage fails the workflow, naming it, before anything is written."""
        assert start.contact_id is not None
        actor = started_by()
        if actor is not None:  # verified: the opening's `by` is its signer
            start = start.model_copy(update={"by": actor.sub})
        setup = await effect_runner.load_setup(
            SetupRequest(
                opportunity_id=start.opportunity_id,
                contact_id=start.contact_id,
                process_id=start.process_id,
                owner=start.owner,
            )
        )
        self.lookups.know(setup.users)
        try:
            decision = core.open_opportunity(
                start, setup.process, workflow.now(), contact_name=setup.contact_name,
                day_seconds=setup.day_seconds, currency=setup.currency,
            )  # fmt: skip
        except CommandRejected as rejected:
            raise payloads.refusal(rejected, "UnknownStage") from None
        decision.state = WORKER_PROCESSES.share(decision.state)
        await self.settle(decision, actor)

    async def reopen(self, opportunity_id: str, stage: str, by: str | None) -> None:
        """Open a won or lost opportunity again in `stage`, from the state its real run ended
        with. Refused (open, deleted, unknown, a closing or unknown stage): the run fails
        with the code, writing nothing."""
        closed = await effect_runner.load_closed(opportunity_id)
        try:
            decision = core.reopen(closed, stage, by, workflow.now())
        except CommandRejected as rejected:
            raise rejection_error(rejected) from None
        decision.state = WORKER_PROCESSES.share(decision.state)
        await self.settle(decision)

    async def on_time(self) -> None:
        """What is due without a command: a write to retry, the stage timers (not while a
        write waits to be written)."""
        assert self.state is not None
        if self.projection.retry_at is not None and self.projection.retry_at <= workflow.now():
            await self.written(await self.projection.write(self.state, Writes()))
        if self.projection.holding:
            return
        decision = core.fire_timers(self.state, workflow.now())
        if decision is not None:
            await self.settle(decision)

    async def settle(self, decision: core.Decision, actor: Actor | None = None) -> None:
        """Carry out what an opening, a reopening or a timer decided, and write it (`actor`:
        who opened it, verified). Queries see the new state once it is written: an opening
        or reopening answers with a state the read model already has."""
        outcome = await core.carry_out(decision, effect_runner.perform, workflow.now, actor)
        refused = await self.projection.write(outcome.state, outcome.writes)
        self.state = outcome.state
        await self.written(refused)
        self.indexing.publish(self.state)

    async def written(self, refused: list[DeadLetter]) -> None:
        """After a write: note the parts the read model refused; while the write waits to be
        written again, refuse the queued updates (`unavailable`), so that nobody waits."""
        assert self.state is not None
        if refused:
            self.state = core.note_dead_letters(self.state, refused, workflow.now())
        if self.projection.holding:
            for item in self.queue.updates():
                self.delivery.rejected(self.state.opportunity_id, item, unavailable())

    def require_accepting(self) -> None:
        """`CommandRejected` (`unavailable`) while a write waits to be written again, or while
        the run drains to continue as new: it answers the updates it accepted, by activity
        tasks, and continues; one accepted meanwhile would need another write, and so on
        under a steady stream. Such a refusal says `resend`: the Python client sends it
        again, and the next run takes it. A run merely due (its history past its limit,
        waiting for a command) accepts: the accepted update's workflow task wakes it, and a
        refusal, which leaves no history, would not."""
        if self.projection.holding:
            raise unavailable()
        if self.draining:
            raise CommandRejected(
                "the opportunity is continuing as new; nothing was applied: send it again "
                "shortly",
                code="unavailable",
                resend=True,
            )

    def reject_refused(self) -> None:
        """The signals refused on arrival (the queue was full), kept in `rejected` together:
        one copy of the state, one log line, however many a storm brought."""
        refused = self.queue.take_refused()
        if refused and self.state is not None:
            signals = [(item.name, item.payload, item.rejection()) for item in refused.newest()]
            self.state = core.reject_all(self.state, signals, workflow.now())
            self.indexing.publish(self.state)
            self.delivery.refused(self.state.opportunity_id, refused)

    async def apply_queued(self, *, stop_when_continuing: bool = False, upto: int = -1) -> None:
        """Apply the queued commands (or the first `upto`) in arrival order, in batches that
        share one projection write; with `stop_when_continuing`, stop after a batch once the
        run is due to continue as new, even if more keep arriving."""
        assert self.state is not None
        batch: list[tuple[QueuedCommand, core.Outcome]] = []
        weight = 0
        fresh = True
        while self.queue and self.state.status == "open" and upto != 0:
            if self.projection.holding:
                break
            if fresh:
                await self.lookups.before_batch(self.queue.items[:MAX_BATCH])
                fresh = False
            upto -= 1
            item = self.queue.take()
            outcome = await self.apply(item)
            if isinstance(outcome, CommandRejected):
                self.rejected(item, outcome)
            else:
                batch.append((item, outcome))
                weight += outcome.writes.weight
            if len(batch) >= MAX_BATCH or weight >= WRITE_BUDGET:
                await self.write(batch)
                batch, weight, fresh = [], 0, True
                if stop_when_continuing and self.continuing():
                    break
        if batch:
            await self.write(batch)

    async def apply(self, item: QueuedCommand) -> core.Outcome | CommandRejected:
        """Apply one command: look up what it needs, then one call into the core; or why it
        was rejected."""
        assert self.state is not None
        self.in_hand += 1
        try:
            command = item.command()
            looked_up = await self.lookups.look_up(self.state, command)
            cleared = clearance(item.name, item.actor)
            outcome = await core.run(
                self.state, command, looked_up, effect_runner.perform, workflow.now, cleared
            )
        except CommandRejected as rejected:
            return rejected
        finally:
            self.in_hand -= 1
        self.state = outcome.state
        return outcome

    def settled(self) -> bool:
        """Whether no command is queued or being applied: the state is the one a command
        arriving now would be applied to (so its validator may judge it by the state)."""
        return not self.queue and self.in_hand == 0

    def rejected(self, item: QueuedCommand, rejected: CommandRejected) -> None:
        """A command rejected in its turn: a signal is kept in `rejected`; the rejection is
        delivered."""
        assert self.state is not None
        if item.ticket is None:
            self.state = core.reject(self.state, item.name, item.payload, rejected, workflow.now())
            self.indexing.publish(self.state)
        self.delivery.rejected(self.state.opportunity_id, item, rejected)

    async def write(self, batch: list[tuple[QueuedCommand, core.Outcome]]) -> None:
        """Write what a batch changed (nothing if it only acknowledged duplicates), then
        deliver the outcome of each of its commands."""
        assert self.state is not None
        if not all(outcome.result.duplicate for _, outcome in batch):
            writes = Writes()
            for _, outcome in batch:
                writes += outcome.writes
            refused = await self.projection.write(self.state, writes)
            for item, outcome in batch:
                self.delivery.applied(self.state.opportunity_id, item, outcome.result)
            await self.written(refused)
            self.indexing.publish(self.state)
            return
        for item, outcome in batch:
            self.delivery.applied(self.state.opportunity_id, item, outcome.result)

    def continuing(self) -> bool:
        limit = continue_as_new.run_limit(self.given_limit, self.queue.signals)
        return continue_as_new.due(limit)

    async def ready_to_continue(self) -> bool:
        """Updates must get their results in this run: apply the queue up to its last update
        (the signals after it travel with the state) until no handler is running, and carry
        no more than fits. False when the opportunity closed meanwhile or more must be
        applied first."""
        assert self.state is not None
        self.draining = True
        while (upto := self.queue.through_last_update()) or not workflow.all_handlers_finished():
            if upto:
                await self.apply_queued(upto=upto)
            else:
                await workflow.wait_condition(
                    lambda: (
                        workflow.all_handlers_finished() or bool(self.queue.through_last_update())
                    )
                )
            if self.state.status != "open":
                return False
        self.reject_refused()
        await self.delivery.replies_sent()
        while self.queue.refused:  # refused while the replies went out
            self.reject_refused()
            await self.delivery.replies_sent()
        return continue_as_new.carries(len(self.queue.items), self.queue.payload_bytes)

    def carried(self, start: OpportunityInput) -> OpportunityInput:
        """The next run's input: the start, the state within its budget, the commands still
        queued and a write still to make."""
        assert self.state is not None
        carried = Carried(
            state=continue_as_new.within_budget(self.state),
            pending=self.queue.items,
            unwritten=self.projection.unwritten,
        )
        return start.model_copy(update={"carried": carried, "reopen": None})

    def next_wake(self) -> datetime | None:
        """When the loop must act without a command: a stage timer, or a write to retry."""
        assert self.state is not None
        due = [core.next_deadline(self.state), self.projection.retry_at]
        return min((d for d in due if d is not None), default=None)

    async def closed(self) -> Opportunity:
        """Won or lost: answer what is queued or still arriving (rejected: the opportunity is
        closed), then end. `reopen` starts a new run from the state returned here."""
        assert self.state is not None
        while True:
            self.reject_refused()
            while self.queue:
                item = self.queue.take()
                outcome = await self.apply(item)  # rejected: closed (or a duplicate request)
                if isinstance(outcome, CommandRejected):
                    self.rejected(item, outcome)
                else:
                    self.delivery.applied(self.state.opportunity_id, item, outcome.result)
            await self.delivery.replies_sent()
            if self.projection.holding:  # the last write must land before the run ends
                retry_at = self.projection.retry_at or workflow.now()
                if retry_at <= workflow.now():
                    await self.written(await self.projection.write(self.state, Writes()))
                else:
                    await self.sleep_or_command(retry_at - workflow.now())
                continue
            await workflow.wait_condition(
                lambda: (
                    workflow.all_handlers_finished() or bool(self.queue) or bool(self.queue.refused)
                )
            )
            if not self.queue and not self.queue.refused:
                self.indexing.publish(self.state, due=True)
                return continue_as_new.within_budget(self.state)  # the result fits a payload

    async def sleep_or_command(self, period: timedelta) -> None:
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: bool(self.queue), timeout=period)


def unavailable() -> CommandRejected:
    return CommandRejected(
        "the read model cannot be written (the database has been failing for an hour); "
        "nothing was applied: send the command again later",
        code="unavailable",
    )
