"""Where and when the read model is written: one projection write per batch of commands (the
opportunity's row, its new history entries and remarks, the changes to its calendar
activities), always by an activity task, never by a local activity: a local activity's
result can reach the workflow in a later task than the one whose history records it (when a
query arrives while it runs, the SDK completes the task to answer it), and replay delivers it
earlier, which breaks the replay of a run that takes updates meanwhile
(docs/decisions/no-local-activities.md).

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
    from activities.opportunity_activities import (
        OpportunityActivities,
        Projected,
        ProjectionWrite,
    )
    from sales.opportunity import DeadLetter, Opportunity
    from sales.writes import Writes
    from workflows import effect_runner, telemetry

MAX_BATCH = 50
"""At most this many commands share one projection write."""
WRITE_BUDGET = 256 * 1024
"""A batch is written once its changes weigh this much (`Writes.weight`)."""
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

    async def write(self, state: Opportunity, changes: Writes) -> list[DeadLetter]:
        """Write what commands changed, after any earlier write that failed. Returns the parts
        the read model refused."""
        now = workflow.now()
        write = ProjectionWrite(
            summary=state.summary(),
            history=changes.history,
            calendar=changes.calendar,
            remarks=changes.remarks,
            left=changes.left,
            details=changes.details,
            events=changes.events,
            run_id=workflow.info().run_id,
        )
        if self.unwritten is not None:
            write = self.unwritten + write
        try:
            projected = await _project(write)
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


async def _project(write: ProjectionWrite) -> Projected:
    """Write the read model. Returns the parts the read model refused; raises one of
    `FAILED_FOR_GOOD` when it failed for good."""
    telemetry.count_effect("project_opportunity")
    method, summary = OpportunityActivities.project_opportunity, _projection_summary(write)
    return await effect_runner.execute(method, write, summary)


def _projection_summary(write: ProjectionWrite) -> str:
    if write.history:
        return f"Record: to {write.history[-1].to_stage}"
    if write.calendar:
        return f"Record: {len(write.calendar)} calendar"
    if write.remarks:
        return f"Record: remark {write.remarks[-1].seq}"
    return "Record"
