"""A run due to continue as new answers the updates it accepted and refuses those that arrive
while it drains, to be sent again: a refused update says `unavailable` and `resend`, applies
nothing, and the next run applies it once when it is sent again. A run that is due but
waiting for a command accepts the next update, and continues."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities.opportunity_activities import OpportunityActivities, Projected, ProjectionWrite
from sales.commands import AddRemark
from starter.client import OpportunitiesClient
from store import opportunities as store_opportunities
from tests.support.helpers import eventually, is_open, start_continuing_early
from worker import build_worker

pytestmark = pytest.mark.usefixtures("verified")


class HeldWrites(OpportunityActivities):
    """The real projection activity; while `hold` is set, each write waits for one release."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.hold = False
        self.held = 0
        self.releases = asyncio.Semaphore(0)

    @activity.defn(name="project_opportunity")
    async def project_opportunity(self, write: ProjectionWrite) -> Projected:
        if self.hold:
            self.held += 1
            await self.releases.acquire()
        return await super().project_opportunity(write)


async def test_an_update_racing_continue_as_new_is_refused_to_be_sent_again(
    client: Client, pool: asyncpg.Pool, task_queue: str, uid: str
) -> None:
    activities = HeldWrites(pool)
    async with build_worker(client, pool, task_queue, opportunity_activities=activities):
        opportunities = OpportunitiesClient(client, task_queue)
        opportunity_id = f"racing-{uid}"
        handle = await start_continuing_early(client, pool, uid, opportunity_id, task_queue, 40)
        await eventually(lambda: is_open(opportunities, opportunity_id))
        first_run = (await handle.describe()).run_id
        activities.hold = True

        def send(text: str) -> asyncio.Task[object]:
            command = AddRemark(text=text, request_id=text)
            return asyncio.create_task(opportunities.execute(opportunity_id, command))

        first = send("first")  # accepted and applied; its write waits
        await eventually(lambda: activities.held == 1, seconds=30)
        # Signals meanwhile take the run past its length: it is due to continue as new.
        while (await handle.describe()).raw_description.workflow_execution_info.history_length < 40:
            await handle.signal("add_remark", {"text": "queued"})
        second = send("second")  # a run that is due but not yet draining accepts it
        await eventually(lambda: _accepted(handle, 2), seconds=30)
        activities.releases.release()  # the first written: the run drains, the second's write waits
        await eventually(lambda: activities.held == 2, seconds=30)
        # Draining, the run refuses an update from any client, with nothing applied.
        with pytest.raises(WorkflowUpdateFailedError) as refused:  # at once, not accepted
            await asyncio.wait_for(
                handle.execute_update("add_remark", {"text": "third", "request_id": "third"}), 10
            )
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError)
        details = cause.details[0]
        assert details["code"] == "unavailable" and details["resend"] is True, details
        assert "continuing as new" in cause.message
        activities.hold = False
        activities.releases.release()
        await asyncio.wait_for(asyncio.gather(first, second), 30)
        # Sent again, it reaches the next run, and is applied once.
        again = await opportunities.execute(
            opportunity_id, AddRemark(text="third", request_id="third")
        )
        assert not again.duplicate
        assert (await handle.describe()).run_id != first_run, "continued as new"
        state = await opportunities.state(opportunity_id)
    remarks = await store_opportunities.list_remarks(pool, opportunity_id, limit=1000)
    texts = [remark.text for remark in remarks]
    assert [texts.count(t) for t in ("first", "second", "third")] == [1, 1, 1], texts
    assert state.remarks_added == len(texts)


async def _accepted(handle: WorkflowHandle[Any, Any], count: int) -> bool:
    """Whether the run's history has `count` accepted updates."""
    accepted = 0
    async for event in handle.fetch_history_events():
        accepted += event.HasField("workflow_execution_update_accepted_event_attributes")
    return accepted >= count


async def test_a_run_due_while_idle_continues_on_its_next_update(
    client: Client, pool: asyncpg.Pool, task_queue: str, uid: str
) -> None:
    """Updates one at a time: a run whose last task took it past its limit waits, due, for
    the next command; that update is accepted, and the run continues as new. Eleven limits in
    a row (a remark costs 11 events) put the crossing in every task of the cycle."""
    async with build_worker(client, pool, task_queue):
        opportunities = OpportunitiesClient(client, task_queue)

        async def one(limit: int) -> None:
            opportunity_id = f"idle-{uid}-{limit}"
            handle = await start_continuing_early(
                client, pool, f"{uid}-{limit}", opportunity_id, task_queue, limit
            )
            await eventually(lambda: is_open(opportunities, opportunity_id), seconds=30)
            first_run = (await handle.describe()).run_id
            for n in range(8):
                command = AddRemark(text=f"r{n}", request_id=f"r{n}")
                await opportunities.execute(opportunity_id, command, busy_seconds=20)
            assert (await handle.describe()).run_id != first_run, limit
            assert (await opportunities.state(opportunity_id)).remarks_added == 8

        await asyncio.gather(*(one(limit) for limit in range(40, 51)))
