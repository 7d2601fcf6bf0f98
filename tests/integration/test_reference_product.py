"""The rest of the reference product, through the command line and the workflow: Mark
Complete with a stage, cancelling the open activities of the stage left, ..."""

from __future__ import annotations

import asyncpg
import pytest
from temporalio.worker import Worker

from starter.client import OpportunitiesClient
from store import calendar
from tests.support.helpers import eventually, open_one
from tests.support.servers import Cli, Inbox

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


async def test_an_activity_is_performed_with_its_details_then_shown_changed_and_listed(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, on_entry=False)
    performed = await cli("perform", f"o-{uid}", "intro-call", "welcome-letter", "--due",
                          "2027-01-05T10:00+00:00", "--duration", "45", "--assignee",
                          f"agent-{uid}", "--notes", "ask about the pension", "--location",
                          "Her office", "--letter-method", "document")  # fmt: skip
    assert performed.code == 1  # the letter: the contact has no postal address
    assert "intro-call" in performed.stdout and "activity_created" in performed.stdout
    assert "cannot go out as document" in performed.stderr
    intro = f"o-{uid}/intro-call/1"
    shown = await cli("activity", "show", intro, "--json")
    row = shown.json()
    assert (row["starts_at"], row["ends_at"]) == ("2027-01-05T10:00:00Z", "2027-01-05T10:45:00Z")
    assert (row["assignee"], row["notes"], row["location"]) == (
        f"agent-{uid}", "ask about the pension", "Her office")  # fmt: skip
    text = (await cli("activity", "show", intro)).stdout
    assert f"agent-{uid}" in text and "2027-01-05 10:00" in text

    modified = await cli("activity", "modify", intro, "--due", "2027-01-06T09:00+00:00",
                         "--assignee", f"other-{uid}")  # fmt: skip
    assert modified.code == 0, modified.stderr
    assert "activity_modified" in modified.stdout

    async def changed() -> bool:
        row = await calendar.get(pool, intro)
        return row is not None and row.assignee == f"other-{uid}"

    await eventually(changed)
    row = await calendar.get(pool, intro)
    assert row is not None and (row.starts_at.isoformat(), row.ends_at.isoformat()) == (
        "2027-01-06T09:00:00+00:00",
        "2027-01-06T09:45:00+00:00",
    )  # the duration kept
    history = (await cli("history", f"o-{uid}", "--json")).json()
    assert history[-1]["reason"] == f"calendar activity {intro} changed: due, assignee"

    mine = await cli("activity", "list", "--assignee", f"other-{uid}", "--due-from",
                     "2027-01-06T00:00+00:00", "--due-before", "2027-01-07T00:00+00:00",
                     "--json")  # fmt: skip
    assert [a["activity_id"] for a in mine.json()] == [intro]
    later = await cli("activity", "list", "--assignee", f"other-{uid}", "--due-from",
                      "2027-01-07T00:00+00:00", "--json")  # fmt: skip
    assert later.json() == []

    bad = await cli("activity", "modify", intro, "--due", "next tuesday")
    assert bad.code == 1 and "is not a date and time" in bad.stderr
    done = await cli("activity", "done", intro, "--outcome", "Interested")
    assert done.code == 0, done.stderr
    refused = await cli("activity", "modify", intro, "--notes", "too late")
    assert refused.code == 1 and "only an active one can be changed" in refused.stderr


async def test_the_correspondence_option_is_chosen_and_an_impossible_one_refused(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient,
    inbox: Inbox, uid: str,
) -> None:  # fmt: skip
    address = {"street": "1 Way", "city": "York", "postal_code": "Y1"}
    await open_one(pool, opportunities, uid, contact=address, on_entry=False)
    no_email = await cli("perform", f"o-{uid}", "welcome-letter", "--letter-method", "email")
    assert no_email.code == 1
    assert f"contact 'c-{uid}' has no e-mail address" in no_email.stderr
    assert (await cli("letter", "list", "--opportunity", f"o-{uid}", "--json")).json() == []
    filed = await cli("perform", f"o-{uid}", "welcome-letter", "--letter-method", "document")
    assert filed.code == 0 and "letter_filed" in filed.stdout
    email = await cli("contact", "modify", f"c-{uid}", "--email", f"ada-{uid}@example.com")
    assert email.code == 0, email.stderr
    assert (await cli("stage", f"o-{uid}", "Proposal", "--keep-open-activities")).code == 0
    both = await cli("perform", f"o-{uid}", "proposal-letter", "--letter-method", "both")
    assert both.code == 0, both.stderr
    assert "e-mailed to" in both.stdout and "and filed as a document to print" in both.stdout
    letters = (await cli("letter", "list", "--opportunity", f"o-{uid}", "--json")).json()
    methods = {(x["action_id"], x["method"], x["status"]) for x in letters}
    assert methods == {("welcome-letter", "document", "filed"), ("proposal-letter", "both", "sent")}
    [mail] = inbox.to(f"ada-{uid}@example.com")
    assert "Your proposal, Ada." in mail.get_content()
