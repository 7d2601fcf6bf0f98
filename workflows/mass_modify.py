"""The `MassModify` workflow: change the stage (or owner) of many opportunities at once.

It freezes the matching ids when it starts, then sends each opportunity its change through
that opportunity's own workflow, a bounded number at a time, with a request id derived from
the batch: every change applies exactly once, even after retries, crashes or a re-run of the
same batch. A closed opportunity or a stage its process lacks is reported, not fatal.
Cancelling stops sending; what was changed stays changed and the report says so.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.mass import MassActivities
    from sales.errors import describe_validation_error
    from workflows.effect_runner import RETRY
    from workflows.mass_messages import (
        ApplyChange,
        ItemOutcome,
        MassModifyInput,
        Progress,
        Selection,
    )


@workflow.defn(name="MassModify")
class MassModifyWorkflow:
    def __init__(self) -> None:
        self._progress: Progress | None = None

    @workflow.query(name="progress")
    def progress(self) -> Progress | None:
        return self._progress

    @workflow.run
    async def run(self, raw: Any) -> Progress:
        try:
            batch = MassModifyInput.model_validate(raw)
        except ValidationError as error:
            raise ApplicationError(
                describe_validation_error(error, "MassModify input"), type="InvalidInput"
            ) from None
        progress = batch.progress or Progress(batch_id=batch.batch_id)
        self._progress = progress
        remaining = batch.remaining
        if remaining is None:
            remaining = await workflow.execute_activity_method(
                MassActivities.resolve_batch,
                Selection(filters=batch.filters, ids=batch.ids),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RETRY,
                summary="Freeze the selection of opportunities",
            )
            progress.total = len(remaining)
        pending = list(remaining)
        running: dict[str, asyncio.Task[ItemOutcome]] = {}
        try:
            while pending or running:
                while pending and len(running) < batch.concurrency and not self._rolling_over():
                    opportunity_id = pending.pop(0)
                    running[opportunity_id] = asyncio.ensure_future(
                        self._change(batch, opportunity_id)
                    )
                if not running:
                    break  # continue-as-new with what is pending
                done, _ = await workflow.wait(list(running.values()), return_when="FIRST_COMPLETED")
                for task in done:
                    outcome = task.result()
                    del running[outcome.opportunity_id]
                    progress.record(outcome)
        except asyncio.CancelledError:
            progress.canceled = True
            # What is in flight finishes (each change is applied or not, never half).
            for opportunity_id, task in list(running.items()):
                try:
                    progress.record(await asyncio.shield(task))
                except Exception as error:  # pragma: no cover - reported, not fatal
                    progress.record(
                        ItemOutcome(
                            opportunity_id=opportunity_id, result="rejected", reason=str(error)
                        )
                    )
            progress.finished = True
            return progress
        if pending:
            workflow.continue_as_new(
                batch.model_copy(update={"remaining": pending, "progress": progress})
            )
        progress.finished = True
        return progress

    def _rolling_over(self) -> bool:
        return workflow.info().is_continue_as_new_suggested()

    async def _change(self, batch: MassModifyInput, opportunity_id: str) -> ItemOutcome:
        change = ApplyChange(
            batch_id=batch.batch_id,
            opportunity_id=opportunity_id,
            to_stage=batch.to_stage,
            cancel_open_activities=batch.cancel_open_activities,
            owner=batch.owner,
            by=batch.by,
        )
        what = f"stage {batch.to_stage!r}" if batch.to_stage else f"owner {batch.owner!r}"
        return await workflow.execute_activity_method(
            MassActivities.apply_change,
            change,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=5),
            retry_policy=RETRY,
            summary=f"Change {opportunity_id} to {what}",
        )
