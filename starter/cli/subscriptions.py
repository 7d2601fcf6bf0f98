"""`opportunities subscription ...`: who hears about opportunity events (signed webhooks or a
Temporal workflow's signal), and what to do with an event that could not be delivered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer

from sales.events import EVENT_TYPES
from sales.subscriptions import SubscriptionError
from starter.cli.common import (
    JsonFlag,
    UserError,
    actor,
    cli_signer,
    console,
    counted,
    database,
    new_app,
    new_table,
    print_fields,
    print_json,
    print_table,
    run,
)
from starter.client import OpportunitiesClient
from starter.client.subscriptions import Subscriptions, secret_from

app = new_app("Subscriptions to opportunity events: webhooks and Temporal subscribers.")

T = TypeVar("T")
Id = Annotated[str, typer.Argument(help="The subscription's id.")]
EventOption = Annotated[
    str | None, typer.Option("--event", help="One parked event's id (default: every one).")
]


def _with(work: Callable[[Subscriptions], Awaitable[T]]) -> T:
    async def go() -> T:
        async with database() as pool:
            client = await OpportunitiesClient.connect(signer=cli_signer())
            try:
                return await work(Subscriptions(pool, client.temporal))
            except SubscriptionError as error:
                raise UserError(str(error)) from None

    return run(go)


@app.command("add")
def add(
    events: Annotated[
        str, typer.Option("--events", help=f"Comma-separated: {', '.join(EVENT_TYPES)}.")
    ],
    url: Annotated[str | None, typer.Option("--url", help="Receives signed webhooks.")] = None,
    workflow_id: Annotated[
        str | None,
        typer.Option("--workflow-id", help="A running workflow that gets `opportunity_event`."),
    ] = None,
    process_id: Annotated[
        str | None, typer.Option("--process", help="Only this process's opportunities.")
    ] = None,
    secret_env: Annotated[
        str | None,
        typer.Option("--secret-env", help="The variable holding the secret (whsec_...)."),
    ] = None,
    subscription_id: Annotated[str | None, typer.Option("--id")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Send these events to a URL (signed, Standard Webhooks) or a Temporal workflow, from
    now on. Without --secret-env a secret is made and printed once."""
    if (url is None) == (workflow_id is None):
        raise UserError("give either --url or --workflow-id")
    wanted = [name.strip() for name in events.split(",") if name.strip()]
    try:
        secret = secret_from(secret_env)
    except SubscriptionError as error:
        raise UserError(str(error)) from None
    added, made = _with(
        lambda subs: subs.add(
            url=url,
            workflow_id=workflow_id,
            events=wanted,
            process_id=process_id,
            secret=secret,
            subscription_id=subscription_id,
            by=actor(),
        )
    )
    if as_json:
        print_json({**added.model_dump(mode="json"), "secret": made})
        return
    console.print(
        f"subscription {added.subscription_id}: {', '.join(added.events)} to {added.target}"
    )
    if made:
        console.print(
            f"its secret (shown once; verify signatures with it): {made}", highlight=False
        )


@app.command("list")
def list_(
    include_deleted: Annotated[bool, typer.Option("--all", help="Also deleted ones.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Subscriptions, with what they delivered and what waits."""
    found = _with(lambda subs: subs.all(include_deleted=include_deleted))
    if as_json:
        print_json(found)
        return
    table = new_table("id", "to", "events", "process", "status", "delivered", "waiting",
                      "parked", "lag")  # fmt: skip
    for row in found:
        sub = row.subscription
        table.add_row(
            sub.subscription_id, sub.target, ",".join(sub.events), sub.process_id or "",
            sub.status, str(row.delivered), str(row.pending - row.parked), str(row.parked),
            _lag(row.oldest_undelivered_at),
        )  # fmt: skip
    print_table(table)


@app.command("show")
def show(subscription_id: Id, as_json: JsonFlag = False) -> None:
    """One subscription, and its parked events (oldest first)."""
    row, parked = _with(lambda subs: subs.show(subscription_id))
    if as_json:
        print_json({"subscription": row, "parked": parked})
        return
    sub = row.subscription
    print_fields({
        "subscription": sub.subscription_id, "to": sub.target, "events": ", ".join(sub.events),
        "process": sub.process_id, "status": sub.status, "created": row.created_at.isoformat(),
        "created by": sub.created_by, "delivered": str(row.delivered),
        "last delivered": row.last_delivered_at.isoformat() if row.last_delivered_at else None,
        "waiting": str(row.pending - row.parked), "parked": str(row.parked),
        "lag": _lag(row.oldest_undelivered_at),
    })  # fmt: skip
    if parked:
        table = new_table("event", "type", "attempts", "parked at", "last error")
        for item in parked:
            table.add_row(item.event_id, item.type, str(item.attempts),
                          item.parked_at.isoformat(), item.last_error or "")  # fmt: skip
        print_table(table)
        console.print(
            f"deliver again: opportunities subscription redeliver {sub.subscription_id} "
            f"[--event ID]; drop: opportunities subscription skip {sub.subscription_id} "
            "[--event ID]"
        )


@app.command("pause")
def pause(subscription_id: Id) -> None:
    """Stop delivering; events wait (and are kept) until it is resumed."""
    _with(lambda subs: subs.pause(subscription_id))
    console.print(f"subscription {subscription_id} paused")


@app.command("resume")
def resume(subscription_id: Id) -> None:
    """Deliver again, from where it stopped."""
    _with(lambda subs: subs.resume(subscription_id))
    console.print(f"subscription {subscription_id} resumed")


@app.command("delete")
def delete(subscription_id: Id) -> None:
    """Stop delivering for good; its undelivered events are dropped."""
    _with(lambda subs: subs.delete(subscription_id))
    console.print(f"subscription {subscription_id} deleted")


@app.command("redeliver")
def redeliver(subscription_id: Id, event_id: EventOption = None) -> None:
    """Try parked events again now (their opportunity's later events follow them)."""
    count = _with(lambda subs: subs.redeliver(subscription_id, event_id))
    _report(count, "to be delivered again", event_id)


@app.command("skip")
def skip(subscription_id: Id, event_id: EventOption = None) -> None:
    """Drop parked events without delivering them; their opportunity's later events flow."""
    count = _with(lambda subs: subs.skip(subscription_id, event_id))
    _report(count, "skipped", event_id)


def _report(count: int, done: str, event_id: str | None) -> None:
    if count == 0 and event_id is not None:
        raise UserError(f"no parked event {event_id!r}")
    console.print(f"{counted(count, 'parked event')} {done}")


def _lag(oldest: datetime | None) -> str:
    if oldest is None:
        return "0s"
    return f"{max((datetime.now(UTC) - oldest).total_seconds(), 0):.0f}s"
