"""Subscriptions end to end, with a real HTTP receiver that verifies every signature with the
`standardwebhooks` package: every event delivered, in order per opportunity; a receiver that
is down, then failing, then back, gets everything; a parked event holds back only its own
opportunity; a Temporal workflow as subscriber; bad input refused with nothing stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.event_delivery import DeliverySettings
from runtime import embedded
from sales.events import OpportunityEvent
from sales.subscriptions import DeliveryPolicy, Subscription, SubscriptionError
from starter.client import OpportunitiesClient
from starter.client.subscriptions import Subscriptions, new_secret
from store import subscriptions as store
from store.opportunities import insert_events
from store.search import SearchFilters
from tests.support.helpers import eventually, open_many, open_one
from tests.support.receiver import Receiver
from tests.support.servers import Cli, Servers
from worker import delivery_worker
from workflows.mass_messages import MassModifyInput

pytestmark = pytest.mark.usefixtures("verified")

EXAMPLE_RECEIVER = Path(__file__).resolve().parents[2] / "examples" / "webhook_receiver.py"


def delivery_settings(park_after: float = 3600) -> DeliverySettings:
    return DeliverySettings(
        policy=DeliveryPolicy(
            first_backoff=timedelta(seconds=0.2),
            max_backoff=timedelta(seconds=1),
            park_after=timedelta(seconds=park_after),
        ),
        addresses="loopback",
        poll=0.05,
    )


@contextlib.asynccontextmanager
async def delivering(
    client: Client, pool: asyncpg.Pool, task_queue: str, park_after: float = 3600
) -> AsyncIterator[Subscriptions]:
    """A delivery worker on the test's delivery queue, and the subscriptions' client; every
    subscription made here is deleted at the end."""
    queue = f"{task_queue}-delivery"
    subs = Subscriptions(pool, client, task_queue=task_queue, delivery_task_queue=queue)
    before = {row.subscription.subscription_id for row in await subs.all()}
    try:
        async with delivery_worker(client, pool, queue, delivery_settings(park_after)):
            yield subs
    finally:
        for row in await subs.all():
            if row.subscription.subscription_id not in before:
                await store.set_status(pool, row.subscription.subscription_id, "deleted")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(new_secret())
    await found.start()
    yield found
    await found.stop()


async def in_chunks(calls: list[Any], size: int = 50) -> None:
    for start in range(0, len(calls), size):
        await asyncio.gather(*calls[start : start + size])


@pytest.mark.slow
async def test_every_event_reaches_the_webhook_signed_once_in_order(
    client: Client,
    pool: asyncpg.Pool,
    worker: Worker,
    task_queue: str,
    opportunities: OpportunitiesClient,
    receiver: Receiver,
    uid: str,
) -> None:
    """500 opportunities moved by one mass modification (500 `stage_changed`), then 200 of
    them closed one by one: every event delivered, in order per opportunity, signed."""
    async with delivering(client, pool, task_queue) as subs:
        process_id, ids = await open_many(pool, opportunities, uid, 500, "s")
        await subs.add(
            url=receiver.url,
            workflow_id=None,
            events=["stage_changed", "won", "lost"],
            process_id=process_id,
            secret=receiver.secret,
        )
        batch = MassModifyInput(batch_id=f"b-{uid}", filters=SearchFilters(process_id=process_id),
                                to_stage="Proposal", by="ops", concurrency=50)  # fmt: skip
        report = await (await opportunities.start_mass_modify(batch)).result()
        assert report.changed == 500
        closing = ids[:200]
        await in_chunks([
            opportunities.change_stage(opp, "Closed won" if n % 2 else "Closed lost")
            for n, opp in enumerate(closing)
        ])  # fmt: skip
        expected = 500 + 2 * 200  # moved by the batch; then closed: stage_changed, won|lost

        await eventually(lambda: len(receiver.unique()) >= expected or None, seconds=120)
        unique = receiver.unique()
        assert len(unique) == expected, "nothing missing, nothing extra"
        assert receiver.bad_signatures == 0
        mass_moves = [e for e in unique.values() if e["type"] == "stage_changed"
                      and e["data"]["to"] == "Proposal"]  # fmt: skip
        assert len(mass_moves) == 500 and all(e["data"]["source"] == "mass" for e in mass_moves)
        order = receiver.by_opportunity()
        assert all(seqs == sorted(seqs) for seqs in order.values()), "in order per opportunity"
        for n, opp in enumerate(closing):
            types = [unique[f"{opp}/{seq}"]["type"] for seq in order[opp]]
            assert types == ["stage_changed", "stage_changed", "won" if n % 2 else "lost"]
        rows = await subs.all()
        mine = next(r for r in rows if r.subscription.process_id == process_id)
        await eventually(lambda: _delivered(pool, mine.subscription.subscription_id, expected))


async def _waiting(pool: asyncpg.Pool, subscription_id: str, count: int) -> bool | None:
    return (await store.rows(pool, subscription_id))[0].pending == count or None


async def _counts(pool: asyncpg.Pool, subscription_id: str, **wanted: int) -> bool | None:
    row = (await store.rows(pool, subscription_id))[0]
    return all(getattr(row, name) == value for name, value in wanted.items()) or None


async def _delivered(pool: asyncpg.Pool, subscription_id: str, count: int) -> bool | None:
    row = (await store.rows(pool, subscription_id))[0]
    return (row.delivered == count and row.pending == 0) or None


@pytest.mark.slow
async def test_a_receiver_down_then_failing_gets_everything_afterwards_in_order(
    client: Client,
    pool: asyncpg.Pool,
    worker: Worker,
    task_queue: str,
    opportunities: OpportunitiesClient,
    receiver: Receiver,
    uid: str,
) -> None:
    async with delivering(client, pool, task_queue) as subs:
        process_id, ids = await open_many(pool, opportunities, uid, 20, "s")
        added, _ = await subs.add(url=receiver.url, workflow_id=None, process_id=process_id,
                                  events=["stage_changed"], secret=receiver.secret)  # fmt: skip
        await receiver.stop()  # connection refused
        await in_chunks([opportunities.change_stage(opp, "Proposal") for opp in ids])
        await asyncio.sleep(30)  # the receiver's outage (the test's subject, not a wait)
        receiver.mode = "fail"
        await receiver.start()
        await in_chunks([opportunities.change_stage(opp, "Closed won") for opp in ids])
        await eventually(lambda: receiver.refused >= 20 or None, seconds=30)
        await eventually(lambda: _waiting(pool, added.subscription_id, 40))
        row = (await store.rows(pool, added.subscription_id))[0]
        assert (row.delivered, row.parked) == (0, 0)
        receiver.mode = "ok"

        await eventually(lambda: len(receiver.unique()) >= 40 or None, seconds=60)
        unique = receiver.unique()
        assert len(unique) == 40 and receiver.bad_signatures == 0
        order = receiver.by_opportunity()
        assert set(order) == set(ids)
        for opp, seqs in order.items():
            moves = [unique[f"{opp}/{seq}"]["data"]["to"] for seq in seqs]
            assert moves == ["Proposal", "Closed won"], (opp, moves)
        await eventually(lambda: _delivered(pool, added.subscription_id, 40))


async def test_a_parked_event_holds_back_only_its_opportunity(
    client: Client,
    pool: asyncpg.Pool,
    worker: Worker,
    task_queue: str,
    opportunities: OpportunitiesClient,
    receiver: Receiver,
    cli: Cli,
    uid: str,
) -> None:
    async with delivering(client, pool, task_queue, park_after=1) as subs:
        process_id, ids = await open_many(pool, opportunities, uid, 6, "s")
        stuck, skipped, flowing = ids[0], ids[1], ids[2:]
        receiver.failing = {stuck, skipped}
        added, _ = await subs.add(url=receiver.url, workflow_id=None, process_id=process_id,
                                  events=["stage_changed"], secret=receiver.secret)  # fmt: skip
        sub_id = added.subscription_id
        await in_chunks([opportunities.change_stage(opp, "Needs analysis") for opp in ids])
        await eventually(lambda: _parked(pool, sub_id, 2), seconds=30)
        await in_chunks([opportunities.change_stage(opp, "Proposal") for opp in ids])
        await eventually(lambda: len(receiver.unique()) >= 2 * len(flowing) or None)
        assert set(receiver.by_opportunity()) == set(flowing), "only the stuck ones wait"
        await eventually(lambda: _counts(pool, sub_id, pending=4, parked=2))  # each stuck
        # opportunity's later event waits behind its parked one

        shown = await cli("subscription", "show", sub_id)
        assert shown.code == 0, shown.stderr
        assert f"{stuck}/1" in shown.stdout and f"{skipped}/1" in shown.stdout
        assert "the receiver answered 500" in shown.stdout
        listed = await cli("subscription", "list", "--json")
        assert any(r["subscription"]["subscription_id"] == sub_id and r["parked"] == 2
                   for r in listed.json())  # fmt: skip

        receiver.failing = set()
        done = await cli("subscription", "redeliver", sub_id, "--event", f"{stuck}/1")
        assert done.code == 0 and "1 parked event to be delivered again" in done.stdout
        await eventually(lambda: receiver.by_opportunity().get(stuck) == [1, 2] or None)
        dropped = await cli("subscription", "skip", sub_id, "--event", f"{skipped}/1")
        assert dropped.code == 0, dropped.stderr
        await eventually(lambda: receiver.by_opportunity().get(skipped) == [2] or None)
        assert len(receiver.unique()) == 2 * len(ids) - 1
        missing = await cli("subscription", "skip", sub_id, "--event", "nope/1")
        assert missing.code == 1 and "no parked event 'nope/1'" in missing.stderr

        paused = await cli("subscription", "pause", sub_id)
        assert paused.code == 0, paused.stderr
        handle = client.get_workflow_handle(f"subscription-{sub_id}")
        await eventually(lambda: _query_status(handle, "paused"))
        before = len(receiver.got)
        await opportunities.change_stage(flowing[0], "Closed won")
        assert len(receiver.got) == before, "nothing is delivered while paused"
        resumed = await cli("subscription", "resume", sub_id)
        assert resumed.code == 0, resumed.stderr
        await eventually(lambda: len(receiver.got) > before or None)
        assert receiver.got[-1]["data"]["to"] == "Closed won"
        deleted = await cli("subscription", "delete", sub_id)
        assert deleted.code == 0, deleted.stderr
        assert await handle.result() == "deleted"


async def _query_status(handle: Any, wanted: str) -> bool | None:
    return (await handle.query("status")) == wanted or None


async def _parked(pool: asyncpg.Pool, subscription_id: str, count: int) -> bool | None:
    return len(await store.parked(pool, subscription_id)) == count or None


@workflow.defn(name="EventCollector", sandboxed=False)
class EventCollector:
    """A backend service's own workflow that hears opportunity events."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name="opportunity_event")
    def opportunity_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    @workflow.query(name="events")
    def seen(self) -> list[dict[str, Any]]:
        return self.events


async def test_a_temporal_workflow_hears_events_as_signals_and_parks_when_it_ends(
    client: Client,
    pool: asyncpg.Pool,
    worker: Worker,
    task_queue: str,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    collector_queue = f"{task_queue}-collector"
    async with (
        Worker(client, task_queue=collector_queue, workflows=[EventCollector]),
        delivering(client, pool, task_queue, park_after=1) as subs,
    ):
        collector = await client.start_workflow(
            EventCollector.run, id=f"collector-{uid}", task_queue=collector_queue
        )
        process_id = await open_one(pool, opportunities, uid, on_entry=False)
        added, secret = await subs.add(url=None, workflow_id=f"collector-{uid}",
                                       events=["stage_changed", "won"],
                                       process_id=process_id)  # fmt: skip
        assert secret is None
        await opportunities.change_stage(f"o-{uid}", "Proposal")
        await opportunities.change_stage(f"o-{uid}", "Closed won")

        async def heard() -> list[dict[str, Any]] | None:
            found = await collector.query(EventCollector.seen)
            return found if len(found) >= 3 else None

        events = await eventually(heard)
        assert [e["type"] for e in events] == ["stage_changed", "stage_changed", "won"]
        assert OpportunityEvent.model_validate(events[0]).opportunity_id == f"o-{uid}"

        await collector.terminate("the service went away")
        await opportunities.reopen(f"o-{uid}", "Proposal")
        await eventually(lambda: _parked(pool, added.subscription_id, 1), seconds=30)
        parked = await store.parked(pool, added.subscription_id)
        assert parked[0].last_error == f"workflow collector-{uid} is not running"


async def test_rows_committed_out_of_order_are_both_taken(pool: asyncpg.Pool, uid: str) -> None:
    """The subscription's cursor is the outbox's fence: a transaction that began first and
    commits last is taken after, never skipped."""

    sub = Subscription(subscription_id=f"late-{uid}", workflow_id="anyone", events=["won"])
    await store.add(pool, sub, secret=None, secret_key_id=None)

    def event(opp: str) -> OpportunityEvent:
        return OpportunityEvent(
            event_id=f"{opp}/1", type="won", opportunity_id=opp, seq=1, at=datetime.now(UTC)
        )

    first, second = await pool.acquire(), await pool.acquire()
    try:
        early = first.transaction()
        await early.start()
        await insert_events(first, [event(f"late-{uid}-a")])
        async with second.transaction():
            await insert_events(second, [event(f"late-{uid}-b")])
        await store.intake(pool, sub.subscription_id)
        await early.commit()
    finally:
        await pool.release(first)
        await pool.release(second)
    while await store.intake(pool, sub.subscription_id):
        pass
    taken = await pool.fetch(
        "SELECT opportunity_id FROM subscription_deliveries WHERE subscription_id = $1"
        " ORDER BY opportunity_id",
        sub.subscription_id,
    )
    assert [r["opportunity_id"] for r in taken] == [f"late-{uid}-a", f"late-{uid}-b"]
    await store.set_status(pool, sub.subscription_id, "deleted")


async def test_bad_subscriptions_are_refused_in_one_line_and_nothing_is_stored(
    servers: Servers, pool: asyncpg.Pool, worker: Worker, client: Client, task_queue: str
) -> None:
    count = "SELECT count(*) FROM subscriptions"
    before = await pool.fetchval(count)
    cases = [
        (["--url", "ftp://example.com/x", "--events", "won"], "must be http or https"),
        (["--url", "http://10.1.2.3/x", "--events", "won"], "webhooks may not reach"),
        (["--url", "http://[::1]:9/x", "--events", "won"], "webhooks may not reach"),
        (["--url", "http://169.254.169.254/x", "--events", "won"], "webhooks may not reach"),
        (["--url", "http://u:p@example.com/x", "--events", "won"], "may not hold a user"),
        (["--url", "https://example.com/x", "--events", "won,exploded"], "'exploded'"),
        (["--url", "https://example.com/x", "--events", "won", "--secret-env", "NO_SUCH_VAR"],
         "NO_SUCH_VAR is not set"),
        (["--workflow-id", f"nobody-{task_queue}", "--events", "won"], "no workflow"),
        (["--events", "won"], "either --url or --workflow-id"),
    ]  # fmt: skip
    public = Cli(servers, task_queue)
    public.env["OPPORTUNITIES_WEBHOOK_ADDRESSES"] = "public"
    for args, said in cases:
        result = await public("subscription", "add", *args)
        assert result.code == 1, (args, result.stdout)
        assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            args,
            result.stderr,
        )
    assert await pool.fetchval(count) == before, "nothing stored"
    subs = Subscriptions(pool, client, task_queue=task_queue, scope="public")
    with pytest.raises(SubscriptionError, match="webhooks may not reach"):
        await subs.add(url="http://127.0.0.1:9/x", workflow_id=None, events=["won"])
    assert await pool.fetchval(count) == before


async def test_the_receiver_in_the_docs_verifies_and_prints_each_event(
    client: Client,
    pool: asyncpg.Pool,
    worker: Worker,
    task_queue: str,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    secret, port = new_secret(), embedded.free_port()
    env = {**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port)}
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE_RECEIVER), env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with delivering(client, pool, task_queue) as subs:
            process_id = await open_one(pool, opportunities, uid, on_entry=False)
            await eventually(lambda: _listening(port))
            await subs.add(url=f"http://127.0.0.1:{port}/hooks", workflow_id=None,
                           events=["stage_changed"], process_id=process_id,
                           secret=secret)  # fmt: skip
            await opportunities.change_stage(f"o-{uid}", "Proposal")
            assert receiver.stdout is not None
            line = await asyncio.wait_for(receiver.stdout.readline(), 30)
            assert line.decode().startswith(f"stage_changed o-{uid} 1 ")
            assert "'to': 'Proposal'" in line.decode()
    finally:
        receiver.terminate()
        await receiver.wait()


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True
