"""No input leaves an opportunity stuck: each hostile input here ends applied, rejected (with
a code) or failed (one side effect, with a code), in bounded time, and the opportunity takes
its next command.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import RawValue, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

import store
import store.opportunities
from activities.letters import put_template
from runtime import embedded
from sales.errors import CommandRejected
from sales.process import ProcessDefinition
from starter.client import OpportunitiesClient
from store import calendar, letters, processes, users
from tests.support.helpers import (
    eventually,
    example_definition,
    open_one,
    setup_contact,
    start_continuing_early,
    store_unchecked_template,
    task_failures,
)
from tests.support.servers import Cli, Servers
from workflows.mass_messages import MassModifyInput

pytestmark = pytest.mark.usefixtures("verified")

EMAIL = {"email": "ada@example.com"}
ALLOW = WorkflowIDReusePolicy.ALLOW_DUPLICATE


def raw(data: bytes, encoding: bytes = b"json/plain") -> RawValue:
    """A payload exactly as a hostile client may send it."""
    return RawValue(Payload(metadata={"encoding": encoding}, data=data))


async def rejection(handle: WorkflowHandle[Any, Any], name: str, payload: Any) -> ApplicationError:
    """The error an update is rejected with."""
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(name, payload)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


def code_of(error: ApplicationError) -> str:
    details = error.details[0] if error.details else {}
    assert isinstance(details, dict)
    return str(details.get("code"))


# --- 1. a NUL character --------------------------------------------------------------------


async def test_a_nul_character_is_refused_and_the_opportunity_goes_on(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    servers: Servers,
    uid: str,
) -> None:
    await open_one(pool, opportunities, uid)
    process = await asyncio.create_subprocess_exec(
        embedded.temporal_binary(), "workflow", "update", "execute",
        "--address", servers.temporal_address, "--workflow-id", f"opportunity-o-{uid}",
        "--name", "change_owner", "--input", '{"owner":"a\\u0000b"}',
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode != 0
    assert (
        "invalid change_owner payload: owner: contains a control character (U+0000)"
        in (out + err).decode()
    )

    handle = opportunities.handle(f"o-{uid}")
    for name, payload in [
        ("change_owner", {"owner": "ann", "by": "a\x00b"}),
        ("change_stage", {"stage": "Proposal", "reason": "a\x00b"}),
        ("add_action", {"stage": "Prospect", "action": {
            "action_id": "x", "type": "letter", "title": "a\x00b", "template": "t"}}),
    ]:  # fmt: skip
        error = await rejection(handle, name, payload)
        assert code_of(error) == "invalid_payload" and "U+0000" in error.message
    await handle.signal("change_owner", {"owner": "a\x00b"})
    result = await opportunities.change_owner(f"o-{uid}", "bob")
    assert result.status == "open"
    state = await opportunities.state(f"o-{uid}")
    assert state.owner == "bob" and [r.code for r in state.rejected] == ["invalid_payload"]
    row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
    assert row is not None and row.owner == "bob"

    # A name with NUL in the start input: the start fails at once, nothing is written.
    with pytest.raises(Exception, match="U\\+0000"):
        await opportunities.create(f"c-{uid}", opportunity_id=f"n-{uid}", name="a\x00b")
    assert await store.opportunities.get_opportunity(pool, f"n-{uid}") is None


# --- 2. failures that must not retry forever ----------------------------------------------


async def attempts(handle: WorkflowHandle[Any, Any], activity_type: str) -> list[int]:
    """The attempt numbers of the activity's runs, from history."""
    scheduled: dict[int, str] = {}
    found = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attributes.activity_type.name
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            if scheduled.get(attributes.scheduled_event_id) == activity_type:
                found.append(attributes.attempt)
    return found


async def test_a_letter_header_with_a_line_break_fails_the_action_without_retries(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    """A subject line holding a CR (from a template stored before templates were checked) is
    refused where it is rendered, before any e-mail is built. The action fails once, with its
    code, and can be performed again once the template is fixed."""
    await open_one(pool, opportunities, uid, contact=EMAIL)
    await store_unchecked_template(pool, f"welcome-{uid}", 'Subject: Hi{{ "\\r" }}Bcc: x\nText')
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    [failed] = result.actions
    assert (failed.outcome, failed.code) == ("failed", "template_error"), failed.message
    assert "the subject must be one line of text; it contains a line break" in failed.message
    assert await attempts(opportunities.handle(f"o-{uid}"), "send_letter") == [1]
    await put_template(pool, f"welcome-{uid}", "Subject: Hi\nText")
    again = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    assert again.actions[0].outcome == "letter_sent"


async def test_a_contact_stored_with_a_line_break_fails_the_letter_with_a_reason(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    """A contact whose name holds a CR (stored before names were validated) cannot be read
    for a letter: the action fails once, saying which field."""
    await open_one(pool, opportunities, uid, contact=EMAIL)
    await pool.execute(
        "UPDATE contacts SET first_name = $2 WHERE contact_id = $1", f"c-{uid}", "Ada\rBcc: x"
    )
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    [failed] = result.actions
    assert (failed.outcome, failed.code) == ("failed", "bad_data")
    assert "first_name: must be one line of text; it contains a line break" in failed.message
    assert await attempts(opportunities.handle(f"o-{uid}"), "send_letter") == [1]


@pytest.mark.parametrize(
    "body",
    ["{{ 1/0 }}", "{{ 'a' + 1 }}", "{% include 'other' %}"],
    ids=["divide-by-zero", "string-plus-number", "include"],
)
async def test_a_template_that_fails_while_rendering_fails_the_action_once(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str, body: str
) -> None:
    await open_one(pool, opportunities, uid, contact=EMAIL)
    await store_unchecked_template(pool, f"welcome-{uid}", body)
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    assert (result.actions[0].outcome, result.actions[0].code) == ("failed", "template_error")
    assert await attempts(opportunities.handle(f"o-{uid}"), "send_letter") == [1]


# --- 4. large payloads ---------------------------------------------------------------------


async def test_large_rejected_signals_keep_the_state_small(
    client: Client, worker: Worker, pool: asyncpg.Pool, task_queue: str, uid: str
) -> None:
    """Five 1 MB signals: each is rejected and kept as a kibibyte; the state query works and
    the run continues as new."""
    handle = await start_continuing_early(client, pool, uid, f"big-{uid}", task_queue, 40)
    opportunities = OpportunitiesClient(client, task_queue)
    first_run = (await handle.describe()).run_id
    huge = {"stage": "Proposal", "reason": "x" * 1_000_000}
    for _ in range(5):
        await handle.signal("change_stage", huge)
    for n in range(12):
        await opportunities.change_owner(f"big-{uid}", f"o{n}")
    state = await opportunities.state(f"big-{uid}")
    assert len(state.rejected) == 5
    assert all(r.code == "invalid_payload" and len(r.payload) <= 1024 for r in state.rejected)
    assert "1,000,032 bytes; at most 65,536" in state.rejected[0].reason
    assert (await handle.describe()).run_id != first_run, "continued as new"
    assert await task_failures(handle) == 0


async def test_a_process_definition_over_the_limit_is_refused(
    cli: Cli, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    document = example_definition(f"huge-{uid}")
    letter = {"type": "letter", "title": "字" * 450, "template": "welcome"}
    document["stages"] = [
        {
            "name": f"Stage {s}",
            "actions": [{"action_id": f"a-{s}-{a}", **letter} for a in range(5)],
        }
        for s in range(40)
    ]
    document["outcome_stages"] = {}
    definition = ProcessDefinition.model_validate(document)
    with pytest.raises(store.StoreError, match="bytes as JSON; at most 262,144"):
        await processes.apply_process(pool, definition)
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(document))
    refused = await cli("process", "apply", str(path), "--allow-missing")
    assert refused.code == 1 and "at most 262,144" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert await processes.get_process(pool, f"huge-{uid}") is None


# --- 5. and 6. keys that cannot collide, generations never reused ------------------------


async def test_ids_of_different_opportunities_never_collide(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    """`col` with action `a-intro-call` and `col-a` with `intro-call` (once `act-col-a-
    intro-call-1` both); `cx` performing `y-intro-call` before `cx-y` opens."""
    process_id = await open_one(pool, opportunities, uid, on_entry=False)
    extra = {"type": "calendar", "title": "Extra", "activity": {"kind": "call"}}
    col, col_a, cx, cx_y = f"col{uid}", f"col{uid}-a", f"cx{uid}", f"cx{uid}-y"
    for opportunity_id in (col, col_a, cx):
        await opportunities.create(f"c-{uid}", opportunity_id=opportunity_id, process_id=process_id)
    await opportunities.add_action(col, "Prospect", {"action_id": "a-intro-call", **extra})
    await opportunities.add_action(cx, "Prospect", {"action_id": "y-intro-call", **extra})
    created = [
        await opportunities.perform_actions(col, ["a-intro-call"]),
        await opportunities.perform_actions(col_a, ["intro-call"]),
        await opportunities.perform_actions(cx, ["y-intro-call"]),
    ]
    assert [r.actions[0].outcome for r in created] == ["activity_created"] * 3
    assert [r.actions[0].activity_id for r in created] == [
        f"{col}/a-intro-call/1",
        f"{col_a}/intro-call/1",
        f"{cx}/y-intro-call/1",
    ]
    opened = await opportunities.create(
        f"c-{uid}", opportunity_id=cx_y, process_id=process_id, wait_seconds=15
    )
    assert opened.status == "open"
    result = await opportunities.perform_actions(cx_y, ["intro-call"])
    assert result.actions[0].activity_id == f"{cx_y}/intro-call/1"
    for opportunity_id in (col, col_a, cx, cx_y):
        assert len(await calendar.list_for(pool, opportunity_id)) == 1


async def test_an_action_deleted_and_added_again_gets_new_side_effects(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, contact=EMAIL)
    opp = f"o-{uid}"
    await opportunities.perform_actions(opp, ["welcome-letter"])
    await opportunities.delete_action(opp, "welcome-letter")
    await opportunities.add_action(opp, "Prospect", {"action_id": "welcome-letter",
        "type": "letter", "title": "Proposal", "template": f"proposal-{uid}"})  # fmt: skip
    result = await opportunities.perform_actions(opp, ["welcome-letter"])
    assert result.actions[0].outcome == "letter_sent"
    sent = await letters.list_letters(pool, opp)
    assert [(x.letter_id, x.template) for x in sent] == [
        (f"{opp}/welcome-letter/1", f"welcome-{uid}"),
        (f"{opp}/welcome-letter/2", f"proposal-{uid}"),
    ]

    await opportunities.complete_actions(opp, ["intro-call"], outcome="Interested")
    await opportunities.delete_action(opp, "intro-call")
    await opportunities.add_action(opp, "Prospect", {"action_id": "intro-call",
        "type": "calendar", "title": "Second call", "activity": {"kind": "call"}})  # fmt: skip
    result = await opportunities.perform_actions(opp, ["intro-call"])
    assert result.actions[0].activity_id == f"{opp}/intro-call/2"
    rows = {row.activity_id: row for row in await calendar.list_for(pool, opp)}
    assert (rows[f"{opp}/intro-call/1"].status, rows[f"{opp}/intro-call/1"].subject) == (
        "done",
        "Introductory call",
    )
    assert (rows[f"{opp}/intro-call/2"].status, rows[f"{opp}/intro-call/2"].subject) == (
        "active",
        "Second call",
    )


# --- 7. bad start input --------------------------------------------------------------------


async def failed_at_start(handle: WorkflowHandle[Any, Any]) -> str:
    """The workflow failed at once with `InvalidInput`, without a failed workflow task: its
    message."""
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 15)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput", cause
    assert await task_failures(handle) == 0
    return cause.message


async def test_a_bad_start_fails_the_workflow_at_once(
    client: Client, worker: Worker, pool: asyncpg.Pool, task_queue: str, uid: str
) -> None:
    contact_id = await setup_contact(pool, uid)
    good = {"opportunity_id": f"s-{uid}", "contact_id": contact_id}
    cases: dict[str, tuple[Any, str]] = {
        "carried-state": ({**good, "carried": {"state": 1}}, "carried.state"),
        "typo": ({**good, "proces_id": "x"}, "proces_id: Extra inputs are not permitted"),
        "truncated": (raw(b'{"opportunity_id": "s'), "not JSON"),
        "deep": (raw(b'{"name": ' + b"[" * 400 + b"]" * 400 + b"}"), "nested deeper"),
        "bad-utf8": (raw(b'{"opportunity_id": "\xff"}'), "not UTF-8"),
        "encoding": (raw(b"\x00\x01", b"binary/protobuf"), "is not JSON"),
    }
    for name, (payload, expected) in cases.items():
        handle = await client.start_workflow(
            "Opportunity", payload, id=f"opportunity-s-{uid}", task_queue=task_queue,
            id_reuse_policy=ALLOW,
        )  # fmt: skip
        assert expected in await failed_at_start(handle), name
    arities = [([], "expected one argument (a JSON object), got 0"),
               ([good, good], "expected one argument (a JSON object), got 2")]  # fmt: skip
    for args, expected in arities:
        handle = await client.start_workflow(
            "Opportunity", args=args, id=f"opportunity-s-{uid}", task_queue=task_queue,
            id_reuse_policy=ALLOW,
        )  # fmt: skip
        assert expected in await failed_at_start(handle)
    assert await store.opportunities.get_opportunity(pool, f"s-{uid}") is None


async def test_a_bad_mass_modification_fails_at_once(
    client: Client, worker: Worker, task_queue: str, uid: str
) -> None:
    for change in ({"owner": ""}, {"to_stage": ""}, {"owner": "a\nb"}):
        handle = await client.start_workflow(
            "MassModify",
            {"batch_id": f"b-{uid}", "ids": ["x"], **change},
            id=f"mass-modify-b-{uid}",
            task_queue=task_queue,
            id_reuse_policy=ALLOW,
        )
        await failed_at_start(handle)


# --- 8. undecodable commands -------------------------------------------------------------


UNDECODABLE = {
    "truncated": (raw(b'{"owner": "an'), "not JSON"),
    "bad-utf8": (raw(b'{"owner": "\xc3\x28"}'), "not UTF-8"),
    "lone-surrogate": (raw(b'{"owner": "\\ud800"}'), "lone surrogate"),
    "deep": (raw(b'{"owner": ' + b"[" * 320 + b"]" * 320 + b"}"), "nested deeper"),
    "encoding": (raw(b"abc", b"binary/strange"), "'binary/strange' is not JSON"),
}


async def test_an_undecodable_command_is_rejected_never_dropped(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    await opportunities.create(f"c-{uid}", opportunity_id=f"r-{uid}", process_id=f"life-{uid}")
    handle = opportunities.handle(f"o-{uid}")
    for name, (payload, expected) in UNDECODABLE.items():
        await handle.signal("change_owner", payload)
        error = await rejection(handle, "change_owner", payload)
        assert code_of(error) == "invalid_payload" and expected in error.message, name
    await handle.signal("change_owner", args=[{"owner": "a"}, {"owner": "b"}])
    # Readable enough to answer: the lone surrogate's reply_to.
    await handle.signal(
        "change_owner",
        raw(b'{"owner": "\\udc00", "reply_to": "opportunity-r-' + uid.encode() + b'"}'),
    )
    state = await opportunities.state(f"o-{uid}")
    assert [r.code for r in state.rejected] == ["invalid_payload"] * (len(UNDECODABLE) + 2)
    assert "got 2" in state.rejected[-2].reason
    assert all("\x00" not in r.payload and len(r.payload) <= 1024 for r in state.rejected)

    async def answered() -> Any:
        replier = opportunities.handle(f"r-{uid}")
        async for event in replier.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                return event.workflow_execution_signaled_event_attributes.signal_name
        return None

    assert await eventually(answered) == "command_outcome"
    await opportunities.change_owner(f"o-{uid}", "ann")
    assert await task_failures(handle) == 0


async def test_a_signal_of_no_known_command_is_kept_as_rejected(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    handle = opportunities.handle(f"o-{uid}")
    await handle.signal("chnage_stage", {"stage": "Proposal"})
    await opportunities.change_owner(f"o-{uid}", "ann")
    state = await opportunities.state(f"o-{uid}")
    assert [(r.command, r.code) for r in state.rejected] == [("chnage_stage", "unknown_command")]


# --- 9. a mass modification with an opportunity that never answers ----------------------


async def test_a_mass_modification_reports_a_silent_opportunity_as_stuck(
    client: Client, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient,
    uid: str,
) -> None:  # fmt: skip
    await open_one(pool, opportunities, uid, on_entry=False)
    silent = await client.start_workflow(  # running, but no worker polls its queue
        "Opportunity", {}, id=f"opportunity-q-{uid}", task_queue=f"nobody-{uid}"
    )
    await users.put_user(pool, users.User(user_id="ann", name="Ann"))  # the batch's owner
    try:
        batch = MassModifyInput(
            batch_id=f"b-{uid}", ids=[f"o-{uid}", f"q-{uid}"], owner="ann",
            answer_timeout_seconds=1, resends=1,
        )  # fmt: skip
        handle = await opportunities.start_mass_modify(batch)
        report = await asyncio.wait_for(handle.result(), 30)
        assert (report.done, report.changed, report.stuck) == (2, 1, 1)
        [stuck] = report.outcomes
        assert stuck.opportunity_id == f"q-{uid}" and stuck.result == "stuck"
        assert "no answer to 2 sends" in stuck.reason and "running" in stuck.reason
    finally:
        await silent.terminate()


# --- 10. logs carry ids and codes, not what people typed --------------------------------


async def test_logs_carry_ids_and_codes_not_free_text(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = f"Secret-{uid}"
    await open_one(pool, opportunities, uid)
    with caplog.at_level(logging.DEBUG):
        await opportunities.add_remark(f"o-{uid}", secret)
        await opportunities.change_owner(f"o-{uid}", "bob")
        with pytest.raises(CommandRejected):
            await opportunities.change_stage(f"o-{uid}", secret, reason=secret)
        await opportunities.handle(f"o-{uid}").signal("change_stage", {"stage": secret})
        await opportunities.change_owner(f"o-{uid}", "ann")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "change_owner applied" in logged and "change_stage rejected: unknown_stage" in logged
    assert secret not in logged


# --- 9. the workflow and the read model agree, and `verify` says so ---------------------


async def test_verify_reports_each_difference(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, cli: Cli, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    opp = f"o-{uid}"
    agreed = await cli("verify", opp)
    assert agreed.code == 0, agreed.stdout + agreed.stderr
    await pool.execute("UPDATE opportunities SET owner = 'mallory' WHERE opportunity_id = $1", opp)
    await pool.execute(
        "UPDATE calendar_activities SET status = 'done' WHERE opportunity_id = $1", opp
    )
    differing = await cli("verify", opp)
    assert differing.code == 1
    assert f"{opp}: opportunities.owner: workflow None, read model 'mallory'" in differing.stdout
    assert f"{opp}: calendar activity {opp}/intro-call/1: workflow active, read model done" in (
        differing.stdout
    )
    await pool.execute("UPDATE opportunities SET owner = NULL WHERE opportunity_id = $1", opp)
    await pool.execute(
        "UPDATE calendar_activities SET status = 'active' WHERE opportunity_id = $1", opp
    )
    assert (await cli("verify", opp)).code == 0
    assert (await cli("verify")).code == 1, "ids or --all"
