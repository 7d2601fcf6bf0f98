"""A run due to continue as new answers the updates it accepted and refuses those that arrive
meanwhile, to be sent again: a refused update says `unavailable` and `resend`, applies
nothing, and the next run applies it once when it is sent again."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities.opportunity_activities import OpportunityActivities, Projected, ProjectionWrite
from sales.commands import AddRemark
from starter.client import OpportunitiesClient
from store import opportunities as store_opportunities
from tests.support.helpers import eventually, is_open, start_continuing_early
from worker import build_worker

pytestmark = pytest.mark.usefixtures("verified")


class HeldWrites(OpportunityActivities):
    """The real projection activity; once `hold` is set, each write waits for `release`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.hold = False
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    @activity.defn(name="project_opportunity")
    async def project_opportunity(self, write: ProjectionWrite) -> Projected:
        if self.hold:
            self.waiting.set()
            await self.release.wait()
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
        # An update is accepted and applied; its write waits.
        accepted = asyncio.create_task(
            opportunities.execute(opportunity_id, AddRemark(text="first", request_id="first"))
        )
        await asyncio.wait_for(activities.waiting.wait(), 30)
        # Signals meanwhile take the run past its length: it is due to continue as new.
        while (await handle.describe()).raw_description.workflow_execution_info.history_length < 40:
            await handle.signal("add_remark", {"text": "queued"})
        # An update from any client is refused now, with nothing applied.
        with pytest.raises(WorkflowUpdateFailedError) as refused:  # at once, not accepted
            await asyncio.wait_for(
                handle.execute_update("add_remark", {"text": "second", "request_id": "second"}),
                10,
            )
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError)
        details = cause.details[0]
        assert details["code"] == "unavailable" and details["resend"] is True, details
        assert "continuing as new" in cause.message
        activities.release.set()
        assert (await accepted).message.startswith("remark")
        # Sent again, it reaches the next run, and is applied once.
        again = await opportunities.execute(
            opportunity_id, AddRemark(text="second", request_id="second")
        )
        assert not again.duplicate
        assert (await handle.describe()).run_id != first_run, "continued as new"
        state = await opportunities.state(opportunity_id)
    remarks = await store_opportunities.list_remarks(pool, opportunity_id, limit=1000)
    texts = [remark.text for remark in remarks]
    assert texts.count("second") == 1 and texts.count("first") == 1, texts
    assert state.remarks_added == len(texts)
