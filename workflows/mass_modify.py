"""The `MassModify` workflow: change the stage (or owner) of many opportunities at once.

It freezes the matching ids when it starts (and, for a batch moving each opportunity to its
next stage, the stage each is in), then sends each opportunity its change as a signal
to that opportunity's own workflow (so every stage-change effect applies as for a manual
change), with the batch id as request id and its own workflow id as `reply_to`: each
opportunity signals back a `command_outcome` once the change is applied, acknowledged as
already applied, or rejected. A bounded number wait for their answer at a time.

Signals, not an activity calling an update per opportunity: a signal costs two events here and
nothing on the workers while it waits, where an update holds an activity slot and a workflow
task of the same workers.

Exactly once: the opportunity applies a request id once, so a resent signal, a crash or a
re-run of the same batch changes nothing twice. A closed or unknown opportunity fails the
signal at once and is reported as rejected. One that has not answered
`answer_timeout_seconds` after its change was sent is checked: not running (terminated) is
reported rejected; running, it is sent the change again, up to `resends` times, then
reported `stuck`, so every batch finishes. Cancelling stops sending; the changes already
sent finish and the report says what changed.

A batch moving each opportunity to its next stage sends each one `next_stage` guarded by the
stage it was selected in (`expected_stage`): it never moves one that has moved meanwhile
(rejected, `stage_changed`), and skips one without a next open stage (`no_next_stage`) or
closed (`closed`, also when its workflow has ended).

A batch trusts only its members: a `command_outcome` counts only when it answers the change
this batch sent (its request id is the batch id, its command the batch's) from an opportunity
whose answer it is waiting for. Before sending anything, the first run's freezing activity
refuses a batch id used for another request (`batch_exists`), an owner who is no user
(`unknown_user`) or a selection too large (`limit_reached`): the batch then fails at once
(`BatchRefused`, the code in its details, the message starting with it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.mass import Frozen, MassActivities, MemberCommand, Selection
    from runtime.workflow_ids import opportunity_workflow_id
    from sales.commands import ChangeOwner, ChangeStage, Command
    from sales.errors import CommandRejected
    from sales.registry import command_name
    from sales.results import COMMAND_OUTCOME, CommandOutcome
    from workflows import authorization, continue_as_new, payloads
    from workflows.effect_runner import RETRY, RIDE_OUT, TIMEOUT
    from workflows.mass_messages import ItemOutcome, MassModifyInput, Progress
    from workflows.messages import NO_INPUT

SKIPPED_CODES = {"already_in_stage", "already_owned"}
"""Rejections that mean the opportunity already is as the batch wants it."""
NEXT_STAGE_SKIPPED_CODES = {*SKIPPED_CODES, "no_next_stage", "closed"}
"""Rejections that mean a batch moving each to its next stage has nothing to do for the
opportunity: it has no next open stage, or it is won or lost."""


@workflow.defn(name="MassModify")
class MassModifyWorkflow:
    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._waiting: dict[str, tuple[datetime, int]] = {}
        """Opportunities sent their change and not yet answered: when it was last sent, and
        how often."""
        self._sending: list[asyncio.Task[None]] = []
        self._request: tuple[str, str] | None = None
        """The request id and command name of the change this batch sends (its answers
        carry them)."""
        self._batch: MassModifyInput | None = None
        self._stages: Mapping[str, str] = {}
        """The stage each member was selected in (a batch moving each to its next stage)."""

    @workflow.query(name="progress")
    def progress(self) -> Progress | None:
        return self._progress

    @workflow.signal(dynamic=True)
    def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """An opportunity's `command_outcome`, counted only when it answers this batch's
        change (request id and command) from an opportunity whose answer the batch waits
        for. Anything else is ignored with a warning naming no value it carried: other
        signals, payloads that do not decode or validate (whatever the error), answers to
        another request, answers from an opportunity not waiting (a second answer to a
        resent change, or a forged one). Each opportunity counts once."""
        try:
            if name != COMMAND_OUTCOME:
                raise CommandRejected("unknown signal", code="unknown_command")
            answer = CommandOutcome.model_validate(payloads.decode_one(args, COMMAND_OUTCOME))
        except (CommandRejected, ValueError, TypeError, RecursionError) as error:
            # ValueError covers pydantic's and json's errors, and integers too long to read.
            workflow.logger.warning("ignored a signal: %s", type(error).__name__)
            return
        if self._request is None or (answer.request_id, answer.command) != self._request:
            workflow.logger.warning("ignored a command_outcome: not this batch's request")
            return
        if answer.opportunity_id not in self._waiting:
            workflow.logger.warning("ignored a command_outcome: no change waits for its answer")
            return
        self._finish(self._item(answer))

    @workflow.run
    async def run(self, raw: RawValue = NO_INPUT) -> Progress:
        batch = payloads.parse_start(raw, MassModifyInput, "MassModify input")
        continued = workflow.info().continued_run_id is not None
        carried = (batch.remaining, batch.progress, batch.selected_stages)
        if not continued and any(value is not None for value in carried):
            raise payloads.invalid_input(
                "invalid MassModify input: remaining, progress and selected_stages are carried "
                "across continue-as-new only; a batch starts without them"
            )
        progress = batch.progress or Progress(batch_id=batch.batch_id)
        self._progress = progress
        self._batch = batch
        self._request = (batch.batch_id, command_name(_command(batch, None)))
        remaining = batch.remaining
        self._stages = batch.selected_stages or {}
        if remaining is None:
            frozen = await self._freeze(batch)
            remaining, self._stages = frozen.ids, frozen.stages or {}
            progress.total = len(remaining)
        pending = list(remaining)
        try:
            while pending or self._waiting:
                while pending and self._room(batch):
                    self._send(pending.pop(0))
                if not self._waiting:
                    break  # continue-as-new with what is pending
                await self._next_answers(batch)
        except asyncio.CancelledError:
            progress.canceled = True
            # What was sent is applied by each opportunity regardless: wait for those answers
            # so the report says exactly what changed.
            while self._waiting:
                await self._next_answers(batch)
            progress.finished = True
            return progress
        await self._all_sent()
        if pending:
            workflow.continue_as_new(batch.model_copy(update=self._carried(pending, progress)))
        progress.finished = True
        return progress

    def _carried(self, pending: list[str], progress: Progress) -> dict[str, object]:
        """What the next run carries: the members not sent yet, the progress, and for a batch
        moving each to its next stage the stages of those members only."""
        carried: dict[str, object] = {"remaining": pending, "progress": progress}
        if self._batch is not None and self._batch.to_next_stage:
            stages = self._stages
            carried["selected_stages"] = {i: stages[i] for i in pending if i in stages}
        return carried

    async def _freeze(self, batch: MassModifyInput) -> Frozen:
        """The frozen selection; the batch fails at once (non-retryable, nothing sent) if the
        activity refuses it, with the refusal's code and message."""
        selection = Selection(
            filters=batch.filters,
            ids=batch.ids,
            batch_id=batch.batch_id,
            request_hash=batch.request_hash(),
            owner=batch.owner,
            stages=batch.to_next_stage,
        )
        try:
            return await workflow.execute_activity_method(
                MassActivities.resolve_batch,
                selection,
                start_to_close_timeout=timedelta(minutes=5),
                schedule_to_close_timeout=RIDE_OUT,
                retry_policy=RETRY,
                summary="Check the batch and freeze the selection of opportunities",
            )
        except ActivityError as error:
            refused = _refusal(error)
            if refused is None:
                raise
            raise refused from None

    def _send(self, opportunity_id: str) -> None:
        sends = self._waiting.get(opportunity_id, (workflow.now(), 0))[1]
        self._waiting[opportunity_id] = (workflow.now(), sends + 1)
        self._sending = [task for task in self._sending if not task.done()]
        self._sending.append(asyncio.ensure_future(self._signal(opportunity_id)))

    async def _signal(self, opportunity_id: str) -> None:
        assert self._batch is not None
        command = _command(self._batch, self._stages.get(opportunity_id))
        workflow_id = opportunity_workflow_id(opportunity_id)
        handle = workflow.get_external_workflow_handle(workflow_id)
        token = await self._token(workflow_id, command)
        try:
            with authorization.signed_with(token):
                await handle.signal(command_name(command), command)
        except Exception:  # closed or unknown: the server refused the signal
            await self._explain([opportunity_id])

    async def _token(self, workflow_id: str, command: Command) -> str | None:
        """While authorization is on, a token for the member's command, signed by the
        worker's service key for the batch's starter (again for every resend)."""
        assert self._batch is not None
        if authorization.directory().mode_at(workflow.now()) == "off":
            return None
        [payload] = workflow.payload_converter().to_payloads([command])
        return await workflow.execute_activity(
            "sign_member_command",
            MemberCommand(sub=self._batch.by or "unknown", wid=workflow_id,
                          cmd=command_name(command), payload=json.loads(payload.data)),
            result_type=str,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )  # fmt: skip

    async def _next_answers(self, batch: MassModifyInput) -> None:
        """Wait for at least one more answer, or until the oldest unanswered change is
        overdue; then check the overdue ones."""
        done = self._progress.done if self._progress else 0
        timeout = timedelta(seconds=batch.answer_timeout_seconds)
        oldest = min(sent for sent, _ in self._waiting.values())
        try:
            await workflow.wait_condition(
                lambda: self._progress is not None and self._progress.done > done,
                timeout=max(oldest + timeout - workflow.now(), timedelta(milliseconds=1)),
            )
        except TimeoutError:
            overdue = [
                opportunity_id
                for opportunity_id, (sent, _) in sorted(self._waiting.items())
                if sent + timeout <= workflow.now()
            ]
            await self._explain(overdue, batch)

    async def _explain(
        self, opportunity_ids: list[str], batch: MassModifyInput | None = None
    ) -> None:
        """Report the ones no longer running as rejected, with the reason (a closed one as
        skipped by a batch moving each to its next stage); send the change again to those
        still running (applied at most once: same request id), or, once they had their
        resends, report them stuck."""
        reasons = await workflow.execute_activity_method(
            MassActivities.unreachable,
            opportunity_ids,
            start_to_close_timeout=TIMEOUT,
            schedule_to_close_timeout=RIDE_OUT,
            retry_policy=RETRY,
            summary=f"Check {len(opportunity_ids)} unanswered opportunities",
        )
        for opportunity_id in opportunity_ids:
            if opportunity_id not in self._waiting:
                continue  # answered meanwhile
            reason = reasons.get(opportunity_id)
            sends = self._waiting[opportunity_id][1]
            if reason is not None:
                skipped = reason.ended and self._next_stage()
                self._finish(
                    ItemOutcome(
                        opportunity_id=opportunity_id,
                        result="skipped" if skipped else "rejected",
                        reason=reason.reason,
                        code="closed",
                    )
                )
            elif batch is not None and sends > batch.resends:
                self._finish(
                    ItemOutcome(
                        opportunity_id=opportunity_id,
                        result="stuck",
                        reason=f"no answer to {sends} sends, "
                        f"{batch.answer_timeout_seconds:g} s each; its workflow is running",
                    )
                )
            else:
                self._send(opportunity_id)

    def _next_stage(self) -> bool:
        """Whether this batch moves each member to its next stage."""
        return self._batch is not None and self._batch.to_next_stage

    def _item(self, answer: CommandOutcome) -> ItemOutcome:
        """The outcome an opportunity's answer reports."""
        skipped = NEXT_STAGE_SKIPPED_CODES if self._next_stage() else SKIPPED_CODES
        return _item(answer, skipped)

    def _finish(self, outcome: ItemOutcome) -> None:
        self._waiting.pop(outcome.opportunity_id, None)
        assert self._progress is not None
        self._progress.record(outcome)

    async def _all_sent(self) -> None:
        while self._sending:
            await self._sending.pop()

    def _room(self, batch: MassModifyInput) -> bool:
        return len(self._waiting) < batch.concurrency and not self._rolling_over(batch)

    def _rolling_over(self, batch: MassModifyInput) -> bool:
        return continue_as_new.due(batch.continue_as_new_after_events)


def _command(batch: MassModifyInput, selected_stage: str | None) -> Command:
    """The change the batch sends a member; `selected_stage`: the stage it was selected in (a
    batch moving each to its next stage; None for one the read model had no row for)."""
    reply_to = workflow.info().workflow_id
    if batch.to_stage is not None:
        return ChangeStage(
            stage=batch.to_stage,
            cancel_open_activities=batch.cancel_open_activities,
            reason=batch.reason,
            source="mass",
            by=batch.by,
            request_id=batch.batch_id,
            reply_to=reply_to,
        )
    if batch.to_next_stage:
        return ChangeStage(
            next_stage=True,
            expected_stage=selected_stage,
            cancel_open_activities=batch.cancel_open_activities,
            reason=batch.reason,
            source="mass",
            by=batch.by,
            request_id=batch.batch_id,
            reply_to=reply_to,
        )
    assert batch.owner is not None
    return ChangeOwner(owner=batch.owner, by=batch.by, request_id=batch.batch_id, reply_to=reply_to)


def _refusal(error: ActivityError) -> ApplicationError | None:
    """The batch's failure for the activity's refusal (bad data, with a code): the message
    starts with the code, which the details carry too. Other failures fail it as they are."""
    cause = error.cause
    if not isinstance(cause, ApplicationError) or cause.type != "BadData" or not cause.details:
        return None
    details = cause.details[0]
    code = details.get("code") if isinstance(details, dict) else None
    if not isinstance(code, str):
        return None
    message = cause.message if cause.message.startswith(f"{code}: ") else f"{code}: {cause.message}"
    return ApplicationError(message, {"code": code}, type="BatchRefused", non_retryable=True)


def _item(answer: CommandOutcome, skipped_codes: set[str]) -> ItemOutcome:
    if answer.result == "applied":
        return ItemOutcome(opportunity_id=answer.opportunity_id, result="changed")
    if answer.result == "duplicate":
        return ItemOutcome(
            opportunity_id=answer.opportunity_id,
            result="skipped",
            reason="already applied by this batch",
        )
    return ItemOutcome(
        opportunity_id=answer.opportunity_id,
        result="skipped" if answer.code in skipped_codes else "rejected",
        reason=answer.reason,
        code=answer.code,
    )


@workflow.defn(name="MassModify", versioning_behavior=VersioningBehavior.PINNED)
class PinnedMassModifyWorkflow(MassModifyWorkflow):
    """The batch as a versioned worker runs it: pinned to the version that started it (it runs
    for minutes, so it finishes there and its code changes need no patch). An unversioned
    worker runs `MassModifyWorkflow`, since only a versioned one may declare a behaviour."""

    @workflow.run
    async def run(self, raw: RawValue = NO_INPUT) -> Progress:
        return await super().run(raw)
