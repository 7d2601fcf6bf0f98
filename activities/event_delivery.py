"""The delivery activity: one long-running, heartbeating activity per subscription, on the
delivery task queue, so HTTP waits never take the opportunities' activity slots.

It loops: take the outbox's newly committed events into the subscription's deliveries (every
`poll` seconds), keep up to `concurrency` deliveries in flight (the head of each waiting
opportunity's; never two of one opportunity), refilling as each ends, so one slow receiver
answer holds up only its own opportunity, and record each result. It returns when the
subscription is paused or deleted, or after `run_for` (so the supervising workflow's history
grows by a few events per run, not per poll). A failed event is tried again with
exponential backoff and parked after the parking time; a worker that dies mid-delivery leaves
the event undelivered, to be sent again (at least once: the event id lets a receiver drop a
duplicate).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
from temporalio import activity
from temporalio.client import Client

from activities.webhooks import DeliveryFailed, post, signal, webhook_session
from runtime.secret_box import secret_box
from runtime.settings import BadSetting, setting
from sales.subscriptions import AddressScope, DeliveryPolicy, DeliveryResult, Subscription
from store import subscriptions
from store.subscriptions import Delivery

DELIVERIES = "opportunities_deliveries"
LAG = "opportunities_delivery_lag_seconds"

log = logging.getLogger("opportunities.delivery")


@dataclass(frozen=True)
class DeliverySettings:
    """How deliveries run (read once, at the worker's start)."""

    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    addresses: AddressScope = "public"
    timeout: float = 10.0
    concurrency: int = 32
    """Opportunities whose events are sent at once, per subscription."""
    poll: float = 0.25
    """The wait when nothing is due."""
    run_for: float = 600.0
    """How long one activity runs before it hands back to its workflow."""

    @classmethod
    def from_environment(cls) -> DeliverySettings:
        scope = setting("OPPORTUNITIES_WEBHOOK_ADDRESSES") or "public"
        if scope not in ("public", "loopback", "private"):
            raise BadSetting(
                "OPPORTUNITIES_WEBHOOK_ADDRESSES must be public, loopback or private, "
                f"not {scope!r}"
            )
        policy = DeliveryPolicy(
            first_backoff=timedelta(seconds=_seconds("OPPORTUNITIES_DELIVERY_FIRST_BACKOFF", 1)),
            max_backoff=timedelta(seconds=_seconds("OPPORTUNITIES_DELIVERY_MAX_BACKOFF", 300)),
            park_after=timedelta(seconds=_seconds("OPPORTUNITIES_DELIVERY_PARK_AFTER", 86400)),
        )
        return cls(
            policy=policy,
            addresses=scope,  # type: ignore[arg-type]
            timeout=_seconds("OPPORTUNITIES_DELIVERY_TIMEOUT", 10),
            poll=_seconds("OPPORTUNITIES_DELIVERY_POLL", 0.25),
        )


def _seconds(name: str, default: float) -> float:
    raw = setting(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadSetting(f"{name} must be a number of seconds, not {raw!r}") from None
    if not 0 < value <= 30 * 86400:
        raise BadSetting(f"{name} must be more than 0 and at most 30 days, not {raw!r}")
    return value


class EventDeliveryActivities:
    def __init__(
        self, pool: asyncpg.Pool, client: Client, settings: DeliverySettings | None = None
    ) -> None:
        self.pool = pool
        self.client = client
        self.settings = settings or DeliverySettings.from_environment()

    @activity.defn(name="deliver_events")
    async def deliver_events(self, subscription_id: str) -> str:
        """Deliver the subscription's events until it is paused (`paused`) or deleted
        (`deleted`), or for `run_for` seconds (`running`)."""
        until = time.monotonic() + self.settings.run_for
        lag_at = 0.0
        found = await subscriptions.get(self.pool, subscription_id)
        if found is None:
            return "deleted"
        secret = await self._secret(found)
        session = webhook_session(
            self.settings.addresses,
            timeout=self.settings.timeout,
            connections=self.settings.concurrency,
        )
        in_flight: dict[asyncio.Task[DeliveryResult], Delivery] = {}
        taken_at = lag_at = 0.0
        try:
            async with session:
                while True:
                    activity.heartbeat()
                    if time.monotonic() - taken_at >= self.settings.poll:
                        taken_at = time.monotonic()
                        stop = await self._stop(subscription_id, until)
                        if stop is not None:
                            await self._record(found, in_flight, list(in_flight))
                            return stop
                    if time.monotonic() - lag_at >= 1.0:
                        lag_at = time.monotonic()
                        self._lag(
                            subscription_id,
                            await subscriptions.lag_seconds(self.pool, subscription_id),
                        )
                    room = self.settings.concurrency - len(in_flight)
                    if room > 0:
                        busy = [item.event.opportunity_id for item in in_flight.values()]
                        for item in await subscriptions.due(
                            self.pool, subscription_id, limit=room, busy=busy
                        ):
                            task = asyncio.create_task(self._deliver(session, found, secret, item))
                            in_flight[task] = item
                    if not in_flight:
                        await asyncio.sleep(self.settings.poll)
                        continue
                    done, _ = await asyncio.wait(
                        in_flight, timeout=self.settings.poll, return_when=asyncio.FIRST_COMPLETED
                    )
                    await self._record(found, in_flight, list(done))
        finally:
            for task in in_flight:
                task.cancel()

    async def _stop(self, subscription_id: str, until: float) -> str | None:
        """Take in the outbox's new events; why to stop (paused, deleted, or the run's time
        is up), or None to go on."""
        if await subscriptions.intake(self.pool, subscription_id) is None:
            now = await subscriptions.get(self.pool, subscription_id)
            return "paused" if now is not None and now.status == "paused" else "deleted"
        return "running" if time.monotonic() >= until else None

    async def _record(
        self,
        found: Subscription,
        in_flight: dict[asyncio.Task[DeliveryResult], Delivery],
        finished: list[asyncio.Task[DeliveryResult]],
    ) -> None:
        """The results of these deliveries (awaited if still running): the delivered ones
        recorded together (a failure was recorded when it failed), all counted."""
        results = [(in_flight.pop(task), await task) for task in finished]
        await subscriptions.delivered(
            self.pool,
            found.subscription_id,
            [item.event for item, result in results if result == "delivered"],
        )
        counter = activity.metric_meter().create_counter(
            DELIVERIES, "Deliveries of opportunity events, by subscription and result"
        )
        for kind in ("delivered", "failed", "parked"):
            if count := sum(1 for _, result in results if result == kind):
                counter.add(count, {"subscription": found.subscription_id, "result": kind})

    async def _secret(self, found: Subscription) -> str | None:
        if found.url is None:
            return None
        sealed = await subscriptions.secret(self.pool, found.subscription_id)
        if sealed is None:
            raise BadSetting(f"subscription {found.subscription_id} has no secret")
        return secret_box().open(*sealed)

    async def _deliver(
        self,
        session: aiohttp.ClientSession,
        found: Subscription,
        secret: str | None,
        item: Delivery,
    ) -> DeliveryResult:
        """Send one event; a failure is recorded here (tried again later, or parked)."""
        try:
            if found.url is not None:
                assert secret is not None
                await post(session, found.url, secret, item.event, self.settings.addresses)
            else:
                assert found.workflow_id is not None
                await signal(self.client, found.workflow_id, item.event)
        except DeliveryFailed as failure:
            policy = self.settings.policy
            now = datetime.now(UTC)
            park = policy.parks(item.first_failed_at or now, now)
            await subscriptions.failed(
                self.pool,
                found.subscription_id,
                item.event,
                error=str(failure),
                retry_in=policy.backoff(item.attempts + 1),
                park=park,
            )
            log.log(
                logging.WARNING if park else logging.DEBUG,
                "subscription %s: event %s %s: %s",
                found.subscription_id, item.event.event_id, "parked" if park else "failed",
                failure,
            )  # fmt: skip
            return "parked" if park else "failed"
        return "delivered"

    def _lag(self, subscription_id: str, seconds: float) -> None:
        activity.metric_meter().create_gauge_float(
            LAG, "Age of the oldest event a subscription has not yet delivered", "s"
        ).set(seconds, {"subscription": subscription_id})

    @activity.defn(name="prune_events")
    async def prune_events(self, retention_days: float) -> int:
        """Delete outbox rows older than the retention that no subscription still needs."""
        return await subscriptions.prune_events(self.pool, timedelta(days=retention_days))

    def delivery(self) -> list:
        """For the delivery task queue's worker."""
        return [self.deliver_events]

    def maintenance(self) -> list:
        """For the opportunities' worker (the retention's schedule runs there)."""
        return [self.prune_events]
