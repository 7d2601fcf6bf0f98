"""Subscriptions: who hears which opportunity events, and the rules of delivering them.

A subscription sends the events of the types it names (of one process, if it names one)
either to a URL, as a signed webhook (Standard Webhooks), or to a Temporal workflow, as the
signal `opportunity_event`. Delivery is at least once and ordered per opportunity: an event
that fails is tried again with exponential backoff and holds back only its opportunity's
later events; one that has failed for longer than the parking time is parked until an
operator redelivers or skips it.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sales.events import EVENT_TYPES
from sales.validation import IdText, LineText

SubscriptionStatus = Literal["active", "paused", "deleted"]
AddressScope = Literal["public", "loopback", "private"]
"""Which receiver addresses deliveries may reach: `public` only; also `loopback` (the local
machine, `make run`); also `private` (loopback, private and link-local networks)."""

MAX_URL = 2000
SIGNAL = "opportunity_event"
"""The signal a Temporal subscriber receives, with the event as its one argument."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class SubscriptionError(ValueError):
    """A subscription that cannot be added; the message is one line."""


class Subscription(BaseModel):
    """A subscription as it is stored (its secret apart)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    subscription_id: IdText
    url: str | None = None
    """Where webhooks go (http or https); or None for a Temporal subscriber."""
    workflow_id: IdText | None = None
    """The Temporal workflow that receives the signal `opportunity_event`."""
    events: list[str] = Field(min_length=1, max_length=len(EVENT_TYPES))
    process_id: IdText | None = None
    """Only the events of this process's opportunities."""
    status: SubscriptionStatus = "active"
    created_by: LineText | None = None

    @field_validator("subscription_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                "a subscription id is 1 to 63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event type {unknown[0]!r}; the types are {', '.join(EVENT_TYPES)}"
            )
        return sorted(set(value), key=EVENT_TYPES.index)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value)
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Subscription:
        if (self.url is None) == (self.workflow_id is None):
            raise ValueError("a subscription has either a URL or a workflow id")
        return self

    @property
    def target(self) -> str:
        return self.url or f"workflow {self.workflow_id}"

    def wants(self, event_type: str, process_id: str | None) -> bool:
        return event_type in self.events and self.process_id in (None, process_id)


def check_url(url: str) -> str:
    """The URL's host if it can receive webhooks: http or https, a host, no credentials, no
    fragment, printable ASCII; otherwise `SubscriptionError`."""
    if len(url) > MAX_URL:
        raise SubscriptionError(f"the URL is longer than {MAX_URL} characters")
    if not url.isascii() or any(not char.isprintable() or char.isspace() for char in url):
        raise SubscriptionError("the URL holds spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise SubscriptionError(f"the URL cannot be read: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise SubscriptionError(f"the URL must be http or https, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise SubscriptionError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise SubscriptionError("the URL may not hold a user or password (use the secret)")
    if parts.fragment:
        raise SubscriptionError("the URL may not have a fragment (#...)")
    if port == 0:
        raise SubscriptionError("the URL's port is 0")
    return parts.hostname


def address_allowed(address: str, scope: AddressScope) -> bool:
    """Whether deliveries may connect to `address` under `scope`. Never: unspecified,
    multicast or reserved addresses; loopback only from `loopback`; private, link-local,
    shared (CGNAT) and unique-local only under `private`."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return False
    if ip.is_loopback:
        return scope in ("loopback", "private")
    if ip.is_reserved:
        return False
    if ip.is_private or ip.is_link_local or ip in _SHARED or not ip.is_global:
        return scope == "private"
    return True


_SHARED = ipaddress.ip_network("100.64.0.0/10")


class DeliveryPolicy(BaseModel):
    """When a failed delivery is tried again, and when it is parked."""

    model_config = ConfigDict(frozen=True)

    first_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(minutes=5)
    park_after: timedelta = timedelta(hours=24)

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failure in a row: doubling, at most `max_backoff`."""
        exponent = min(max(attempts - 1, 0), 30)
        return min(self.first_backoff * (2**exponent), self.max_backoff)

    def parks(self, first_failed_at: datetime, now: datetime) -> bool:
        return now - first_failed_at >= self.park_after


DeliveryResult = Literal["delivered", "failed", "parked"]
