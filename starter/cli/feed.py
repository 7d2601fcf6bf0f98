"""`opportunities feed`: the outbox of opportunity events, in the order they were written;
`--follow` keeps reading as new ones commit."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

import typer

from sales.events import EVENT_TYPES
from starter.cli.common import JsonFlag, UserError, console, database, new_app, run
from starter.client.read_model import ReadModel

app = new_app("Opportunity events.")

POLL_SECONDS = 1.0
"""How often `--follow` looks for new events."""


@app.command("feed")
def feed(
    opportunity_id: Annotated[str | None, typer.Option("--opportunity")] = None,
    types: Annotated[
        str | None, typer.Option("--type", help=f"Comma-separated: {', '.join(EVENT_TYPES)}.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="From (ISO-8601).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep reading new events.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 1000,
    as_json: JsonFlag = False,
) -> None:
    """Opportunity events (stage changes, won, lost, actions, activities, details, ...), in
    the order they were written; with --json, one JSON object a line."""
    wanted = [t.strip() for t in types.split(",")] if types else None
    unknown = sorted(set(wanted or []) - set(EVENT_TYPES))
    if unknown:
        raise UserError(f"unknown event type {unknown[0]!r}; types are {', '.join(EVENT_TYPES)}")
    start = _since(since)

    async def work() -> None:
        async with database() as pool:
            reader = ReadModel(pool)
            cursor = None
            shown = 0
            while True:
                page = await reader.events(after=cursor, opportunity_id=opportunity_id,
                                           types=wanted, since=start,
                                           limit=min(500, limit - shown) or 1)  # fmt: skip
                for event in page.events:
                    _print(event.model_dump(mode="json"), as_json)
                shown += len(page.events)
                cursor = page.cursor
                if not follow and (not page.events or shown >= limit):
                    return
                if not page.events:
                    await asyncio.sleep(POLL_SECONDS)

    try:
        run(work)
    except KeyboardInterrupt:  # --follow ends with Ctrl-C
        raise typer.Exit(0) from None


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--since {text!r} is not a date and time (ISO-8601)") from None
    return moment if moment.tzinfo else moment.astimezone()


def _print(event: dict[str, object], as_json: bool) -> None:
    if as_json:
        console.print(json.dumps(event, ensure_ascii=False), highlight=False, soft_wrap=True)
        return
    data = event["data"] if isinstance(event["data"], dict) else {}
    said = ", ".join(f"{k}={v}" for k, v in data.items() if v is not None)
    console.print(
        f"{event['at']} {event['opportunity_id']} #{event['seq']} {event['type']}: {said}",
        highlight=False,
        soft_wrap=True,
    )
