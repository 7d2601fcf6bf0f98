"""The typed Python client for backend services: start opportunities, send commands, read state.

One method per command; each also takes the common fields `request_id` and `by`. Commands go
through Temporal only (updates by default, so the caller learns the result;
signals for fire-and-forget). A rejected command raises `CommandRejected` with the workflow's
own explanation.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from runtime import settings
from runtime.opportunity_runs import unreachable_reason
from runtime.temporal import connect
from runtime.workflow_ids import mass_modify_workflow_id, opportunity_workflow_id
from sales.commands import (
    ActionOverrides,
    ActivityDetails,
    AddAction,
    AddRemark,
    Assign,
    ChangeOwner,
    ChangeStage,
    Command,
    CompleteActions,
    DeleteAction,
    DeleteActivity,
    DeleteOpportunity,
    ModifyAction,
    ModifyActivity,
    MoveProcess,
    PerformActions,
    RecordExternalStatus,
    RecordOutcome,
    UpdateDetails,
)
from sales.errors import REJECTION_CODES, CommandRejected, without_code
from sales.opportunity import HistoryEntry, Opportunity, StartOpportunity
from sales.process import Action
from sales.registry import command_name
from sales.results import CommandResult
from starter.client.signing import Signer, SigningInterceptor
from workflows.mass_messages import MassModifyInput, Progress
from workflows.messages import OpportunityInput, Reopen

WORKFLOW_TYPE = "Opportunity"
T = TypeVar("T")


def _resendable(error: RPCError) -> bool:
    """Refusals of an update or a signal that mean "not now", so the command was not applied
    and sent again lands later: too many in flight (RESOURCE_EXHAUSTED), aborted by a
    continue-as-new or a restarting server (UNAVAILABLE), or "workflow not ready": the
    workflow task carrying it failed before accepting it (for one, the server force-closes a
    task that lets more than 100 signals pile up)."""
    if error.status in (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE):
        return True
    details = error.grpc_status.details if error.status == RPCStatusCode.FAILED_PRECONDITION else []
    return any(detail.type_url.endswith("WorkflowNotReadyFailure") for detail in details)


def _update_resendable(error: RPCError) -> bool:
    """A refused update to send again: a refusal for now, or a call the connection cancelled
    (its answer lost, say when the run continued as new under a storm). Sending it again is
    safe: it carries a request id, so a command already applied is acknowledged, not applied
    twice."""
    return error.status == RPCStatusCode.CANCELLED or _resendable(error)


SIGNAL_LIMIT = "exceeded workflow execution limit for signal events"
"""The server's refusal of a signal past a run's limit (10,000 by default; INVALID_ARGUMENT,
with no details to tell it by). A run refuses it only when a storm kept it from continuing
as new; once the storm eases the run continues, and the next run takes signals again."""


def _signal_resendable(error: RPCError) -> bool:
    """A refused signal to send again: a refusal for now, or a run past its signal limit."""
    limit = error.status == RPCStatusCode.INVALID_ARGUMENT and error.message == SIGNAL_LIMIT
    return limit or _resendable(error)


def static_summary(
    contact: str, process_id: str | None, name: str, *, reopened_in: str | None = None
) -> str:
    """The one line the Temporal UI shows for an opportunity's run: who, which process, what."""
    summary = f"{contact} · {process_id or 'default process'} · {name}"
    return f"{summary} (reopened in {reopened_in})" if reopened_in else summary


def static_details(
    contact: str,
    contact_id: str,
    owner: str | None,
    process: str,
    by: str | None,
    *,
    reopened_in: str | None = None,
) -> str:
    """What the Temporal UI's details box shows for a run (markdown): whose opportunity, who
    owns it, which process, and when and by whom it was opened."""
    now = datetime.now(UTC)
    opened = f"reopened in {reopened_in}" if reopened_in else "opened"
    return "\n".join([
        f"**Contact:** {contact} ({contact_id})" if contact != contact_id else
        f"**Contact:** {contact_id}",
        f"**Owner:** {owner or '-'}",
        f"**Process:** {process}",
        f"**{opened.capitalize()}:** {now:%Y-%m-%d %H:%M} UTC" + (f" by {by}" if by else ""),
    ])  # fmt: skip


class OpportunityNotFound(Exception):
    pass


WORKER_GRACE_SECONDS = 3.0
QUERY_WAIT = timedelta(seconds=5)
QUERY_SECONDS = 30.0


class StartFailed(Exception):
    """The opportunity could not be opened (unknown contact, process or stage, bad input, an
    id used before); `code` says which, when the run said."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class NoWorker(Exception):
    """No worker polls the task queue: nothing would carry out a start, command or query."""


class OpportunitiesClient:
    """Commands, queries and starts, through Temporal only (no database): what a backend
    service needs to drive opportunities. Reading the read model is `ReadModel`'s."""

    def __init__(
        self, client: Client, task_queue: str | None = None, signer: Signer | None = None
    ) -> None:
        """`signer`: sign every command and start with this key (header `sales-authz`)."""
        if signer is not None:
            config = client.config()
            config["interceptors"] = [
                *config["interceptors"],
                SigningInterceptor(
                    signer, client.namespace, client.data_converter.payload_converter
                ),
            ]
            client = Client(**config)
        self.temporal = client
        self.task_queue = task_queue or settings.task_queue()

    @classmethod
    async def connect(cls, signer: Signer | None = None) -> OpportunitiesClient:
        return cls(await connect(), signer=signer)

    def handle(self, opportunity_id: str, run_id: str | None = None) -> WorkflowHandle[Any, Any]:
        """The opportunity's workflow: its latest run, or the run `run_id`."""
        return self.temporal.get_workflow_handle(
            opportunity_workflow_id(opportunity_id), run_id=run_id
        )

    async def create(
        self,
        contact_id: str,
        *,
        opportunity_id: str | None = None,
        process_id: str | None = None,
        name: str | None = None,
        owner: str | None = None,
        stage: str | None = None,
        by: str | None = None,
        contact_name: str | None = None,
        process_label: str | None = None,
        wait_seconds: float = 30.0,
        **value: Any,
    ) -> Opportunity:
        """Start an opportunity and wait until it is open; raise `StartFailed` if it cannot be.
        `contact_name` and `process_label` (say, the default process's id and version) are
        for what the Temporal UI shows of it (else the contact's id, the process id given).
        `value`: `amount`, `currency`, `expected_close_date`, `probability`,
        `forecast_category`, `include_in_forecast` (`StartOpportunity`)."""
        start = StartOpportunity(
            opportunity_id=opportunity_id or f"opp-{uuid.uuid4().hex[:12]}",
            contact_id=contact_id,
            process_id=process_id,
            name=name,
            owner=owner,
            stage=stage,
            by=by,
            **value,
        )
        await self._needs_worker()  # else the id would be used up by a run nobody opens
        try:
            handle = await self.temporal.start_workflow(
                WORKFLOW_TYPE,
                start.model_dump(mode="json", exclude_none=True),  # the UI shows it: no nulls
                id=opportunity_workflow_id(start.opportunity_id),
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                static_summary=static_summary(
                    contact_name or contact_id,
                    process_label or process_id,
                    name or start.opportunity_id,
                ),
                static_details=static_details(
                    contact_name or contact_id,
                    contact_id,
                    owner,
                    process_label or process_id or "the default process",
                    by,
                ),
            )
        except WorkflowAlreadyStartedError:
            raise StartFailed(f"opportunity {start.opportunity_id!r} already exists") from None
        return await self._wait_open(handle, wait_seconds)

    async def has_worker(self, task_queue: str | None = None) -> bool:
        """Whether a worker polled the task queue (this client's, or `task_queue`) for workflow
        tasks lately. A call the connection cancels or finds unavailable for now is asked
        again (twice at most)."""
        request = DescribeTaskQueueRequest(
            namespace=self.temporal.namespace,
            task_queue=TaskQueue(name=task_queue or self.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        for attempt in range(3):
            try:
                response = await self.temporal.workflow_service.describe_task_queue(
                    request, retry=True
                )
                return bool(response.pollers)
            except RPCError as error:
                passing = error.status in (RPCStatusCode.CANCELLED, RPCStatusCode.UNAVAILABLE)
                if not passing or attempt == 2:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _needs_worker(self, task_queue: str | None = None) -> None:
        """Raise `NoWorker` unless a worker polls the task queue (this client's, or
        `task_queue`), or starts polling within `WORKER_GRACE_SECONDS` (a worker that has just
        started)."""
        deadline = asyncio.get_running_loop().time() + WORKER_GRACE_SECONDS
        while not await self.has_worker(task_queue):
            if asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)
                continue
            raise NoWorker(
                f"no worker is polling task queue {task_queue or self.task_queue!r}: start one "
                "(`make run`, or `opportunities-worker`); nothing was sent"
            )

    async def _wait_open(
        self,
        handle: WorkflowHandle[Any, Any],
        wait_seconds: float,
        ready: Callable[[Opportunity], bool] = lambda state: True,
    ) -> Opportunity:
        """Poll the new run until its state is `ready` and the activities created on entering
        its stage are linked; raise `StartFailed` if it ends first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            description = await handle.describe()
            if description.status == WorkflowExecutionStatus.FAILED:
                try:
                    await handle.result()
                except WorkflowFailureError as error:
                    raise StartFailed(*_failure(error)) from None
            if description.status in (
                WorkflowExecutionStatus.RUNNING,
                WorkflowExecutionStatus.COMPLETED,
            ):
                try:
                    state = await handle.query("state", result_type=Opportunity)
                except (WorkflowQueryFailedError, RPCError):  # still being opened
                    state = None
                if state is not None and ready(state) and _entered(state):
                    return state
                if state is not None and description.status == WorkflowExecutionStatus.COMPLETED:
                    reason = state.rejected[-1].reason if state.rejected else "it ended"
                    raise StartFailed(f"{handle.id} did not open: {reason}")
            if loop.time() > deadline:
                raise StartFailed(
                    f"{handle.id} did not open within {wait_seconds:.0f}s: is a worker polling "
                    f"task queue {self.task_queue!r}?"
                )
            await asyncio.sleep(0.1)

    async def execute(
        self, opportunity_id: str, command: Command, *, busy_seconds: float = 60.0
    ) -> CommandResult:
        """Send a command as an update and return its result.

        The server admits a bounded number of updates in flight per workflow (10 by default)
        and aborts those not yet accepted when a run continues as new, and the opportunity
        refuses a command while its queue is full (`resend: true`); each is sent again with
        backoff for up to `busy_seconds`. The command carries a request id (one is made when
        none is given), so a resend can never apply it twice.
        """
        if command.request_id is None:
            command = command.model_copy(update={"request_id": f"client-{uuid.uuid4().hex}"})
        update = self.handle(opportunity_id).execute_update
        loop = asyncio.get_running_loop()
        deadline = loop.time() + busy_seconds
        delay = 0.05
        while True:
            try:
                return await self._resending(
                    opportunity_id,
                    lambda: update(command_name(command), command, result_type=CommandResult),
                    _update_resendable,
                    max(deadline - loop.time(), 0.0),
                )
            except WorkflowUpdateFailedError as error:
                cause = error.cause
                if not isinstance(cause, ApplicationError):
                    raise
                if _says_resend(cause) and loop.time() < deadline:
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 1.0)
                    continue
                code = _code(cause)
                raise CommandRejected(without_code(cause.message, code), code=code) from None

    async def signal(
        self, opportunity_id: str, command: Command, *, busy_seconds: float = 60.0
    ) -> None:
        """Send a command as a signal: fire-and-forget; rejections land in `state.rejected`.
        A signal the server refuses for now (the run is continuing as new, busy, or past its
        signal limit under a storm) was not recorded, and is sent again with backoff for up
        to `busy_seconds`: a storm slows down instead of losing signals."""
        signal = self.handle(opportunity_id).signal
        await self._resending(
            opportunity_id,
            lambda: signal(command_name(command), command),
            _signal_resendable,
            busy_seconds,
        )

    async def _resending(
        self,
        opportunity_id: str,
        send: Callable[[], Awaitable[T]],
        resendable: Callable[[RPCError], bool],
        busy_seconds: float,
    ) -> T:
        """`send()`, sent again with jittered backoff while the server refuses it for now
        (`resendable`), for up to `busy_seconds`; any other refusal translated."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + busy_seconds
        delay = 0.05
        while True:
            try:
                return await send()
            except RPCError as error:
                if resendable(error) and loop.time() < deadline:
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 1.0)
                    continue
                raise await self._translate(error, opportunity_id) from None

    async def reopen(
        self, opportunity_id: str, stage: str, *, by: str | None = None, wait_seconds: float = 30.0
    ) -> Opportunity:
        """Open a won or lost opportunity again in `stage`: a new run of the same workflow id,
        which loads the state the opportunity's real run ended with. `CommandRejected` with
        the run's code when it refuses (open, deleted, unknown, a closing or unknown stage)."""
        start = OpportunityInput(opportunity_id=opportunity_id, reopen=Reopen(stage=stage, by=by))
        try:
            new = await self.temporal.start_workflow(
                WORKFLOW_TYPE,
                start.model_dump(mode="json", exclude_none=True),
                id=opportunity_workflow_id(opportunity_id),
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                static_summary=f"{opportunity_id} (reopened in {stage})",
                static_details=f"**Reopened in:** {stage}" + (f" by {by}" if by else ""),
            )
        except WorkflowAlreadyStartedError:
            raise CommandRejected(
                f"opportunity {opportunity_id!r} is open; only a won or lost one can be reopened",
                code="not_closed",
            ) from None
        try:
            return await self._wait_open(
                new, wait_seconds, ready=lambda state: state.status == "open"
            )
        except StartFailed as failed:
            if failed.code is not None:
                raise CommandRejected(str(failed), code=failed.code) from None
            raise

    async def change_stage(
        self,
        opportunity_id: str,
        stage: str | None = None,
        *,
        next_stage: bool = False,
        expected_stage: str | None = None,
        cancel_open_activities: bool | None = None,
        overrides: dict[str, ActivityDetails] | None = None,
        reason: str | None = None,
        **common: Any,
    ) -> CommandResult:
        """Move to `stage`, or to the next one (`next_stage=True`); `expected_stage`: only
        while it is in this stage; `cancel_open_activities` of the stage left (default the
        process's `cancel_on_advance`); `overrides`: per action, the details of the
        activities the new stage creates."""
        command = ChangeStage(
            stage=stage,
            next_stage=next_stage,
            expected_stage=expected_stage,
            cancel_open_activities=cancel_open_activities,
            overrides=overrides or {},
            reason=reason,
            **common,
        )
        return await self.execute(opportunity_id, command)

    async def record_external_status(
        self, opportunity_id: str, source: str, reference: str, status: str, **common: Any
    ) -> CommandResult:
        """Another system's status for the opportunity (its case or policy `reference`)."""
        command = RecordExternalStatus(source=source, reference=reference, status=status, **common)
        return await self.execute(opportunity_id, command)

    async def update_details(self, opportunity_id: str, **fields: Any) -> CommandResult:
        """Set the details given (`amount`, `currency`, `expected_close_date`, `probability`,
        `forecast_category`, `include_in_forecast`, `name`); one given as None is cleared;
        `request_id`, `by` too."""
        return await self.execute(opportunity_id, UpdateDetails(**fields))

    async def perform_actions(
        self,
        opportunity_id: str,
        action_ids: list[str],
        *,
        overrides: dict[str, ActionOverrides] | None = None,
        **common: Any,
    ) -> CommandResult:
        """Perform actions; `overrides` per action: a calendar activity's details (due,
        duration, subject, assignee, notes, location) or a letter's `method`."""
        command = PerformActions(action_ids=action_ids, overrides=overrides or {}, **common)
        return await self.execute(opportunity_id, command)

    async def modify_activity(
        self, opportunity_id: str, activity_id: str, **details: Any
    ) -> CommandResult:
        """Change an active calendar activity's details (`due`, `duration_minutes`,
        `subject`, `assignee`, `notes`, `location`; `request_id`, `by` too)."""
        return await self.execute(
            opportunity_id, ModifyActivity(activity_id=activity_id, **details)
        )

    async def complete_actions(
        self,
        opportunity_id: str,
        action_ids: list[str],
        *,
        outcome: str | None = None,
        notes: str | None = None,
        stage: str | None = None,
        cancel_open_activities: bool | None = None,
        overrides: dict[str, ActivityDetails] | None = None,
        **common: Any,
    ) -> CommandResult:
        """Mark Complete; with `stage`, move on too (`cancel_open_activities`: of the stage
        left, default the process's `cancel_on_advance`; `overrides`: details of the
        activities the new stage creates)."""
        return await self.execute(
            opportunity_id,
            CompleteActions(
                action_ids=action_ids,
                outcome=outcome,
                notes=notes,
                stage=stage,
                cancel_open_activities=cancel_open_activities,
                overrides=overrides or {},
                **common,
            ),
        )

    async def add_action(
        self, opportunity_id: str, stage: str, action: dict[str, Any] | Action, **common: Any
    ) -> CommandResult:
        return await self.execute(
            opportunity_id, AddAction.model_validate({"stage": stage, "action": action, **common})
        )

    async def modify_action(
        self, opportunity_id: str, action_id: str, changes: dict[str, Any], **common: Any
    ) -> CommandResult:
        return await self.execute(
            opportunity_id, ModifyAction(action_id=action_id, changes=changes, **common)
        )

    async def delete_action(
        self, opportunity_id: str, action_id: str, **common: Any
    ) -> CommandResult:
        return await self.execute(opportunity_id, DeleteAction(action_id=action_id, **common))

    async def record_outcome(
        self,
        opportunity_id: str,
        activity_id: str,
        *,
        outcome: str | None = None,
        notes: str | None = None,
        stage: str | None = None,
        cancel_open_activities: bool | None = None,
        overrides: dict[str, ActivityDetails] | None = None,
        **common: Any,
    ) -> CommandResult:
        return await self.execute(
            opportunity_id,
            RecordOutcome(
                activity_id=activity_id,
                outcome=outcome,
                notes=notes,
                stage=stage,
                cancel_open_activities=cancel_open_activities,
                overrides=overrides or {},
                **common,
            ),
        )

    async def delete_activity(
        self, opportunity_id: str, activity_id: str, **common: Any
    ) -> CommandResult:
        return await self.execute(opportunity_id, DeleteActivity(activity_id=activity_id, **common))

    async def _translate(self, error: RPCError, opportunity_id: str) -> Exception:
        """A clear error for a command that did not reach a running opportunity."""
        if error.status != RPCStatusCode.NOT_FOUND:
            return error
        reason = await self.unreachable(opportunity_id)
        if reason is None:
            return error  # running again by now (a new run): the caller may retry
        if reason.startswith("no opportunity"):
            return OpportunityNotFound(reason)
        return CommandRejected(reason, code="closed")

    async def unreachable(self, opportunity_id: str) -> str | None:
        """Why commands cannot reach this opportunity now, or None when it is running."""
        return await unreachable_reason(self.temporal, opportunity_id)

    async def assign(
        self, opportunity_id: str, role: str, user: str, **common: Any
    ) -> CommandResult:
        """Give `role` on the opportunity's team to `user`."""
        return await self.execute(opportunity_id, Assign(role=role, user=user, **common))

    async def move_process(
        self, opportunity_id: str, process_id: str, stage: str, **common: Any
    ) -> CommandResult:
        """Move an open opportunity to `stage` of another process's latest version."""
        return await self.execute(
            opportunity_id, MoveProcess(process_id=process_id, stage=stage, **common)
        )

    async def add_remark(self, opportunity_id: str, text: str, **common: Any) -> CommandResult:
        return await self.execute(opportunity_id, AddRemark(text=text, **common))

    async def delete_opportunity(
        self, opportunity_id: str, reason: str, **common: Any
    ) -> CommandResult:
        """End the opportunity as `deleted` (its active calendar activities canceled)."""
        return await self.execute(opportunity_id, DeleteOpportunity(reason=reason, **common))

    async def change_owner(self, opportunity_id: str, owner: str, **common: Any) -> CommandResult:
        return await self.execute(opportunity_id, ChangeOwner(owner=owner, **common))

    async def start_mass_modify(self, batch: MassModifyInput) -> WorkflowHandle[Any, Progress]:
        """Start a `MassModify` batch (id `mass-modify-<batch_id>`); running the same batch
        again (the same input) applies nothing twice. A batch id used for another input, or
        an owner who is no user, fails the batch at once (`BatchRefused`: see
        `batch_refusal`)."""
        return await self.temporal.start_workflow(
            "MassModify",
            batch,
            id=mass_modify_workflow_id(batch.batch_id),
            task_queue=self.task_queue,
            result_type=Progress,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"Mass modification {batch.batch_id}",
        )

    async def mass_progress(self, batch_id: str) -> Progress:
        handle = self.temporal.get_workflow_handle(
            mass_modify_workflow_id(batch_id), result_type=Progress
        )
        try:
            progress = await handle.query("progress", result_type=Progress | None)  # type: ignore[arg-type]
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise OpportunityNotFound(f"no mass modification {batch_id!r}") from None
            raise
        if progress is None or (progress.total == 0 and not progress.finished):
            # Not under way yet, or refused: a refused batch fails before it freezes.
            if (await handle.describe()).status == WorkflowExecutionStatus.FAILED:
                try:
                    await handle.result()
                except WorkflowFailureError as error:
                    raise batch_refusal(error) from None
        return progress or Progress(batch_id=batch_id)

    async def state(self, opportunity_id: str, *, run_id: str | None = None) -> Opportunity:
        """The opportunity's state, from its latest run or from `run_id` (a closed
        opportunity's real run, which the read model names: a start refused over its id
        made a later run)."""
        return await self._query(opportunity_id, "state", Opportunity, run_id)

    async def history(
        self, opportunity_id: str, *, run_id: str | None = None
    ) -> list[HistoryEntry]:
        """Its newest history entries (the read model has every one), as `state`."""
        return await self._query(opportunity_id, "history", list[HistoryEntry], run_id)

    async def _query(
        self, opportunity_id: str, name: str, result_type: type[T], run_id: str | None = None
    ) -> T:
        """A query, asked again while it times out (a busy worker), for up to
        `QUERY_SECONDS`; `NoWorker` at the first timeout if no worker polls the task queue of
        the opportunity's workflow."""
        handle = self.handle(opportunity_id, run_id)
        deadline = asyncio.get_running_loop().time() + QUERY_SECONDS
        while True:
            try:
                return await handle.query(name, result_type=result_type, rpc_timeout=QUERY_WAIT)
            except RPCError as error:
                timed_out = (
                    error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
                    or "timeout" in error.message.lower()
                )
                if not timed_out:
                    raise await self._translate(error, opportunity_id) from None
                await self._needs_worker((await handle.describe()).task_queue)
                if asyncio.get_running_loop().time() > deadline:
                    raise


def _entered(state: Opportunity) -> bool:
    """Whether the activities created on entering the current stage are linked already."""
    created = state.history[-1].created_activities if state.history else []
    return all(state.find_calendar_activity(activity_id) for activity_id in created)


NOT_PROCESSED = "Workflow Update is rejected because it wasn't processed by worker"
"""The server's refusal of an update that a workflow task carried but did not take (the run
continued as new in that task): never applied, so it is sent again, to the next run."""


def _says_resend(error: ApplicationError) -> bool:
    """Whether an update's refusal says "not now": `resend: true` in its details, or the
    server's refusal of an update the run never took (`NOT_PROCESSED`)."""
    details = error.details[0] if error.details else None
    if error.message.startswith(NOT_PROCESSED):
        return True
    return isinstance(details, dict) and details.get("resend") is True


def _code(error: ApplicationError) -> str:
    """The rejection code an update's error carries (`invalid_payload` if none)."""
    details = error.details[0] if error.details else None
    code = details.get("code") if isinstance(details, dict) else None
    return code if code in REJECTION_CODES else "invalid_payload"


def batch_refusal(error: WorkflowFailureError) -> Exception:
    """A failed `MassModify` as `CommandRejected` when it was refused with a code
    (`batch_exists`, `unknown_user`, `limit_reached`, `invalid_payload`); else the error."""
    cause = error.cause
    details = cause.details[0] if isinstance(cause, ApplicationError) and cause.details else None
    code = details.get("code") if isinstance(details, dict) else None
    if isinstance(cause, ApplicationError) and code in REJECTION_CODES:
        return CommandRejected(without_code(cause.message, code), code=code)
    return error


def _failure(error: WorkflowFailureError) -> tuple[str, str | None]:
    """A failed start's reason and code."""
    cause: BaseException | None = error.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    if not isinstance(cause, ApplicationError):
        return str(error), None
    details = cause.details[0] if cause.details else None
    code = details.get("code") if isinstance(details, dict) else None
    code = code if code in REJECTION_CODES else None
    return (without_code(cause.message, code) if code else cause.message), code
