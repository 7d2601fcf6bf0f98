"""Where and when the read model is written: one projection write per batch of commands (the
opportunity's row, its new history entries, the changes to its calendar activities), by an
activity task or by a local activity.

A batch answering updates, of up to `LOCAL_MAX_BATCH` commands, writes by local activity,
inside the workflow task that applied it, so the updates are answered without an activity
round trip; so does a batch of at most `QUIET_MAX_BATCH` signals (an opportunity taking a
command now and then, the common case), and so do the opening, a reopening and a stage
timer. A local activity holds its workflow task open while the server buffers what arrives
meanwhile, and the server fails a task during which more than 100 events pile up: so larger
batches of signals only, which nobody waits for (a storm of them), use an activity task,
which lets the server deliver commands as they come. Once continuing as new is due, a batch
answering updates writes by local activity whatever its size, so that the run applies,
answers and continues in one task even under a steady stream of updates.

A write that fails for good (after its retries) leaves the commands applied: it is kept,
carried across continue-as-new, and written with the next write or after
`RETRY_UNWRITTEN_AFTER`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.opportunity_activities import ProjectionWrite
    from sales.opportunity import Opportunity
    from workflows import effect_runner, telemetry
    from workflows.command_protocol import Changes

LOCAL_MAX_BATCH = 20
QUIET_MAX_BATCH = 2
RETRY_UNWRITTEN_AFTER = timedelta(minutes=5)


class Projection:
    def __init__(self, unwritten: ProjectionWrite | None = None) -> None:
        self.unwritten = unwritten
        """A write that failed for good, written with the next one."""
        self.retry_at: datetime | None = None

    async def write(
        self,
        state: Opportunity,
        changes: Changes,
        *,
        commands: int = 1,
        updates_waiting: bool = True,
        continuing: bool = False,
    ) -> None:
        """Write what `commands` commands changed (`updates_waiting`: among them updates
        waiting for it; `continuing`: the run is due to continue as new), with any earlier
        write that failed."""
        if updates_waiting:
            local = commands <= LOCAL_MAX_BATCH or continuing
        else:
            local = commands <= QUIET_MAX_BATCH
        write = ProjectionWrite(
            summary=state.summary(), history=changes.history, calendar=changes.calendar
        )
        if self.unwritten is not None:
            write = self.unwritten + write
        try:
            await effect_runner.project(write, local=local)
        except ActivityError as error:
            code, _ = effect_runner.failure(error)
            self.unwritten = write
            self.retry_at = workflow.now() + RETRY_UNWRITTEN_AFTER
            telemetry.count_effect_failure("project_opportunity", code)
            workflow.logger.error("projection not written (%s); kept for the next write", code)
        else:
            self.unwritten = None
            self.retry_at = None
