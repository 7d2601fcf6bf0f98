"""One long-lived workflow per subscription: it supervises the delivery activity, which runs
on the delivery task queue and heartbeats, and starts it again when it hands back. Its history
grows by a few events per activity run (minutes), never per event delivered; it continues as
new after `RUNS_PER_RUN` of them. Pausing lets the activity return and the workflow wait for
`resume`; deleting ends it. The subscription's state is in the database, where the CLI
changes it; the signals only wake the workflow."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows import payloads
    from workflows.messages import NO_INPUT

WORKFLOW_ID_PREFIX = "subscription-"
RUNS_PER_RUN = 100

DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
"""A delivery activity that fails (the database unreachable, a worker lost) is started
again for as long as it takes; the events wait in the database meanwhile."""


class SubscriptionInput(BaseModel):
    subscription_id: str
    delivery_task_queue: str


def workflow_id(subscription_id: str) -> str:
    return WORKFLOW_ID_PREFIX + subscription_id


@workflow.defn(name="Subscription")
class SubscriptionWorkflow:
    def __init__(self) -> None:
        self.resumed = False
        self.status = "running"

    @workflow.run
    async def run(self, raw: RawValue = NO_INPUT) -> str:
        input = payloads.parse_start(raw, SubscriptionInput, "Subscription input")
        for _ in range(RUNS_PER_RUN):
            self.status = await workflow.execute_activity(
                "deliver_events",
                input.subscription_id,
                result_type=str,
                task_queue=input.delivery_task_queue,
                start_to_close_timeout=timedelta(minutes=15),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=DELIVERY_RETRY,
            )
            if self.status == "deleted":
                return "deleted"
            if self.status == "paused":
                self.resumed = False
                await workflow.wait_condition(lambda: self.resumed)
                self.status = "running"
        workflow.continue_as_new(input)

    @workflow.signal(name="resume")
    def resume(self) -> None:
        """The subscription was resumed or deleted: look at it again."""
        self.resumed = True

    @workflow.query(name="status")
    def current_status(self) -> str:
        return self.status
