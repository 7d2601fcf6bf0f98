"""Every value at its edges, every id once: each defect of the second hostile probe, reproduced
as it was reported, ends applied, rejected (with its code) or failed at once, and the
opportunity goes on; its read model agrees (`verify`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.common import RawValue, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

import store.opportunities
from sales.errors import CommandRejected
from starter.client import OpportunitiesClient, StartFailed
from starter.client.verify import verify
from tests.integration.test_nothing_stuck import code_of, rejection
from tests.integration.test_operators import current_details
from tests.support.helpers import (
    add_users,
    eventually,
    open_one,
    setup_contact,
    task_failures,
)
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")

DIGITS = "1" + "0" * 4400
"""An integer past Python's 4,300-digit conversion limit."""


def raw(data: bytes | str) -> RawValue:
    """A payload exactly as a hostile client may send it."""
    encoded = data.encode() if isinstance(data, str) else data
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=encoded))


async def still_fine(opportunities: OpportunitiesClient, pool: asyncpg.Pool, oid: str) -> None:
    """The opportunity runs, has no failed workflow task, answers its query and a command,
    and agrees with its read model."""
    handle = opportunities.handle(oid)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert await task_failures(handle) == 0
    await opportunities.state(oid)
    verdict = await eventually(lambda: _agrees(opportunities, pool, oid))
    assert verdict.differences == []


async def _agrees(opportunities: OpportunitiesClient, pool: asyncpg.Pool, oid: str) -> Any:
    verdict = await verify(opportunities, pool, oid)
    return verdict if not verdict.differences else None


# --- 1. a very long integer ------------------------------------------------------------------


async def test_a_very_long_integer_is_refused_everywhere(
    client: Client,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    task_queue: str,
    uid: str,
) -> None:
    process_id = await open_one(pool, opportunities, uid)
    handle = opportunities.handle(f"o-{uid}")
    payload = '{"stage":"Proposal","x":' + DIGITS + "}"
    await handle.signal("change_stage", raw(payload))
    error = await rejection(handle, "change_stage", raw(payload))
    assert code_of(error) == "invalid_payload"
    assert error.message.startswith("invalid_payload: "), "the message starts with its code"
    assert "too large" in error.message and len(error.message) < 400
    state = await opportunities.state(f"o-{uid}")
    assert [r.code for r in state.rejected] == ["invalid_payload"]
    assert state.current_stage == "Prospect"
    await still_fine(opportunities, pool, f"o-{uid}")

    for workflow_type, start in [
        ("Opportunity", f'{{"opportunity_id":"n-{uid}","contact_id":"c-{uid}",'
                        f'"process_id":"{process_id}","x":{DIGITS}}}'),
        ("MassModify", f'{{"batch_id":"b-{uid}","ids":["o-{uid}"],"owner":{DIGITS}}}'),
    ]:  # fmt: skip
        prefix = "opportunity" if workflow_type == "Opportunity" else "mass-modify"
        started = await client.start_workflow(
            workflow_type, raw(start), id=f"{prefix}-n-{uid}", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(started.result(), 15)
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput"
        assert code_of(cause) == "invalid_payload"
        assert await task_failures(started) == 0, "failed at once, not task after task"
    assert await store.opportunities.get_opportunity(pool, f"n-{uid}") is None


# --- 2. dates at the edge of the calendar ----------------------------------------------------


async def test_dates_outside_the_business_range_are_refused(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    activity = f"o-{uid}/intro-call/1"
    refused = await cli("activity", "modify", activity, "--due", "0001-01-01T00:00:00+14:00")
    assert refused.code == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "business range" in refused.stderr
    handle = opportunities.handle(f"o-{uid}")
    for due in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1899-12-31T23:59Z"):
        error = await rejection(handle, "modify_activity", {"activity_id": activity, "due": due})
        assert code_of(error) == "invalid_payload" and "business range" in error.message
        await handle.signal("modify_activity", {"activity_id": activity, "due": due})
    with pytest.raises(CommandRejected) as beyond:  # due inside, due + duration past the end
        await opportunities.modify_activity(
            f"o-{uid}", activity, due="2199-12-31T23:00:00Z", duration_minutes=10080
        )
    assert beyond.value.code == "out_of_range"
    await opportunities.modify_activity(f"o-{uid}", activity, due="2199-12-31T23:00:00Z")
    with pytest.raises(CommandRejected) as longer:  # the stored due, a longer duration
        await opportunities.modify_activity(f"o-{uid}", activity, duration_minutes=10080)
    assert longer.value.code == "out_of_range"
    state = await opportunities.state(f"o-{uid}")
    assert [r.code for r in state.rejected] == ["invalid_payload"] * 3
    listed = await cli("activity", "list", "--opportunity", f"o-{uid}", "--json")
    assert listed.code == 0, listed.stderr
    await still_fine(opportunities, pool, f"o-{uid}")


async def test_a_part_the_read_model_refuses_is_kept_aside_and_the_rest_is_written(
    client: Client,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    """A write the read model refuses as bad data (here a constraint it gained) never fails
    the workflow nor blocks later writes: that part goes to `dead_letters`, the rest is
    written, and the details, `verify` and the state say so."""
    await open_one(pool, opportunities, uid)
    constraint = f"refuse_{uid}"
    await pool.execute(
        f"ALTER TABLE calendar_activities ADD CONSTRAINT {constraint}"
        f" CHECK (subject <> 'refused-{uid}') NOT VALID"
    )
    try:
        activity = f"o-{uid}/intro-call/1"
        result = await opportunities.modify_activity(f"o-{uid}", activity, subject=f"refused-{uid}")
        assert result.status == "open"
        state = await opportunities.state(f"o-{uid}")
        assert state.dead_letters_count == 1
        assert state.dead_letters[0].what == f"calendar modify {activity}"
        history = await store.opportunities.get_history(pool, f"o-{uid}")
        assert history[-1].reason == f"calendar activity {activity} changed: subject"
        verdict = await verify(opportunities, pool, f"o-{uid}")
        assert any("not written to the read model" in d for d in verdict.differences)
        details = await current_details(client, f"o-{uid}")
        assert "Not written to the read model (1" in details
        moved = await opportunities.change_stage(f"o-{uid}", "Proposal")  # later writes go on
        assert moved.current_stage == "Proposal"
        row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
        assert row is not None and row.current_stage == "Proposal"
    finally:
        await pool.execute(f"ALTER TABLE calendar_activities DROP CONSTRAINT {constraint}")
        await pool.execute("DELETE FROM dead_letters WHERE opportunity_id = $1", f"o-{uid}")


# --- 4 and 12. an id used once, a state only from Temporal ------------------------------------


async def test_a_closed_opportunity_cannot_be_started_again(
    client: Client,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    cli: Cli,
    task_queue: str,
    uid: str,
) -> None:
    await open_one(pool, opportunities, uid)
    await setup_contact(pool, f"{uid}-other")
    won = await opportunities.change_stage(f"o-{uid}", "Closed won")
    assert won.status == "won"
    real = await store.opportunities.find_run(pool, f"o-{uid}")
    assert real is not None and real[1] is not None
    again = await client.start_workflow(
        "Opportunity",
        {"opportunity_id": f"o-{uid}", "contact_id": f"c-{uid}-other"},
        id=f"opportunity-o-{uid}",
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(again.result(), 15)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and code_of(cause) == "already_exists"
    assert cause.message.startswith("already_exists: ")
    assert await store.opportunities.find_run(pool, f"o-{uid}") == real, "nothing written"
    row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
    assert row is not None and (row.contact_id, row.status) == (f"c-{uid}", "won")

    shown = await cli("show", f"o-{uid}", "--json")
    assert shown.code == 0, shown.stderr
    assert (shown.json()["contact_id"], shown.json()["status"]) == (f"c-{uid}", "won")
    assert (await verify(opportunities, pool, f"o-{uid}")).differences == []
    refused = await cli("create", "--contact", f"c-{uid}", "--id", f"o-{uid}",
                        "--process", f"life-{uid}")  # fmt: skip
    assert refused.code == 1 and "already exists" in refused.stderr

    reopened = await opportunities.reopen(f"o-{uid}", "Proposal", by="ops")
    assert (reopened.status, reopened.contact_id) == ("open", f"c-{uid}")
    assert reopened.history[-1].source == "reopened"
    await still_fine(opportunities, pool, f"o-{uid}")


async def test_a_start_cannot_carry_a_made_up_state(
    client: Client,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    task_queue: str,
    uid: str,
) -> None:
    await open_one(pool, opportunities, uid)
    state = await opportunities.state(f"o-{uid}")
    changes = {"opportunity_id": f"fx-{uid}", "current_stage": "Recommendation", "owner": "mallory"}
    made_up = state.model_copy(update=changes)
    forged = await client.start_workflow(
        "Opportunity",
        {"opportunity_id": f"fx-{uid}", "contact_id": f"c-{uid}",
         "carried": {"state": made_up.model_dump(mode="json")}},
        id=f"opportunity-fx-{uid}",
        task_queue=task_queue,
    )  # fmt: skip
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(forged.result(), 15)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput"
    assert "carried" in cause.message
    assert await store.opportunities.get_opportunity(pool, f"fx-{uid}") is None

    with pytest.raises(CommandRejected) as open_one_reopened:
        await opportunities.reopen(f"o-{uid}", "Proposal")
    assert open_one_reopened.value.code == "not_closed"


async def test_reopen_refusals_carry_their_codes(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    await opportunities.change_stage(f"o-{uid}", "Closed lost")
    for stage, code in [("Closed won", "not_allowed"), ("Nowhere", "unknown_stage")]:
        with pytest.raises(CommandRejected) as refused:
            await opportunities.reopen(f"o-{uid}", stage)
        assert refused.value.code == code
    assert (await opportunities.reopen(f"o-{uid}", "Prospect")).status == "open"
    with pytest.raises(CommandRejected) as unknown:
        await opportunities.reopen(f"nobody-{uid}", "Prospect")
    assert unknown.value.code == "not_allowed"


# --- 9. one rule for users ---------------------------------------------------------------------


async def test_an_owner_must_be_a_user(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await open_one(pool, opportunities, uid)
    with pytest.raises(CommandRejected) as unknown:
        await opportunities.change_owner(f"o-{uid}", f"nobody-{uid}")
    assert unknown.value.code == "unknown_user"
    await add_users(pool, f"ann-{uid}")
    assert (await opportunities.change_owner(f"o-{uid}", f"ann-{uid}")).status == "open"
    refused = await cli("create", "--contact", f"c-{uid}", "--id", f"u-{uid}",
                        "--process", f"life-{uid}", "--owner", f"nobody-{uid}")  # fmt: skip
    assert refused.code == 1 and "unknown user" in refused.stderr
    with pytest.raises(StartFailed) as start:  # past the CLI's check: the workflow refuses
        await opportunities.create(f"c-{uid}", opportunity_id=f"u-{uid}", owner=f"nobody-{uid}",
                                   process_id=process_id)  # fmt: skip
    assert start.value.code == "unknown_user"
    assert await store.opportunities.get_opportunity(pool, f"u-{uid}") is None
    created = await opportunities.create(f"c-{uid}", opportunity_id=f"u-{uid}",
                                         owner=f"ann-{uid}", process_id=process_id)  # fmt: skip
    assert created.owner == f"ann-{uid}", "a refused start leaves its id free"


# --- 10. names kept as escaped excerpts ------------------------------------------------------


async def test_a_signal_name_is_kept_escaped_and_cut(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    handle = opportunities.handle(f"o-{uid}")
    name = "evil\x1b[31mRED\x1b[0m\nFAKE 2026 INFO line \u202e" + "x" * 500
    await handle.signal(name, {"a": 1})
    state = await eventually(
        lambda: _rejected(opportunities, f"o-{uid}"), seconds=10
    )
    [rejected] = state.rejected
    assert rejected.code == "unknown_command"
    assert rejected.command.startswith("evil\\x1b[31mRED\\x1b[0m\\x0aFAKE")
    assert len(rejected.command) <= 100
    assert not any(ord(c) < 32 or c == "\u202e" for c in rejected.command + rejected.reason)


async def _rejected(opportunities: OpportunitiesClient, oid: str) -> Any:
    state = await opportunities.state(oid)
    return state if state.rejected else None


# --- 14. failed actions can be found ----------------------------------------------------------


async def test_failed_actions_are_found_by_search_and_by_temporal(
    client: Client,
    cli: Cli,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    process_id = await open_one(pool, opportunities, uid)
    await pool.execute("DELETE FROM letter_templates WHERE name = $1", f"welcome-{uid}")
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    assert result.actions[0].code == "unknown_template"
    found = await cli("search", "--failed", "--process", process_id, "--json")
    assert [o["opportunity_id"] for o in found.json()["items"]] == [f"o-{uid}"]
    assert found.json()["items"][0]["failed_actions"] == 1

    async def indexed() -> list[str]:
        query = f'FailedActions > 0 AND SalesProcess = "{process_id}"'
        return [e.id async for e in client.list_workflows(query)]

    assert await eventually(indexed, seconds=20) == [f"opportunity-o-{uid}"]
    details = await current_details(client, f"o-{uid}")
    assert "add the letter template and perform it again" in details


# --- 3. remarks ------------------------------------------------------------------------------


async def test_remarks_go_to_the_read_model_and_the_state_keeps_the_newest(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    for n in range(8):
        await opportunities.add_remark(f"o-{uid}", f"remark {n} " + "字" * 3990)
    state = await opportunities.state(f"o-{uid}")
    assert [r.seq for r in state.remarks] == [4, 5, 6, 7, 8]
    listed = await cli("remark", "list", f"o-{uid}", "--json")
    assert [r["seq"] for r in listed.json()] == list(range(8, 0, -1))
    assert json.loads(listed.stdout)[-1]["text"].startswith("remark 0 字")
    await still_fine(opportunities, pool, f"o-{uid}")
