"""The rest of the reference product, through the command line and the workflow: Mark
Complete with a stage, cancelling the open activities of the stage left, ..."""

from __future__ import annotations

import asyncpg
import pytest
from temporalio.worker import Worker

from starter.client import OpportunitiesClient
from store import calendar
from tests.support.helpers import eventually, open_one
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")


async def test_mark_complete_moves_on_and_cancels_the_open_activities_when_asked(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, contact={"street": "1 Way", "city": "York",
                                                     "postal_code": "Y1"})  # fmt: skip
    intro = f"o-{uid}/intro-call/1"
    moved = await cli("complete", f"o-{uid}", "welcome-letter", "--stage", "Proposal",
                      "--cancel-open-activities")  # fmt: skip
    assert moved.code == 0, moved.stderr
    assert "stage: Proposal (open)" in moved.stdout

    async def canceled() -> bool:
        row = await calendar.get(pool, intro)
        return row is not None and row.status == "canceled"

    await eventually(canceled)
    history = (await cli("history", f"o-{uid}", "--json")).json()
    assert (history[-1]["to_stage"], history[-1]["source"]) == ("Proposal", "outcome")
    assert history[-1]["canceled_activities"] == [intro]

    unknown = await cli("complete", f"o-{uid}", "proposal-letter", "--stage", "Nowhere")
    assert unknown.code == 1 and "unknown stage 'Nowhere'" in unknown.stderr
    state = (await cli("show", f"o-{uid}", "--json")).json()
    letter = next(a for s in state["stages"] for a in s["actions"]
                  if a["action_id"] == "proposal-letter")  # fmt: skip
    assert letter["completed"] is False  # refused: nothing written


async def test_a_mass_modification_takes_every_search_filter(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await open_one(pool, opportunities, uid)
    selection = ["--process", process_id, "--entered-before", "2999-01-01T00:00Z"]
    none = await cli("mass-modify", *selection, "--no-open-actions", "--owner", "bob", "--yes")
    assert none.code == 1 and "no opportunity matches these filters" in none.stderr
    later = await cli("mass-modify", "--process", process_id, "--entered-after",
                      "2999-01-01T00:00Z", "--owner", "bob", "--yes")  # fmt: skip
    assert later.code == 1 and "no opportunity matches" in later.stderr
    changed = await cli("mass-modify", *selection, "--open-actions", "--owner", "bob", "--yes")
    assert changed.code == 0, changed.stderr
    assert "1 changed" in changed.stdout
    assert (await opportunities.state(f"o-{uid}")).owner == "bob"


async def test_an_outcome_not_in_the_process_list_is_refused_with_the_list(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    outcomes = {"call": ["Interested", "No answer", "Reject Prospect"]}
    await open_one(pool, opportunities, uid, process={"activity_outcomes": outcomes})
    intro = f"o-{uid}/intro-call/1"
    refused = await cli("activity", "done", intro, "--outcome", "Maybe")
    assert refused.code == 1
    assert refused.stderr.strip() == (
        "error: 'Maybe' is not an outcome of a 'call' activity; outcomes are "
        "['Interested', 'No answer', 'Reject Prospect']"
    )
    missing = await cli("activity", "done", intro)  # not a terminal: nothing is asked
    assert missing.code == 1 and "(Interested, No answer, Reject Prospect)" in missing.stderr
    row = await calendar.get(pool, intro)
    assert row is not None and row.status == "active"  # nothing written
    lost = await cli("activity", "done", intro, "--outcome", "Reject Prospect")
    assert lost.code == 0, lost.stderr
    assert "stage: Closed lost (lost)" in lost.stdout
