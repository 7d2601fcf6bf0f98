"""How a command's outcome reaches whoever asked: one path for every command, whether it was
applied, acknowledged as a duplicate or rejected.

- The update's result, if an update waits for it (a rejection as its error).
- The `command_outcome` signal to its `reply_to`: sent in the background, so the next command
  is not held up; `replies_sent` waits for them before a run ends, because the server drops a
  signal whose sender has already closed.
- The metric `opportunities_commands`, and one log line with the command's name and result
  or code (never the values it carried): at INFO for a rejection or a failed side effect, at
  DEBUG for the rest (a fleet applies thousands a minute; the metric counts them).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sales.errors import CommandRejected
    from sales.results import COMMAND_OUTCOME, CommandOutcome, CommandResult
    from workflows import telemetry
    from workflows.command_queue import CommandQueue, Refused
    from workflows.messages import QueuedCommand


class Delivery:
    def __init__(self, queue: CommandQueue) -> None:
        self._queue = queue
        self._replies: list[asyncio.Task[None]] = []

    def applied(self, opportunity_id: str, item: QueuedCommand, result: CommandResult) -> None:
        outcome: Literal["applied", "duplicate"] = "duplicate" if result.duplicate else "applied"
        self._queue.resolve(item, result)
        self._reply(opportunity_id, item, outcome)
        telemetry.count_command(item.name, outcome)
        failed = [a for a in result.actions if a.outcome == "failed"]
        if failed:  # the one line an expected failure logs (the activity's is at DEBUG)
            workflow.logger.info(
                "%s %s: %s",
                item.name,
                outcome,
                ", ".join(f"action {a.action_id} failed ({a.code})" for a in failed),
            )
        else:
            workflow.logger.debug("%s %s", item.name, outcome)

    def rejected(self, opportunity_id: str, item: QueuedCommand, rejected: CommandRejected) -> None:
        self._queue.resolve(item, rejected)
        self._reply(opportunity_id, item, "rejected", rejected)
        telemetry.count_command(item.name, "rejected")
        workflow.logger.info("%s rejected: %s", item.name, rejected.code)

    def refused(self, opportunity_id: str, refused: Refused) -> None:
        """Signals refused on arrival (the queue was full), however many: each with a
        `reply_to` answered there, counted, and one log line for them all."""
        for item in refused.replying():
            self._reply(opportunity_id, item, "rejected", item.rejection())
        for name, count in refused.by_command.items():
            telemetry.count_command(name, "rejected", count)
        workflow.logger.info("%d signals rejected: the queue was full", refused.count)

    async def replies_sent(self) -> None:
        while self._replies:
            await self._replies.pop()

    def _reply(
        self,
        opportunity_id: str,
        item: QueuedCommand,
        result: Literal["applied", "duplicate", "rejected"],
        rejected: CommandRejected | None = None,
    ) -> None:
        reply_to = item.envelope.reply_to
        if reply_to is None:
            return
        outcome = CommandOutcome(
            opportunity_id=opportunity_id,
            command=item.name[:200],
            request_id=item.envelope.request_id,
            result=result,
            reason=rejected.reason if rejected else "",
            code=rejected.code if rejected else None,
        )
        self._replies = [task for task in self._replies if not task.done()]
        self._replies.append(asyncio.ensure_future(_send(reply_to, outcome)))


async def _send(reply_to: str, outcome: CommandOutcome) -> None:
    try:
        await workflow.get_external_workflow_handle(reply_to).signal(COMMAND_OUTCOME, outcome)
    except Exception as error:  # the asker is gone (finished, cancelled): nobody to tell
        workflow.logger.warning(
            "could not report %s to %s: %s", outcome.command, reply_to, type(error).__name__
        )
