"""Sending one event to a subscriber: a signed webhook POST, or a signal to a Temporal workflow.

A webhook is signed with the Standard Webhooks scheme (the `standardwebhooks` package:
`webhook-id` is the event id, `webhook-timestamp` the time of sending, `webhook-signature`
an HMAC-SHA256 over both and the body). Before connecting, the receiver's host is resolved and
every address it resolves to is checked against the allowed scope; the connection goes to
those checked addresses (no second lookup). Redirects are not followed, and at most
`BODY_LIMIT` bytes of a response are read.
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from standardwebhooks import Webhook
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from sales.events import OpportunityEvent
from sales.subscriptions import SIGNAL, AddressScope, address_allowed

BODY_LIMIT = 1024
"""Bytes of a receiver's response read (for the error it reports), never more."""


class DeliveryFailed(Exception):
    """A delivery that did not succeed; the message is one line fit for `subscription show`."""


class RefusedAddress(OSError):
    """A receiver's host that resolves to an address deliveries may not reach."""


class GuardedResolver(AbstractResolver):
    """The system resolver, refusing a host with any address outside `scope`."""

    def __init__(self, scope: AddressScope) -> None:
        self.scope = scope
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        refused = [r["host"] for r in found if not address_allowed(r["host"], self.scope)]
        if refused:
            raise RefusedAddress(refused_message(host, refused[0], self.scope))
        return found

    async def close(self) -> None:
        await self._inner.close()


def refused_message(host: str, address: str, scope: AddressScope) -> str:
    return (
        f"{host} resolves to {address}, which webhooks may not reach "
        f"(OPPORTUNITIES_WEBHOOK_ADDRESSES={scope}; loopback or private allow more)"
    )


def literal_address(host: str) -> str | None:
    """The host if it is an IP address (which no resolver is asked about)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def webhook_session(
    scope: AddressScope, *, timeout: float, connections: int
) -> aiohttp.ClientSession:
    """A session whose every new connection resolves and checks the host again."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(scope), use_dns_cache=False, limit=connections
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        auto_decompress=False,
    )


def signed_headers(secret: str, event: OpportunityEvent, body: str) -> dict[str, str]:
    sent_at = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": event.event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event.event_id, sent_at, body),
        "user-agent": "opportunities-webhooks",
    }


async def post(
    session: aiohttp.ClientSession,
    url: str,
    secret: str,
    event: OpportunityEvent,
    scope: AddressScope,
) -> None:
    """POST the event, signed; `DeliveryFailed` unless the receiver answers 2xx."""
    host = urlsplit(url).hostname or ""
    address = literal_address(host)
    if address is not None and not address_allowed(address, scope):
        raise DeliveryFailed(refused_message(host, address, scope))
    body = event.model_dump_json()
    try:
        async with session.post(
            url, data=body.encode(), headers=signed_headers(secret, event, body),
            allow_redirects=False,
        ) as response:  # fmt: skip
            if 200 <= response.status < 300:
                return
            text = (await response.content.read(BODY_LIMIT)).decode("utf-8", "replace")
            summary = " ".join(text.split())[:200]
            raise DeliveryFailed(
                f"the receiver answered {response.status}" + (f": {summary}" if summary else "")
            )
    except DeliveryFailed:
        raise
    except TimeoutError:
        raise DeliveryFailed("the receiver did not answer in time") from None
    except aiohttp.ClientConnectorError as error:
        cause = error.os_error
        if isinstance(cause, RefusedAddress):
            raise DeliveryFailed(str(cause)) from None
        raise DeliveryFailed(f"cannot connect: {cause.strerror or cause}") from None
    except (aiohttp.ClientError, OSError) as error:
        raise DeliveryFailed(f"{type(error).__name__}: {error}".splitlines()[0][:300]) from None


async def signal(client: Client, workflow_id: str, event: OpportunityEvent) -> None:
    """Signal `opportunity_event` to the subscriber's workflow; `DeliveryFailed` if it does
    not run."""
    try:
        await client.get_workflow_handle(workflow_id).signal(SIGNAL, event)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise DeliveryFailed(f"workflow {workflow_id} is not running") from None
        raise DeliveryFailed(f"Temporal refused the signal: {error.message}"[:300]) from None
