"""The questions the command line asks in a terminal as a person changes the stage, driven in a
real pseudo-terminal (pexpect): the outcome on Mark Complete, cancelling the open activities of
the stage left, the details of the activity the new stage creates, and Ctrl-C (nothing
written)."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pexpect
import pytest
from temporalio.worker import Worker

from sales.process import ProcessDefinition
from starter.client import OpportunitiesClient
from starter.client.read_model import ReadModel
from store import processes
from tests.support.helpers import own_definition, setup_contact, setup_references
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")

OPPORTUNITIES = str(Path(sys.executable).parent / "opportunities")


async def _opened(
    pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str, **changes: Any
) -> str:
    """Opportunity `o-<uid>` in Prospect (intro-call's activity created on entry), on a process
    whose calls track outcomes ("Interested" moves to Needs analysis) and whose Prospect has a
    second call, `check-call`, performed by hand."""
    document = own_definition(
        uid,
        activity_outcomes={"call": ["Interested", "No answer"]},
        outcome_stages={"Interested": "Needs analysis", "Sale Made": "Closed won"},
        **changes,
    )
    document["stages"][0]["actions"].append({
        "action_id": "check-call", "type": "calendar", "title": "Check-in call",
        "activity": {"kind": "call", "due_in_days": 1, "duration_minutes": 15},
    })  # fmt: skip
    definition = ProcessDefinition.model_validate(document)
    await processes.apply_process(pool, definition)
    contact_id = await setup_contact(pool, uid)
    await setup_references(pool, uid)
    await opportunities.create(
        contact_id, opportunity_id=f"o-{uid}", process_id=definition.process_id
    )
    return f"o-{uid}"


def _dialog(cli: Cli, args: list[str], steps: list[tuple[str, str | None]]) -> tuple[int, str]:
    """Run `opportunities ARGS` in a pseudo-terminal: for each step, wait for the text (a
    regular expression) and type the answer (None: Ctrl-C). The exit status and the output."""
    child = pexpect.spawn(
        OPPORTUNITIES, args, env=cli.env, encoding="utf-8", timeout=60, dimensions=(40, 200)
    )
    try:
        for expected, answer in steps:
            child.expect(expected)
            if answer is None:
                child.sendintr()
            else:
                child.sendline(answer)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    return child.exitstatus if child.exitstatus is not None else -1, child.before or ""


async def dialog(cli: Cli, args: list[str], steps: list[tuple[str, str | None]]) -> tuple[int, str]:
    """`_dialog` in a thread, so the test's worker goes on answering meanwhile."""
    return await asyncio.to_thread(_dialog, cli, args, steps)


async def _history_length(opportunities: OpportunitiesClient, opportunity_id: str) -> int:
    return len(await opportunities.history(opportunity_id))


async def test_mark_complete_asks_the_outcome_then_the_new_activity_details(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    opportunity_id = await _opened(pool, opportunities, uid)
    code, out = await dialog(cli, ["complete", opportunity_id, "intro-call"], [
        (r"Outcome of calendar activity .*1\. Interested\s+2\. No answer\s+Outcome \(number\)",
         "1"),
        (r"creates a meeting for fact-finder.*Change its details\? \[y/N\]", "y"),
        (r"Subject \[Fact-finding meeting\]", "Fact find at home"),
        (r"Due \[", ""),
        (r"Duration \(minutes\) \[", "90"),
        (r"Assignee", ""),
        (r"Notes", "bring forms"),
        (r"Location", ""),
    ])  # fmt: skip
    assert code == 0, out
    assert "stage: Needs analysis (open)" in out, out
    state = await opportunities.state(opportunity_id)
    assert state.current_stage == "Needs analysis"
    _, intro = state.find_action("intro-call") or (None, None)
    assert intro is not None and intro.activity_outcome == "Interested"
    activity = await ReadModel(pool).calendar_activity(f"{opportunity_id}/fact-finder/1")
    assert activity is not None and (activity.subject, activity.notes) == (
        "Fact find at home",
        "bring forms",
    )
    assert activity.starts_at and activity.ends_at
    assert activity.ends_at - activity.starts_at == timedelta(minutes=90)


async def test_a_stage_change_asks_to_cancel_and_ctrl_c_writes_nothing(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    opportunity_id = await _opened(pool, opportunities, uid)
    before = await _history_length(opportunities, opportunity_id)
    code, out = await dialog(cli, ["stage", opportunity_id, "Needs analysis"], [
        (r"has 1 open activity \(" + opportunity_id + r"/intro-call/1\)\. Cancel them\? \[y/N\]",
         None),
    ])  # fmt: skip
    assert code != 0, out
    assert (await opportunities.state(opportunity_id)).current_stage == "Prospect"
    assert await _history_length(opportunities, opportunity_id) == before, "nothing written"

    code, out = await dialog(cli, ["stage", opportunity_id, "Needs analysis"], [
        (r"Cancel them\? \[y/N\]", "y"),
        (r"Change its details\?", None),
    ])  # fmt: skip
    assert code != 0, out
    assert (await opportunities.state(opportunity_id)).current_stage == "Prospect", (
        "Ctrl-C at the second question writes nothing either"
    )

    code, out = await dialog(cli, ["stage", opportunity_id, "Needs analysis"], [
        (r"Cancel them\? \[y/N\]", "y"),
        (r"Change its details\?", "n"),
    ])  # fmt: skip
    assert code == 0, out
    state = await opportunities.state(opportunity_id)
    _, intro = state.find_action("intro-call") or (None, None)
    assert state.current_stage == "Needs analysis" and intro and intro.activity_status == "canceled"
    assert state.history[-1].canceled_activities == [f"{opportunity_id}/intro-call/1"]


async def test_an_outcome_mapped_to_a_stage_asks_to_cancel_with_the_process_default(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    opportunity_id = await _opened(pool, opportunities, uid, cancel_on_advance=True)
    await opportunities.perform_actions(opportunity_id, ["check-call"])
    code, out = await dialog(cli, ["activity", "done", f"{opportunity_id}/intro-call/1"], [
        (r"Outcome \(number\)", "1"),
        (r"has 1 open activity \(" + opportunity_id + r"/check-call/1\)\. Cancel them\? \[Y/n\]",
         ""),
        (r"Change its details\? \[y/N\]", ""),
    ])  # fmt: skip
    assert code == 0, out
    state = await opportunities.state(opportunity_id)
    assert state.current_stage == "Needs analysis"
    _, check = state.find_action("check-call") or (None, None)
    assert check is not None and check.activity_status == "canceled", "the default: cancel"
    _, fact = state.find_action("fact-finder") or (None, None)
    assert fact is not None and fact.activity_status == "active"


async def test_without_a_terminal_the_choices_must_be_given(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    opportunity_id = await _opened(pool, opportunities, uid)
    refused = await cli("complete", opportunity_id, "intro-call")
    assert refused.code == 1 and "outcome_required" in refused.stderr
    assert "Interested, No answer" in refused.stderr
    await opportunities.perform_actions(opportunity_id, ["check-call"])
    asked = await cli("activity", "done", f"{opportunity_id}/intro-call/1", "--outcome",
                      "Interested")  # fmt: skip
    assert asked.code == 1 and "Cancel them?" in asked.stderr, asked.stderr
    assert "--keep-open-activities" in asked.stderr
    kept = await cli("activity", "done", f"{opportunity_id}/intro-call/1", "--outcome",
                     "Interested", "--keep-open-activities")  # fmt: skip
    assert kept.code == 0, kept.stderr
    state = await opportunities.state(opportunity_id)
    _, check = state.find_action("check-call") or (None, None)
    assert state.current_stage == "Needs analysis" and check and check.activity_status == "active"


async def test_mass_modify_asks_first_and_ctrl_c_starts_nothing(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    opportunity_id = await _opened(pool, opportunities, uid)
    args = ["mass-modify", "--process", f"life-{uid}", "--to-next-stage",
            "--batch-id", f"b-{uid}"]  # fmt: skip
    question = r"Move 1 opportunity each to its next stage\? \[y/N\]"
    code, out = await dialog(cli, args, [(question, None)])
    assert code != 0, out
    assert await ReadModel(pool).run_of(opportunity_id)
    assert (await opportunities.state(opportunity_id)).current_stage == "Prospect"
    code, out = await dialog(cli, args, [(question, "y")])
    assert code == 0, out
    assert "1 changed" in out, out
    assert (await opportunities.state(opportunity_id)).current_stage == "Needs analysis"
