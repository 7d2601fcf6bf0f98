"""The rest of the reference product, through the command line and the workflow: Mark
Complete with a stage, cancelling the open activities of the stage left, ..."""

from __future__ import annotations

import asyncpg
import pytest
from temporalio.worker import Worker

from sales.opportunity import Opportunity
from starter.client import OpportunitiesClient
from store import calendar, users
from tests.support.helpers import (
    eventually,
    open_one,
    own_definition,
    setup_contact,
    setup_process,
    setup_references,
)
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
    await users.put_user(pool, users.User(user_id="bob", name="Bob"))  # the batch's owner
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
        "error: unknown_outcome: 'Maybe' is not an outcome of a 'call' activity; outcomes are "
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
    for user in (f"agent-{uid}", f"other-{uid}"):
        assert (await cli("user", "add", "--id", user, "--name", user, "--role", "agent")).code == 0
    unknown = await cli("perform", f"o-{uid}", "intro-call", "--assignee", f"nobody-{uid}")
    assert unknown.code == 1 and f"unknown user 'nobody-{uid}'" in unknown.stderr
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


async def test_a_team_assigns_activities_remarks_are_kept_and_a_deleted_opportunity_ends(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    definition = own_definition(uid, on_entry=False, default_owner=f"ann-{uid}")
    definition["stages"][0]["actions"][0]["role"] = "adviser"  # intro-call
    await setup_process(pool, uid, on_entry=False, default_owner=f"ann-{uid}",
                        stages=definition["stages"])  # fmt: skip
    await setup_references(pool, uid)
    await setup_contact(pool, uid)
    for user in (f"ann-{uid}", f"bob-{uid}"):
        assert (await cli("user", "add", "--id", user, "--name", user.title(),
                          "--role", "adviser")).code == 0  # fmt: skip
    listed = (await cli("user", "list", "--role", "adviser", "--json")).json()
    assert {f"ann-{uid}", f"bob-{uid}"} <= {u["user_id"] for u in listed}
    created = await cli("create", "--contact", f"c-{uid}", "--id", f"o-{uid}",
                        "--process", f"life-{uid}", "--json")  # fmt: skip
    assert created.code == 0, created.stderr
    state = created.json()
    assert (state["name"], state["owner"]) == ("Ada Lovelace", f"ann-{uid}")  # the defaults

    unknown = await cli("assign", f"o-{uid}", "--role", "adviser", "--user", f"zed-{uid}")
    assert unknown.code == 1 and f"unknown user 'zed-{uid}'" in unknown.stderr
    no_role = await cli("assign", f"o-{uid}", "--role", "pilot", "--user", f"bob-{uid}")
    assert no_role.code == 1 and "its roles are ['adviser', 'agent']" in no_role.stderr
    assigned = await cli("assign", f"o-{uid}", "--role", "adviser", "--user", f"bob-{uid}")
    assert assigned.code == 0, assigned.stderr
    assert (await cli("perform", f"o-{uid}", "intro-call")).code == 0
    row = await calendar.get(pool, f"o-{uid}/intro-call/1")
    assert row is not None and row.assignee == f"bob-{uid}"

    assert (await cli("remark", "add", f"o-{uid}", "prefers calls after six")).code == 0
    shown = (await cli("show", f"o-{uid}")).stdout
    assert f"Team: adviser: bob-{uid}" in shown and "prefers calls after six" in shown
    assert f"(active, bob-{uid})" in shown

    asked = await cli("delete", f"o-{uid}", "--reason", "duplicate")
    assert asked.code == 1 and "Answer with --yes" in asked.stderr
    deleted = await cli("delete", f"o-{uid}", "--reason", "duplicate", "--yes")
    assert deleted.code == 0, deleted.stderr

    async def canceled() -> bool:
        row = await calendar.get(pool, f"o-{uid}/intro-call/1")
        return row is not None and row.status == "canceled"

    await eventually(canceled)
    gone = (await cli("search", "--process", f"life-{uid}", "--json")).json()
    assert gone["total"] == 0
    found = (
        await cli("search", "--process", f"life-{uid}", "--status", "deleted", "--json")
    ).json()
    assert [o["opportunity_id"] for o in found["items"]] == [f"o-{uid}"]
    history = (await cli("history", f"o-{uid}", "--json")).json()
    assert history[-1]["reason"] == "deleted: duplicate"
    assert f"adviser: bob-{uid}" in [entry["reason"] for entry in history]
    assert {entry["source"] for entry in history[1:]} == {"note"}, "no stage was left"
    reopened = await cli("reopen", f"o-{uid}", "--stage", "Prospect")
    assert reopened.code == 1 and "was deleted; it cannot be reopened" in reopened.stderr


async def test_a_retired_process_takes_no_new_opportunities_and_a_copy_starts_at_version_1(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await open_one(pool, opportunities, uid, on_entry=False)
    copied = await cli("process", "copy", process_id, f"copy-{uid}", "--name", "Copied")
    assert copied.code == 0, copied.stderr
    shown = (await cli("process", "show", f"copy-{uid}", "--json")).json()
    assert (shown["version"], shown["name"], shown["default"]) == (1, "Copied", False)
    again = await cli("process", "copy", process_id, f"copy-{uid}")
    assert again.code == 1 and "exists already" in again.stderr

    assert (await cli("process", "retire", process_id)).code == 0
    listed = {p["process_id"]: p for p in (await cli("process", "list", "--json")).json()}
    assert listed[process_id]["retired"] is True
    refused = await cli("create", "--contact", f"c-{uid}", "--id", f"n-{uid}",
                        "--process", process_id)  # fmt: skip
    assert refused.code == 1 and f"process '{process_id}' is retired" in refused.stderr
    going_on = await cli("stage", f"o-{uid}", "Proposal", "--keep-open-activities")
    assert going_on.code == 0, going_on.stderr  # the running one goes on
    assert (await cli("process", "retire", process_id, "--undo")).code == 0
    opened = await cli("create", "--contact", f"c-{uid}", "--id", f"n-{uid}",
                       "--process", process_id)  # fmt: skip
    assert opened.code == 0, opened.stderr
    unknown = await cli("process", "retire", f"none-{uid}")
    assert unknown.code == 1 and f"unknown process 'none-{uid}'" in unknown.stderr


async def test_tables_show_the_columns_the_user_chose_and_remember_them(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await open_one(pool, opportunities, uid, owner=f"own-{uid}")

    def headers(output: str) -> list[str]:
        line = next(line for line in output.splitlines() if line.startswith("┃"))
        return [cell.strip() for cell in line.strip("┃ \n").split("┃")]

    chosen = await cli("search", "--process", process_id, "--columns", "opportunity,stage,owner")
    assert chosen.code == 0, chosen.stderr
    assert headers(chosen.stdout) == ["opportunity", "stage", "owner"], chosen.stdout
    assert f"own-{uid}" in chosen.stdout
    remembered = await cli("search", "--process", process_id)
    assert headers(remembered.stdout) == ["opportunity", "stage", "owner"]
    wrong = await cli("search", "--process", process_id, "--columns", "opportunity,colour")
    assert (
        wrong.code == 1 and "unknown column 'colour'; the columns are opportunity" in wrong.stderr
    )
    back = await cli("search", "--process", process_id, "--columns", "default")
    assert "since" in headers(back.stdout) and "contact" in headers(back.stdout)
    shown = await cli("show", f"o-{uid}", "--columns", "action,linked activity")
    assert shown.code == 0 and f"o-{uid}/intro-call/1" in shown.stdout
    assert "performed" not in shown.stdout


async def test_an_opportunity_moves_to_a_stage_of_another_process(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await open_one(pool, opportunities, uid)
    copied = await cli("process", "copy", process_id, f"pension-{uid}", "--name", "Pensions")
    assert copied.code == 0, copied.stderr
    nowhere = await cli("move", f"o-{uid}", "--process", f"pension-{uid}", "--stage", "Nowhere")
    assert nowhere.code == 1 and "unknown stage 'Nowhere'" in nowhere.stderr
    unknown = await cli("move", f"o-{uid}", "--process", f"none-{uid}", "--stage", "Prospect")
    assert unknown.code == 1 and f"unknown process 'none-{uid}'" in unknown.stderr
    moved = await cli("move", f"o-{uid}", "--process", f"pension-{uid}", "--stage",
                      "Needs analysis")  # fmt: skip
    assert moved.code == 0, moved.stderr
    state = (await cli("show", f"o-{uid}", "--json")).json()
    assert (state["process_id"], state["current_stage"]) == (f"pension-{uid}", "Needs analysis")
    history = (await cli("history", f"o-{uid}", "--json")).json()
    assert history[-1]["reason"] == f"moved from process {process_id} v1"
    assert history[-1]["canceled_activities"] == [f"o-{uid}/intro-call/1"]

    async def moved_in_the_read_model() -> bool:
        found = await cli("search", "--process", f"pension-{uid}", "--json")
        return found.json()["total"] == 1

    await eventually(moved_in_the_read_model)
    row = await calendar.get(pool, f"o-{uid}/intro-call/1")
    assert row is not None and row.status == "canceled"


async def test_the_new_commands_arrive_as_signals_too(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    """Each is a signal and an update of the same name: as signals, in order, and a bad one
    kept in `rejected` with its code."""
    await open_one(pool, opportunities, uid, process={
        "stages": own_definition(uid, on_entry=True)["stages"]})  # fmt: skip
    await users.put_user(pool, users.User(user_id=f"bob-{uid}", name="Bob"))
    intro = f"o-{uid}/intro-call/1"
    for name, payload in [
        ("add_remark", {"text": "by signal"}),
        ("modify_activity", {"activity_id": intro, "assignee": f"bob-{uid}"}),
        ("modify_activity", {"activity_id": intro, "assignee": f"zed-{uid}"}),  # unknown
        ("assign", {"role": "nobody", "user": f"bob-{uid}"}),  # no action names the role
        ("delete_opportunity", {"reason": "by signal"}),
    ]:
        await opportunities.handle(f"o-{uid}").signal(name, payload)

    async def deleted() -> Opportunity | None:
        state = await opportunities.handle(f"o-{uid}").query("state", result_type=Opportunity)
        return state if state.status == "deleted" else None

    state = await eventually(deleted)
    assert [r.text for r in state.remarks] == ["by signal"]
    assert state.find_calendar_activity(intro)[1].activity_status == "canceled"
    assert [(r.command, r.code) for r in state.rejected] == [
        ("modify_activity", "unknown_user"), ("assign", "unknown_role")]  # fmt: skip
