"""The choices of a stage change through every client: the command line without a terminal
(the details after `--for`, the next stage, what is refused before anything is sent), the
`temporal` CLI and the HTTP API (next stage guarded by the stage expected, overrides, the
process's default for cancelling), and a canceled activity that blocks its action."""

from __future__ import annotations

import json
from datetime import timedelta

import asyncpg
import pytest
from temporalio.worker import Worker

from runtime import embedded
from sales.errors import CommandRejected
from starter.client import OpportunitiesClient
from starter.client.read_model import ReadModel
from tests.integration.test_integrate import completed, http_update, run
from tests.support.helpers import add_users, eventually, open_one
from tests.support.servers import Cli, Servers

pytestmark = pytest.mark.usefixtures("verified")


async def test_stage_takes_the_new_activity_details_after_for(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    opportunity_id = f"o-{uid}"
    await add_users(pool, f"bob-{uid}")
    before = len(await opportunities.history(opportunity_id))
    for args, said in [
        (["Proposal", "--subject", "x"], "entering 'Proposal' creates no calendar activity"),
        (["--next", "--for", "intro-call", "--subject", "x"],
         "--for intro-call: entering 'Needs analysis' creates activities only for fact-finder"),
        (["--next", "--subject", "x", "--subject", "y"], "--subject given twice"),
        (["--next", "--assignee", f"zed-{uid}"], f"unknown user 'zed-{uid}'"),
        (["--next", "--due", "tomorrow"], "--due 'tomorrow' is not a date and time"),
        (["Needs analysis", "--next"], "give a stage or --next"),
        (["Needs analysis"], "Cancel them? Answer with --cancel-open-activities"),
    ]:  # fmt: skip
        refused = await cli("stage", opportunity_id, *args)
        assert refused.code != 0 and said in refused.stderr, (args, refused.stderr)
    assert len(await opportunities.history(opportunity_id)) == before, "nothing was sent"

    moved = await cli("stage", opportunity_id, "--next", "--keep-open-activities",
                      "--for", "fact-finder", "--subject", "Visit at home", "--duration", "45",
                      "--reason", "--due", "--assignee", f"bob-{uid}", "--json")  # fmt: skip
    assert moved.code == 0, moved.stderr
    result = moved.json()
    assert result["current_stage"] == "Needs analysis"
    assert result["created_activities"] == [f"{opportunity_id}/fact-finder/1"]
    activity = await ReadModel(pool).calendar_activity(f"{opportunity_id}/fact-finder/1")
    assert activity is not None and activity.starts_at and activity.ends_at
    assert (activity.subject, activity.assignee) == ("Visit at home", f"bob-{uid}")
    assert activity.ends_at - activity.starts_at == timedelta(minutes=45)
    state = await opportunities.state(opportunity_id)
    assert state.history[-1].reason == "--due", "an option's value is never read as an option"


async def test_a_canceled_activity_says_how_to_go_on(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    opportunity_id = f"o-{uid}"
    activity_id = f"{opportunity_id}/intro-call/1"
    await opportunities.change_stage(opportunity_id, "Needs analysis", cancel_open_activities=True)
    performed = await cli("perform", opportunity_id, "intro-call")
    assert performed.code == 0, performed.stderr
    assert "activity_exists" in performed.stdout and "was canceled" in performed.stdout
    hint = f"opportunities activity delete {activity_id}, then opportunities perform"
    assert hint in performed.stdout, performed.stdout
    back = await cli("stage", opportunity_id, "Prospect", "--keep-open-activities", "--json")
    assert back.code == 0, back.stderr
    [said] = back.json()["actions"]
    assert (said["action_id"], said["code"]) == ("intro-call", "activity_canceled")
    assert back.json()["created_activities"] == []
    assert (await cli("activity", "delete", activity_id)).code == 0
    again = await opportunities.perform_actions(opportunity_id, ["intro-call"])
    assert again.created_activities == [f"{opportunity_id}/intro-call/2"]


async def test_create_prints_the_first_stage_activity(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    created = await cli("create", "--contact", f"c-{uid}", "--id", f"o2-{uid}",
                        "--process", f"life-{uid}")  # fmt: skip
    assert created.code == 0, created.stderr
    assert "intro-call" in created.stdout and f"o2-{uid}/intro-call/1" in created.stdout


async def test_raw_clients_move_to_the_next_stage_with_overrides(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    servers: Servers,
    uid: str,
) -> None:
    await open_one(pool, opportunities, uid, process={"cancel_on_advance": True})
    opportunity_id = f"o-{uid}"
    workflow_id = f"opportunity-{opportunity_id}"
    address = ["--address", servers.temporal_address]
    temporal = embedded.temporal_binary()

    # The temporal CLI: guarded by a stage it is not in, refused with its code.
    guarded = {"next_stage": True, "expected_stage": "Proposal"}
    code, out = await completed(temporal, "workflow", "update", "execute", *address,
                                "-w", workflow_id, "--name", "change_stage",
                                "--input", json.dumps(guarded))  # fmt: skip
    assert code != 0 and "stage_changed: the opportunity is in stage 'Prospect'" in out, out
    both = {"next_stage": True, "stage": "Proposal"}
    code, out = await completed(temporal, "workflow", "update", "execute", *address,
                                "-w", workflow_id, "--name", "change_stage",
                                "--input", json.dumps(both))  # fmt: skip
    assert code != 0 and "invalid_payload" in out and "exactly one of stage" in out, out

    # The HTTP API: the next stage with the new activity's details; absent
    # cancel_open_activities is the process's cancel_on_advance (here: cancel).
    details = {"subject": "Home visit", "duration_minutes": 20}
    command = {"next_stage": True, "expected_stage": "Prospect",
               "overrides": {"fact-finder": details}}  # fmt: skip
    out = await run(*http_update(servers, workflow_id, "change_stage", command))
    result = json.loads(out)["outcome"]["success"]
    assert result, out
    state = await opportunities.state(opportunity_id)
    assert state.current_stage == "Needs analysis"
    assert state.history[-1].canceled_activities == [f"{opportunity_id}/intro-call/1"]
    activity = await ReadModel(pool).calendar_activity(f"{opportunity_id}/fact-finder/1")
    assert activity is not None and activity.subject == "Home visit"

    # A signal that cannot apply is kept with its code.
    stale = guarded | {"expected_stage": "Prospect"}
    code, out = await completed(temporal, "workflow", "signal", *address, "-w", workflow_id,
                                "--name", "change_stage", "--input", json.dumps(stale))  # fmt: skip
    assert code == 0, out

    async def kept() -> object:
        rejected = (await opportunities.state(opportunity_id)).rejected
        return rejected and rejected[-1].code == "stage_changed"

    await eventually(kept)

    # The Python client: the last open stage has no next one.
    await opportunities.change_stage(opportunity_id, next_stage=True)
    with pytest.raises(CommandRejected, match="no next open stage") as refused:
        await opportunities.change_stage(opportunity_id, next_stage=True)
    assert getattr(refused.value, "code", None) == "no_next_stage"


async def test_raw_clients_record_an_outcome_into_a_stage_with_its_details(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    servers: Servers,
    uid: str,
) -> None:
    changes = {"outcome_stages": {"Interested": "Needs analysis"}}
    await open_one(pool, opportunities, uid, process=changes)
    opportunity_id = f"o-{uid}"
    workflow_id = f"opportunity-{opportunity_id}"
    details = {"fact-finder": {"location": "Her office", "notes": "bring forms"}}
    wrong = {"activity_id": f"{opportunity_id}/intro-call/1", "outcome": "No answer",
             "overrides": details}  # fmt: skip
    out = await run(*http_update(servers, workflow_id, "record_outcome", wrong))
    failure = json.loads(out)["outcome"]["failure"]
    assert failure["applicationFailureInfo"]["details"] == [{"code": "not_allowed"}], out
    command = wrong | {"outcome": "Interested"}
    out = await run(*http_update(servers, workflow_id, "record_outcome", command))
    result = json.loads(out)["outcome"]["success"]
    assert result, out
    state = await opportunities.state(opportunity_id)
    assert state.current_stage == "Needs analysis"
    activity = await ReadModel(pool).calendar_activity(f"{opportunity_id}/fact-finder/1")
    assert activity is not None and (activity.location, activity.notes) == (
        "Her office",
        "bring forms",
    )
