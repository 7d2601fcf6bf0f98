"""The rules of subscriptions, over whole classes of input: which receiver addresses a
delivery may reach, which URLs and subscriptions are accepted, and the backoff."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sales.events import EVENT_TYPES
from sales.subscriptions import (
    DeliveryPolicy,
    Subscription,
    SubscriptionError,
    address_allowed,
    check_url,
)


@given(st.ip_addresses())
def test_public_scope_reaches_only_global_unicast_addresses(ip: ipaddress._BaseAddress) -> None:
    if address_allowed(str(ip), "public"):
        plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        assert plain.is_global and not plain.is_multicast and not plain.is_loopback
        assert not plain.is_private and not plain.is_link_local


@given(st.ip_addresses())
def test_each_scope_allows_more_than_the_one_before(ip: ipaddress._BaseAddress) -> None:
    public, loopback, private = (address_allowed(str(ip), s)
                                 for s in ("public", "loopback", "private"))  # fmt: skip
    assert (not public or loopback) and (not loopback or private)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1", "10.0.0.1", "172.16.5.4",
     "192.168.1.1", "169.254.169.254", "fe80::1", "fc00::1", "100.64.0.1", "0.0.0.0", "::",
     "224.0.0.1", "255.255.255.255", "::ffff:10.0.0.1", "fe80::1%eth0"],
)  # fmt: skip
def test_no_internal_address_is_public(address: str) -> None:
    assert not address_allowed(address, "public")


def test_loopback_is_allowed_only_when_asked() -> None:
    assert address_allowed("127.0.0.1", "loopback") and address_allowed("::1", "loopback")
    assert not address_allowed("10.0.0.1", "loopback")
    assert address_allowed("10.0.0.1", "private") and address_allowed("8.8.8.8", "public")


@given(st.text(max_size=3000))
def test_any_text_is_a_url_with_a_host_or_a_one_line_refusal(text: str) -> None:
    try:
        host = check_url(text)
    except SubscriptionError as error:
        assert "\n" not in str(error) and len(str(error)) < 300
    else:
        assert text.startswith(("http://", "https://")) and host


@pytest.mark.parametrize(
    ("url", "said"),
    [("ftp://x.example/a", "http or https"), ("https://", "no host"),
     ("https://a:b@x.example/", "user or password"), ("https://x.example/#f", "fragment"),
     ("https://x.example/a b", "spaces"), ("https://x.example/\r\nX: y", "control"),
     ("https://bücher.example/", "non-ASCII"), ("https://x.example:99999/", "cannot be read"),
     ("https://x.example/" + "a" * 2000, "longer than")],
)  # fmt: skip
def test_bad_urls_say_why(url: str, said: str) -> None:
    with pytest.raises(SubscriptionError, match=said):
        check_url(url)


@given(st.lists(st.text(max_size=30), min_size=1, max_size=5), st.text(max_size=80))
def test_a_subscription_is_valid_or_refused_with_a_validation_error(
    events: list[str], subscription_id: str
) -> None:
    try:
        found = Subscription(subscription_id=subscription_id, workflow_id="w", events=events)
    except ValidationError:
        return
    assert set(found.events) <= set(EVENT_TYPES) and found.subscription_id.isascii()


def test_a_subscription_has_one_target() -> None:
    with pytest.raises(ValidationError, match="either a URL or a workflow id"):
        Subscription(subscription_id="s", events=["won"])
    with pytest.raises(ValidationError, match="either a URL or a workflow id"):
        Subscription(subscription_id="s", events=["won"], url="https://x.example/",
                     workflow_id="w")  # fmt: skip


@given(st.integers(min_value=0, max_value=10_000))
def test_backoff_doubles_up_to_its_ceiling(attempts: int) -> None:
    policy = DeliveryPolicy()
    wait = policy.backoff(attempts)
    assert timedelta(seconds=1) <= wait <= timedelta(minutes=5)
    assert policy.backoff(attempts + 1) >= wait
