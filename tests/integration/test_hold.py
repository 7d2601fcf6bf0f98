"""What a run carries while its read model cannot be written stays one write: a write that
fails for good (after its hour of retries) holds the run, which applies no more commands
(signals wait, updates are refused `unavailable`) and fires no timers until the write lands.
The wait between tries is shortened for the whole module (the histories its workflows make
are replayed by `verified` with it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

import store.opportunities
from activities.opportunity_activities import OpportunityActivities, Projected, ProjectionWrite
from sales.commands import ChangeStage
from sales.errors import CommandRejected
from starter.client import OpportunitiesClient
from tests.integration.test_every_value import still_fine
from tests.support.helpers import eventually, open_one
from worker import build_worker
from workflows import projection

pytestmark = pytest.mark.usefixtures("verified")


@pytest.fixture(scope="module", autouse=True)
def retry_soon() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(projection, "RETRY_UNWRITTEN_AFTER", timedelta(seconds=2))
        yield


class FailsForGood(OpportunityActivities):
    """The real activities, but while `down` a projection write fails as one does after
    retrying for an hour (`unavailable`, not retried)."""

    down = False
    failed = 0

    @activity.defn(name="project_opportunity")
    async def project_opportunity(self, write: ProjectionWrite) -> Projected:
        if self.down:
            self.failed += 1
            raise ApplicationError(
                "still failing after retrying for 1:00:00", {"code": "unavailable"},
                non_retryable=True,
            )  # fmt: skip
        return await super().project_opportunity(write)


async def test_a_write_that_fails_for_good_holds_the_run_until_it_is_written(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    uid: str,
) -> None:
    """What waits to be written stays one write: the run applies no more commands (signals
    wait, updates are refused `unavailable`) until the write lands, then goes on."""
    failing = FailsForGood(pool, client)
    async with build_worker(client, pool, task_queue, opportunity_activities=failing):
        opportunities = OpportunitiesClient(client, task_queue)
        await open_one(pool, opportunities, uid)
        failing.down = True
        moved = await opportunities.change_stage(f"o-{uid}", "Needs analysis")
        assert moved.current_stage == "Needs analysis", "applied; its write waits"
        with pytest.raises(CommandRejected) as refused:
            await opportunities.change_stage(f"o-{uid}", "Proposal")
        assert refused.value.code == "unavailable"
        await opportunities.signal(f"o-{uid}", ChangeStage(stage="Proposal"))

        async def retried() -> bool:  # the write tried again while the database is down
            return failing.failed >= 3

        await eventually(retried, seconds=15)
        state = await opportunities.state(f"o-{uid}")
        assert state.current_stage == "Needs analysis", "the signal waits while the run holds"
        row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
        assert row is not None and row.current_stage == "Prospect"
        failing.down = False

        async def written() -> bool:
            row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
            return row is not None and row.current_stage == "Proposal"

        await eventually(written, seconds=15)
        history = await store.opportunities.get_history(pool, f"o-{uid}")
        assert [e.to_stage for e in history] == ["Prospect", "Needs analysis", "Proposal"]
        await still_fine(opportunities, pool, f"o-{uid}")
