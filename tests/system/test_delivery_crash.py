"""At least once across a crash: the worker process is SIGKILLed while webhooks are in flight
to a slow receiver; a new worker delivers the rest. Nothing is lost, a duplicate is the same
event, each opportunity's events arrive in order, and the new worker's metrics count them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from temporalio.client import Client

from starter.client import OpportunitiesClient
from starter.client.subscriptions import Subscriptions, new_secret
from store import subscriptions as store
from tests.support.helpers import eventually, setup_contact, setup_process, setup_references
from tests.support.receiver import Receiver
from tests.support.servers import Servers
from tests.support.worker_process import WorkerProcess, worker_env

pytestmark = pytest.mark.usefixtures("verified")

OPPORTUNITIES = 30


class SlowReceiver(Receiver):
    """Answers the first `PASSED` deliveries, then holds each one until `release` is set, so
    that deliveries are in flight when the worker dies (one whose sender died may still
    count as received once released, as with a real receiver)."""

    PASSED = 5

    def __init__(self, secret: str) -> None:
        super().__init__(secret)
        self.arrived = 0
        self.release = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrived += 1
        if self.arrived > self.PASSED:
            await self.release.wait()
        await asyncio.sleep(0.05)
        return await super()._handle(request)


@pytest.fixture
async def receiver() -> AsyncIterator[SlowReceiver]:
    found = SlowReceiver(new_secret())
    await found.start()
    yield found
    await found.stop()


async def test_sigkill_mid_delivery_loses_nothing(
    client: Client,
    pool: asyncpg.Pool,
    servers: Servers,
    task_queue: str,
    receiver: SlowReceiver,
    tmp_path: Path,
    uid: str,
) -> None:
    env = worker_env(servers.temporal_address, servers.database_url, task_queue)
    first = WorkerProcess.opportunities_worker(env, tmp_path / "first.log")
    second = WorkerProcess.opportunities_worker(env, tmp_path / "second.log")
    await first.start()
    try:
        process_id = await setup_process(pool, uid, on_entry=False)
        await setup_references(pool, uid)
        contact = await setup_contact(pool, uid)
        opportunities = OpportunitiesClient(client, task_queue)
        ids = [f"k-{uid}-{n:02d}" for n in range(OPPORTUNITIES)]
        await asyncio.gather(
            *(opportunities.create(contact, opportunity_id=o, process_id=process_id) for o in ids)
        )
        subs = Subscriptions(pool, client, task_queue=task_queue)
        added, _ = await subs.add(url=receiver.url, workflow_id=None, process_id=process_id,
                                  events=["stage_changed"], secret=receiver.secret)  # fmt: skip
        for stage in ("Needs analysis", "Proposal"):
            await asyncio.gather(*(opportunities.change_stage(opp, stage) for opp in ids))
        # Some delivered, more in flight (held by the receiver) when the worker dies.
        await eventually(
            lambda: (len(receiver.got) >= receiver.PASSED and receiver.arrived > receiver.PASSED)
            or None,
            seconds=30,
        )
        await first.kill()
        assert len(receiver.unique()) < 2 * OPPORTUNITIES, "killed mid-delivery"
        receiver.release.set()

        await second.start()
        await eventually(lambda: len(receiver.unique()) >= 2 * OPPORTUNITIES or None, seconds=90)
        unique = receiver.unique()  # asserts a duplicate is the same event
        assert len(unique) == 2 * OPPORTUNITIES and receiver.bad_signatures == 0
        for opp, seqs in receiver.by_opportunity().items():
            moves = [unique[f"{opp}/{seq}"]["data"]["to"] for seq in seqs]
            assert moves == ["Needs analysis", "Proposal"], opp
        await eventually(lambda: _all_delivered(pool, added.subscription_id))

        samples = await second.metrics()
        assert 1 <= samples.get("opportunities_deliveries", 0) <= len(receiver.got)
        assert "opportunities_delivery_lag_seconds" in samples
        await subs.delete(added.subscription_id)
    finally:
        await second.stop()
        await first.stop()


async def _all_delivered(pool: asyncpg.Pool, subscription_id: str) -> bool | None:
    row = (await store.rows(pool, subscription_id))[0]
    return row.pending == 0 or None
