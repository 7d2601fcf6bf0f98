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

Nothing is written by local activity in a run's first workflow task
(`effect_runner.FIRST_TASK_EVENTS`).

A write is bounded: a batch is written before its changes weigh `WRITE_BUDGET` (their
estimated size as JSON), as before it holds `MAX_BATCH` commands. A part of a write the read
model refuses as bad data (a value it cannot store) is kept in its `dead_letters` table by the
activity, which writes the rest: it never blocks later writes, and the workflow notes it in the
state (shown in its details, counted by a metric, reported by `verify`).

A write that fails for good (after retrying for an hour) leaves the commands applied: it is
kept, carried across continue-as-new, and written again after `RETRY_UNWRITTEN_AFTER`, with the
next changes. Meanwhile the run holds: it applies no more commands (they wait in the queue;
updates are refused as `unavailable`) and fires no timers, so what waits to be written stays
one write.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.opportunity_activities import ProjectionWrite
    from sales.opportunity import DeadLetter, Opportunity
    from workflows import effect_runner, telemetry
    from workflows.command_protocol import Changes

MAX_BATCH = 50
"""At most this many commands share one projection write."""
WRITE_BUDGET = 256 * 1024
"""A batch is written once its changes weigh this much (`Changes.weight`)."""
LOCAL_MAX_BATCH = 20
QUIET_MAX_BATCH = 2
QUIET_GAP = timedelta(seconds=1)
RETRY_UNWRITTEN_AFTER = timedelta(minutes=5)


class Projection:
    def __init__(self, unwritten: ProjectionWrite | None = None) -> None:
        self.unwritten = unwritten
        """A write that failed for good, written again later with the next changes."""
        self.retry_at: datetime | None = None
        """When to write `unwritten` again (set when a write fails; a continued run carrying
        one tries at once)."""
        if unwritten is not None:
            self.retry_at = workflow.now()

    @property
    def holding(self) -> bool:
        """Whether a write waits to be written again: the run applies no commands meanwhile."""
        return self.unwritten is not None

    async def write(
        self,
        state: Opportunity,
        changes: Changes,
        *,
        commands: int = 1,
        updates_waiting: bool = True,
        continuing: bool = False,
        idle_before: timedelta = timedelta(0),
    ) -> list[DeadLetter]:
        """Write what `commands` commands changed (`updates_waiting`: among them updates
        waiting for it; `continuing`: the run is due to continue as new; `idle_before`: how
        long no command had arrived before the last one), after any earlier write that
        failed. Returns the parts the read model refused."""
        now = workflow.now()
        if updates_waiting:
            local = commands <= LOCAL_MAX_BATCH or continuing
        else:
            local = commands <= QUIET_MAX_BATCH and idle_before >= QUIET_GAP
        first_task = workflow.info().get_current_history_length() <= effect_runner.FIRST_TASK_EVENTS
        local = local and not first_task
        write = ProjectionWrite(
            summary=state.summary(),
            history=changes.history,
            calendar=changes.calendar,
            remarks=changes.remarks,
            run_id=workflow.info().run_id,
        )
        if self.unwritten is not None:
            write = self.unwritten + write
        try:
            projected = await effect_runner.project(write, local=local)
        except effect_runner.FAILED_FOR_GOOD as error:
            code, _ = effect_runner.failure(error)
            self.unwritten = write
            self.retry_at = now + RETRY_UNWRITTEN_AFTER
            telemetry.count_effect_failure("project_opportunity", code)
            workflow.logger.error(
                "projection not written (%s); commands wait until it is written", code
            )
            return []
        self.unwritten = None
        self.retry_at = None
        for letter in projected.dead_letters:
            telemetry.count_dead_letter(letter.what.split(" ", 1)[0])
            workflow.logger.error("read model refused %s: %s", letter.what, letter.why)
        return projected.dead_letters
