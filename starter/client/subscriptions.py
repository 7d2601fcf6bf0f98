"""Subscriptions, as a service or the CLI manages them: the database holds each one (its
secret sealed) and a `Subscription` workflow delivers its events.

Adding checks everything first (the target, the events, the secret, that the receiver's
address may be reached, that a subscriber workflow runs) and stores nothing if any check
fails; pausing, resuming and deleting change the database and wake the workflow.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import socket
from urllib.parse import urlsplit

import asyncpg
from standardwebhooks import Webhook
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.webhooks import literal_address, refused_message
from runtime import settings
from runtime.secret_box import secret_box
from sales.subscriptions import (
    AddressScope,
    Subscription,
    SubscriptionError,
    SubscriptionStatus,
    address_allowed,
)
from store import subscriptions as store
from store.subscriptions import ParkedDelivery, SubscriptionRow
from workflows.subscription import SubscriptionInput, workflow_id


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    try:
        Webhook(secret)
    except Exception:
        raise SubscriptionError(
            "the secret is not a Standard Webhooks secret (whsec_ and base64, at least 24 "
            "bytes); leave --secret-env out to have one made"
        ) from None
    raw = secret.removeprefix("whsec_")
    if len(base64.b64decode(raw)) < 24:
        raise SubscriptionError("the secret is shorter than 24 bytes")
    return secret


def address_scope() -> AddressScope:
    scope = settings.setting("OPPORTUNITIES_WEBHOOK_ADDRESSES") or "public"
    if scope not in ("public", "loopback", "private"):
        raise SubscriptionError(
            f"OPPORTUNITIES_WEBHOOK_ADDRESSES must be public, loopback or private, not {scope!r}"
        )
    return scope  # type: ignore[return-value]


async def check_reachable(url: str, scope: AddressScope) -> None:
    """Refuse a URL whose host resolves to an address deliveries may not reach."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or 443, type=socket.SOCK_STREAM
            )
        except socket.gaierror as error:
            raise SubscriptionError(
                f"the host {host!r} cannot be resolved: {error.strerror}"
            ) from None
        addresses = [str(info[4][0]) for info in found]
    refused = [address for address in addresses if not address_allowed(address, scope)]
    if refused:
        raise SubscriptionError(refused_message(host, refused[0], scope))


class Subscriptions:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: Client,
        *,
        task_queue: str | None = None,
        delivery_task_queue: str | None = None,
        scope: AddressScope | None = None,
    ) -> None:
        """`scope`: the receiver addresses allowed (default: the setting)."""
        self.pool = pool
        self.scope = scope
        self.client = client
        self.task_queue = task_queue or settings.task_queue()
        self.delivery_task_queue = delivery_task_queue or settings.delivery_task_queue(
            self.task_queue
        )

    async def add(
        self,
        *,
        url: str | None,
        workflow_id: str | None,
        events: list[str],
        process_id: str | None = None,
        secret: str | None = None,
        subscription_id: str | None = None,
        by: str | None = None,
    ) -> tuple[Subscription, str | None]:
        """Add a subscription and start delivering; the subscription and the secret made for
        it (None if given, or for a workflow subscriber). `SubscriptionError` (nothing stored)
        if anything is wrong."""
        try:
            subscription = Subscription(
                subscription_id=subscription_id or f"sub-{secrets.token_hex(4)}",
                url=url,
                workflow_id=workflow_id,
                events=events,
                process_id=process_id,
                created_by=by,
            )
        except ValueError as error:
            raise SubscriptionError(_first_error(error)) from None
        made = None
        sealed: tuple[str, bytes] | None = None
        if subscription.url is not None:
            await check_reachable(subscription.url, self.scope or address_scope())
            if secret is None:
                secret = made = new_secret()
            sealed = secret_box().seal(check_secret(secret))
        else:
            assert subscription.workflow_id is not None
            await self._require_running(subscription.workflow_id)
        if process_id is not None and not await self.pool.fetchval(
            "SELECT true FROM sales_processes WHERE process_id = $1 LIMIT 1", process_id
        ):
            raise SubscriptionError(f"no process {process_id!r}")
        try:
            await store.add(
                self.pool,
                subscription,
                secret=sealed[1] if sealed else None,
                secret_key_id=sealed[0] if sealed else None,
            )
        except store.AlreadyExists:
            raise SubscriptionError(
                f"a subscription {subscription.subscription_id!r} exists already"
            ) from None
        try:
            await self._run(subscription)
        except BaseException:
            await self.pool.execute(
                "DELETE FROM subscriptions WHERE subscription_id = $1",
                subscription.subscription_id,
            )
            raise
        return subscription, made

    async def _require_running(self, target: str) -> None:
        try:
            described = await self.client.get_workflow_handle(target).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise SubscriptionError(f"no workflow {target!r} is running") from None
            raise
        if described.status != WorkflowExecutionStatus.RUNNING:
            raise SubscriptionError(f"the workflow {target!r} is not running")

    async def _run(self, found: Subscription) -> None:
        """Start the subscription's workflow, or wake it if it runs. The Temporal UI shows
        what it delivers where (a URL's host only: its path or query may hold a token)."""
        subscription_id = found.subscription_id
        target = (
            f"workflow {found.workflow_id}"
            if found.url is None
            else f"{urlsplit(found.url).scheme}://{urlsplit(found.url).netloc}/…"
        )
        summary = f"subscription {subscription_id}: {', '.join(found.events)} to {target}"
        await self.client.start_workflow(
            "Subscription",
            SubscriptionInput(
                subscription_id=subscription_id, delivery_task_queue=self.delivery_task_queue
            ),
            id=workflow_id(subscription_id),
            task_queue=self.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal="resume",
            static_summary=summary[:200],
            static_details=(
                f"Delivers opportunity events ({', '.join(found.events)}) of "
                f"{'process ' + found.process_id if found.process_id else 'every process'} to "
                f"{target}. `opportunities subscription show {subscription_id}`: what waits "
                "and what is parked."
            ),
        )

    async def all(self, *, include_deleted: bool = False) -> list[SubscriptionRow]:
        return await store.rows(self.pool, include_deleted=include_deleted)

    async def show(self, subscription_id: str) -> tuple[SubscriptionRow, list[ParkedDelivery]]:
        found = await store.rows(self.pool, subscription_id, include_deleted=True)
        if not found:
            raise SubscriptionError(f"no subscription {subscription_id!r}")
        return found[0], await store.parked(self.pool, subscription_id)

    async def pause(self, subscription_id: str) -> None:
        await self._set(subscription_id, "paused")

    async def resume(self, subscription_id: str) -> None:
        await self._set(subscription_id, "active")
        found = await store.get(self.pool, subscription_id)
        assert found is not None
        await self._run(found)

    async def delete(self, subscription_id: str) -> None:
        await self._set(subscription_id, "deleted")
        try:
            await self.client.get_workflow_handle(workflow_id(subscription_id)).signal("resume")
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise

    async def redeliver(self, subscription_id: str, event_id: str | None = None) -> int:
        await self.show(subscription_id)
        return await store.redeliver(self.pool, subscription_id, event_id)

    async def skip(self, subscription_id: str, event_id: str | None = None) -> int:
        await self.show(subscription_id)
        return await store.skip(self.pool, subscription_id, event_id)

    async def _set(self, subscription_id: str, status: SubscriptionStatus) -> None:
        if not await store.set_status(self.pool, subscription_id, status):
            raise SubscriptionError(f"no subscription {subscription_id!r} (or it is deleted)")


def secret_from(variable: str | None) -> str | None:
    """The secret in the environment variable `variable` (None: make one)."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise SubscriptionError(f"the environment variable {variable} is not set")
    return value


def _first_error(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        message = str(first.get("msg", error)).removeprefix("Value error, ")
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{where}: {message}" if where else message
    return str(error)
