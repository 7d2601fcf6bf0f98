"""Where and when the read model is written: one projection write per batch of commands (the
opportunity's row, its new history entries, the changes to its calendar activities), by an
activity task or by a local activity.

A batch answering updates, of up to `LOCAL_MAX_BATCH` commands, writes by local activity,
inside the workflow task that applied it, so the updates are answered without an activity
round trip; so does a batch of at most `QUIET_MAX_BATCH` signals when no command had arrived
for `QUIET_GAP` before the last one (an opportunity taking a command now and then, the common
case of a fleet), and so do the opening, a reopening and a stage timer. A local activity
holds its workflow task open while the server buffers what arrives meanwhile, and the server
fails a task during which more than 100 events pile up, after which the next task replays
the run while more pile up: so the other batches of signals only, which nobody waits for (a
stream or a storm of them, whose signals come less than `QUIET_GAP` apart), use an activity
task, which lets the server deliver commands as they come. Once continuing as
new is due, a batch answering updates writes by local activity whatever its size, so that the
run applies, answers and continues in one task even under a steady stream of updates.

Nothing is written by local activity in a run's first workflow task (`FIRST_TASK_EVENTS`): a
query that arrives before that task completes is answered with it, the SDK then completes
the task while the local activity still runs, and on replay the run's first steps see another
time and history length, or fail as nondeterministic (a client that creates an opportunity
queries it as it opens).

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
QUIET_GAP = timedelta(seconds=1)
RETRY_UNWRITTEN_AFTER = timedelta(minutes=5)
FIRST_TASK_EVENTS = 3
"""The history length during a run's first workflow task (started, task scheduled, task
started)."""


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
        idle_before: timedelta = timedelta(0),
    ) -> None:
        """Write what `commands` commands changed (`updates_waiting`: among them updates
        waiting for it; `continuing`: the run is due to continue as new; `idle_before`: how
        long no command had arrived before the last one), with any earlier write that
        failed."""
        now = workflow.now()
        if updates_waiting:
            local = commands <= LOCAL_MAX_BATCH or continuing
        else:
            local = commands <= QUIET_MAX_BATCH and idle_before >= QUIET_GAP
        local = local and workflow.info().get_current_history_length() > FIRST_TASK_EVENTS
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
            self.retry_at = now + RETRY_UNWRITTEN_AFTER
            telemetry.count_effect_failure("project_opportunity", code)
            workflow.logger.error("projection not written (%s); kept for the next write", code)
        else:
            self.unwritten = None
            self.retry_at = None
