"""Templates cannot starve each other (issue 21, defect 5), through the worker and the CLI: a
template cheap for the sample contact and heavy for everyone else passes `template add`; while
eight letters of it are in flight, other templates' letters go out in their normal time; it is
then marked slow in `template list`; a rendered subject past one line fails the action.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import WorkflowHandle
from temporalio.worker import Worker

from activities.letters import SLOW_AFTER
from sales.results import CommandResult
from starter.client import OpportunitiesClient
from store import letters
from tests.support.helpers import (
    eventually,
    open_one,
    setup_contact,
    setup_process,
    setup_references,
    store_unchecked_template,
)
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")

HEAVY = (
    "Subject: Welcome, {{ contact.first_name }}\n"
    '{% if contact.first_name != "Grace" %}'
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    "{% endif %}Dear {{ contact.first_name }}\n"
)
"""Merges at once for the sample contact (Grace Hopper), runs for minutes for anyone else."""
SECONDS = 2.0
"""The time limit of one render (the default, as in the report)."""


async def send_attempts(handle: WorkflowHandle[Any, Any]) -> list[int]:
    """The attempt numbers of the workflow's `send_letter` runs, from its history."""
    scheduled: set[int] = set()
    found = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == "send_letter":
                scheduled.add(event.event_id)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in scheduled:
                found.append(started.attempt)
    return found


async def sending(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the opportunity's `send_letter` has been picked up by the worker."""
    pending = (await handle.describe()).raw_description.pending_activities
    return any(
        p.activity_type.name == "send_letter"
        and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for p in pending
    )


async def test_a_heavy_template_delays_no_other_template_and_is_marked_slow(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    cli: Cli,
    tmp_path: Path,
    uid: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPPORTUNITIES_TEMPLATE_SECONDS", str(SECONDS))
    heavy_process = await setup_process(pool, uid, on_entry=False)
    await setup_references(pool, uid)
    light_process = await setup_process(pool, f"{uid}x", on_entry=False)
    await setup_references(pool, f"{uid}x")
    # The heavy template passes `template add`: the sample contact is Grace.
    path = tmp_path / "heavy.j2"
    path.write_text(HEAVY)
    added = await cli("template", "add", f"welcome-{uid}", str(path))
    assert added.code == 0, added.stderr

    async def opened(prefix: str, index: int, process_id: str, **fields: Any) -> str:
        contact_id = await setup_contact(pool, f"{uid}-{prefix}{index}", **fields)
        opportunity_id = f"{prefix}{index}-{uid}"
        await opportunities.create(contact_id, opportunity_id=opportunity_id, process_id=process_id)
        return opportunity_id

    email = {"email": "ada@example.com"}
    heavy_ids = [await opened("h", i, heavy_process, **email) for i in range(8)]
    light_ids = [await opened("l", i, light_process, **email) for i in range(5)]

    done_at: dict[str, float] = {}

    async def perform(opportunity_id: str) -> CommandResult:
        result = await opportunities.perform_actions(opportunity_id, ["welcome-letter"])
        done_at[opportunity_id] = time.monotonic()
        return result

    started = time.monotonic()
    heavy = [asyncio.create_task(perform(o)) for o in heavy_ids]
    handles = [opportunities.handle(o) for o in heavy_ids]

    async def all_sending() -> bool:
        return all(await asyncio.gather(*(sending(h) for h in handles)))

    await eventually(all_sending, 30)  # eight performs of it in flight
    light_sent = time.monotonic()
    light = await asyncio.wait_for(asyncio.gather(*(perform(o) for o in light_ids)), 30)
    light_done = max(done_at[o] for o in light_ids)
    heavy_done_meanwhile = sum(o in done_at for o in heavy_ids)
    heavy_results = await asyncio.wait_for(asyncio.gather(*heavy), 90)
    heavy_done = max(done_at[o] for o in heavy_ids)

    assert [r.actions[0].outcome for r in light] == ["letter_sent"] * 5
    # Each unrelated letter went out in about its normal time, well before the heavy ones
    # were done: at most one round of them (two at a time, each killed at the time limit).
    assert light_done - light_sent < 5.0, light_done - light_sent
    assert heavy_done_meanwhile <= 2, heavy_done_meanwhile
    assert light_done - started < (heavy_done - started) / 2, (light_done, heavy_done)
    # One template never held more than two children: eight renders took four rounds at least.
    assert heavy_done - started >= 4 * SECONDS

    messages = [r.actions[0].message for r in heavy_results]
    assert [(r.actions[0].outcome, r.actions[0].code) for r in heavy_results] == [
        ("failed", "template_error")
    ] * 8
    assert all(f"cannot be merged: took longer than {SECONDS:g} s" in m for m in messages)
    slow_messages = [m for m in messages if "the template is marked slow" in m]
    assert len(slow_messages) == 8 - SLOW_AFTER + 1, messages
    assert all("so its letters render one at a time" in m for m in slow_messages)
    for handle in handles:  # heartbeating while waiting: one attempt each, never retried
        assert await send_attempts(handle) == [1]
    for opportunity_id in heavy_ids:
        assert await letters.list_letters(pool, opportunity_id) == []

    listed = await cli("template", "list", "--json")
    [entry] = [t for t in listed.json() if t["name"] == f"welcome-{uid}"]
    assert (entry["slow"], entry["timeouts"]) == (True, 8)
    assert entry["slow_since"] is not None and entry["last_timeout_at"] >= entry["slow_since"]
    table = await cli("template", "list")
    [row] = [line for line in table.stdout.splitlines() if f" welcome-{uid} " in line]
    assert "(8 timeouts in a row)" in row and "since " in row

    # A letter that merges in time (to Grace) clears the mark.
    grace = await opened("g", 0, heavy_process, first_name="Grace", **email)
    result = await opportunities.perform_actions(grace, ["welcome-letter"])
    assert result.actions[0].outcome == "letter_sent", result.actions[0].message
    cleared = await letters.get_template(pool, f"welcome-{uid}")
    assert cleared is not None and (cleared.slow, cleared.timeouts) == (False, 0)


async def test_a_subject_that_renders_past_one_line_fails_the_action_and_stores_nothing(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    cli: Cli,
    tmp_path: Path,
    uid: str,
) -> None:
    body = 'Subject: {{ "0123456789" * 60 }}\nDear {{ contact.first_name }}\n'  # 600 characters
    path = tmp_path / "long.j2"
    path.write_text(body)
    refused = await cli("template", "add", f"long-{uid}", str(path))
    assert refused.code == 1
    assert refused.stderr.splitlines() == [
        f"error: template {path} cannot be used: the subject is longer than 500 characters (600)"
    ]
    assert await letters.get_template(pool, f"long-{uid}") is None

    await open_one(pool, opportunities, uid, contact={"email": "ada@example.com"}, on_entry=False)
    await store_unchecked_template(pool, f"welcome-{uid}", body)
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    [failed] = result.actions
    assert (failed.outcome, failed.code) == ("failed", "template_error")
    assert failed.message == (
        f"letter template 'welcome-{uid}' cannot be merged: the subject is longer than 500 "
        "characters (600)"
    )
    assert await send_attempts(opportunities.handle(f"o-{uid}")) == [1]
    assert await letters.list_letters(pool, f"o-{uid}") == []
