"""Stage actions end to end: the workflow, real PostgreSQL, and a real SMTP server."""

from __future__ import annotations

import functools
from datetime import timedelta

import asyncpg
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.letters import message_id_for
from sales.commands import AddAction, DeleteAction
from sales.errors import CommandRejected
from starter.client import OpportunitiesClient
from store import calendar, events, letters
from tests.support.helpers import open_one, setup_contact, store_unchecked_template
from tests.support.servers import Inbox

pytestmark = pytest.mark.usefixtures("verified")

# These tests perform actions by hand: no activity is created on entering a stage.
open_one = functools.partial(open_one, on_entry=False)

EMAIL = {"email": "ada@example.com"}
ADDRESS = {"street": "12 St James's Square", "postal_code": "SW1Y 4JH", "city": "London"}


async def test_performing_a_calendar_action_creates_one_linked_activity(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    result = await opportunities.perform_actions(f"o-{uid}", ["intro-call"])
    [performed] = result.actions
    assert performed.outcome == "activity_created"
    activity_id = performed.activity_id
    assert activity_id == f"o-{uid}/intro-call/1"

    row = await calendar.get(pool, activity_id)
    assert row is not None
    assert (row.kind, row.subject, row.status, row.track_outcome, row.contact_id) == (
        "call",
        "Introductory call",
        "active",
        True,
        f"c-{uid}",
    )
    assert row.ends_at - row.starts_at == timedelta(minutes=30)
    assert timedelta(days=2) - timedelta(minutes=1) < row.starts_at - row.created_on
    assert row.starts_at - row.created_on < timedelta(days=2, minutes=1)

    state = await opportunities.state(f"o-{uid}")
    _, action = state.find_action("intro-call") or (None, None)
    assert action is not None and not action.completed, "creating does not complete"
    assert (action.activity_id, action.activity_status) == (activity_id, "active")
    assert action.activity_created_on is not None and action.performed_at is not None

    again = await opportunities.perform_actions(f"o-{uid}", ["intro-call"])
    assert again.actions[0].outcome == "activity_exists"
    assert again.actions[0].activity_id == activity_id
    assert len(await calendar.list_for(pool, f"o-{uid}")) == 1


async def test_completing_a_calendar_action_that_tracks_outcomes_needs_an_outcome(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    activity_id = (
        (await opportunities.perform_actions(f"o-{uid}", ["intro-call"])).actions[0].activity_id
    )
    with pytest.raises(CommandRejected, match="tracks outcomes: give an outcome"):
        await opportunities.complete_actions(f"o-{uid}", ["intro-call"])
    result = await opportunities.complete_actions(
        f"o-{uid}", ["intro-call"], outcome="Interested", notes="call back in May"
    )
    assert result.actions[0].outcome == "completed"
    row = await calendar.get(pool, activity_id or "")
    assert row is not None
    assert (row.status, row.outcome, row.notes) == ("done", "Interested", "call back in May")
    state = await opportunities.state(f"o-{uid}")
    _, action = state.find_action("intro-call") or (None, None)
    assert action is not None and action.completed and action.activity_status == "done"
    with pytest.raises(CommandRejected, match="'intro-call' is already completed"):
        await opportunities.perform_actions(f"o-{uid}", ["intro-call"])


async def test_several_tagged_are_completed_without_asking_an_outcome(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    await opportunities.perform_actions(f"o-{uid}", ["intro-call"])
    result = await opportunities.complete_actions(f"o-{uid}", ["intro-call", "seminar"])
    assert [(a.action_id, a.outcome) for a in result.actions] == [
        ("intro-call", "completed"),
        ("seminar", "completed"),
    ]
    [row] = await calendar.list_for(pool, f"o-{uid}")
    assert (row.status, row.outcome) == ("done", None)
    assert await events.list_invitees(pool, f"seminar-{uid}") == [], "completing is not performing"


async def test_a_letter_is_emailed_merged_and_logged_once(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, inbox: Inbox, uid: str
) -> None:
    email = f"ada-{uid}@example.com"
    await open_one(
        pool, opportunities, uid, contact={"email": email}, name="Term life", owner="ann"
    )
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    assert result.actions[0].outcome == "letter_sent"
    [message] = inbox.to(email)
    assert message["Subject"] == "Welcome, Ada"
    assert message["From"] == "sales@example.com"
    assert message["Message-ID"] == message_id_for(f"o-{uid}/welcome-letter/1")
    body = message.get_content()
    assert "Dear Ada Lovelace," in body
    assert "interest in Term life." in body and "Your adviser ann" in body

    [letter] = await letters.list_letters(pool, f"o-{uid}")
    assert (letter.method, letter.recipient, letter.template) == ("email", email, f"welcome-{uid}")
    assert letter.sent_at is not None
    assert letter.body.strip() == body.replace("\r\n", "\n").strip()
    state = await opportunities.state(f"o-{uid}")
    _, action = state.find_action("welcome-letter") or (None, None)
    assert action is not None and action.completed and action.performed_at is not None


async def test_without_email_a_letter_is_filed_as_a_document(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, inbox: Inbox, uid: str
) -> None:
    await open_one(pool, opportunities, uid, contact=ADDRESS)
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    assert result.actions[0].outcome == "letter_filed"
    [letter] = await letters.list_letters(pool, f"o-{uid}")
    assert (letter.method, letter.message_id) == ("document", None)
    assert letter.body.startswith("Dear Ada Lovelace,")


async def test_bad_letter_data_is_reported_and_the_action_stays_open(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)  # no e-mail, no address
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    [failed] = result.actions
    assert failed.outcome == "failed"
    assert "no e-mail address, and no postal address" in failed.message
    await store_unchecked_template(pool, f"welcome-{uid}", "Hello {{ contact.nickname }}")
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    assert "cannot be merged" in result.actions[0].message
    assert "nickname" in result.actions[0].message

    state = await opportunities.state(f"o-{uid}")
    _, action = state.find_action("welcome-letter") or (None, None)
    assert action is not None and not action.completed
    assert action.last_error is not None and "nickname" in action.last_error.message
    assert action.last_error.code == "template_error"
    assert await letters.list_letters(pool, f"o-{uid}") == []
    handle = opportunities.handle(f"o-{uid}")
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_unknown_template_and_event_are_reported(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, contact=EMAIL)
    await opportunities.modify_action(f"o-{uid}", "welcome-letter", {"template": "nope"})
    await opportunities.modify_action(f"o-{uid}", "seminar", {"event_id": "no-such-event"})
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter", "seminar"])
    messages = {a.action_id: (a.outcome, a.message) for a in result.actions}
    assert messages["welcome-letter"][0] == "failed"
    assert {a.action_id: a.code for a in result.actions} == {
        "welcome-letter": "unknown_template",
        "seminar": "unknown_event",
    }
    assert "unknown letter template 'nope'" in messages["welcome-letter"][1]
    assert messages["seminar"] == ("failed", "unknown event 'no-such-event'")
    # Fixed data, performed again: the retry of the operator goes through.
    await opportunities.modify_action(f"o-{uid}", "welcome-letter", {"template": f"welcome-{uid}"})
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    assert result.actions[0].outcome == "letter_sent"
    [letter] = await letters.list_letters(pool, f"o-{uid}")
    assert letter.letter_id == f"o-{uid}/welcome-letter/2"


async def test_an_event_invites_the_contact_once(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    result = await opportunities.perform_actions(f"o-{uid}", ["seminar"])
    assert result.actions[0].outcome == "invited"
    [invitee] = await events.list_invitees(pool, f"seminar-{uid}")
    assert (invitee.contact_id, invitee.opportunity_id) == (f"c-{uid}", f"o-{uid}")

    # A second opportunity of the same contact: already on the list, nothing added.
    await opportunities.create(f"c-{uid}", opportunity_id=f"o2-{uid}", process_id=f"life-{uid}")
    again = await opportunities.perform_actions(f"o2-{uid}", ["seminar"])
    assert again.actions[0].outcome == "already_invited"
    assert len(await events.list_invitees(pool, f"seminar-{uid}")) == 1
    state = await opportunities.state(f"o2-{uid}")
    _, action = state.find_action("seminar") or (None, None)
    assert action is not None and action.completed


async def test_the_calendar_side_completes_the_action_and_deleting_frees_it(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    first = (await opportunities.perform_actions(f"o-{uid}", ["intro-call"])).actions[0]
    assert first.activity_id is not None
    deleted = await opportunities.delete_activity(f"o-{uid}", first.activity_id)
    assert deleted.actions[0].outcome == "activity_deleted"
    assert await calendar.get(pool, first.activity_id) is None
    second = (await opportunities.perform_actions(f"o-{uid}", ["intro-call"])).actions[0]
    assert second.outcome == "activity_created"
    assert second.activity_id == f"o-{uid}/intro-call/2"

    with pytest.raises(CommandRejected, match="tracks outcomes: give an outcome"):
        await opportunities.record_outcome(f"o-{uid}", second.activity_id or "")
    with pytest.raises(CommandRejected, match="unknown calendar activity 'act-nope'"):
        await opportunities.record_outcome(f"o-{uid}", "act-nope", outcome="x")
    done = await opportunities.record_outcome(
        f"o-{uid}", second.activity_id or "", outcome="Interested", notes="keen"
    )
    assert done.actions[0].outcome == "activity_done"
    row = await calendar.get(pool, second.activity_id or "")
    assert row is not None and (row.status, row.outcome, row.notes) == (
        "done",
        "Interested",
        "keen",
    )
    state = await opportunities.state(f"o-{uid}")
    _, action = state.find_action("intro-call") or (None, None)
    assert action is not None and action.completed and action.activity_outcome == "Interested"
    with pytest.raises(CommandRejected, match="is already done"):
        await opportunities.record_outcome(f"o-{uid}", second.activity_id or "", outcome="x")


async def test_action_changes_touch_this_opportunity_only(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    await opportunities.create(f"c-{uid}", opportunity_id=f"o2-{uid}", process_id=f"life-{uid}")
    added = await opportunities.add_action(
        f"o-{uid}",
        "Prospect",
        {"action_id": "brochure", "type": "letter", "title": "Brochure", "template": "brochure"},
    )
    assert added.actions[0].outcome == "added"
    await opportunities.modify_action(f"o-{uid}", "intro-call", {"title": "First call"})
    await opportunities.delete_action(f"o-{uid}", "seminar")

    mine = await opportunities.state(f"o-{uid}")
    other = await opportunities.state(f"o2-{uid}")
    assert [a.action_id for a in mine.stage_state("Prospect").actions] == [
        "intro-call",
        "welcome-letter",
        "brochure",
    ]
    assert mine.stage_state("Prospect").actions[0].title == "First call"
    assert [a.action_id for a in other.stage_state("Prospect").actions] == [
        "intro-call",
        "welcome-letter",
        "seminar",
    ]
    assert other.stage_state("Prospect").actions[0].title == "Introductory call"
    assert mine.open_actions() == 3
    assert (await opportunities.state(f"o-{uid}")).process_version == other.process_version


async def test_action_changes_are_validated(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    with pytest.raises(CommandRejected, match="'intro-call' is already used in stage 'Prospect'"):
        await opportunities.add_action(
            f"o-{uid}",
            "Proposal",
            {"action_id": "intro-call", "type": "letter", "title": "x", "template": "t"},
        )
    with pytest.raises(CommandRejected, match="unknown stage 'Nowhere'"):
        await opportunities.add_action(
            f"o-{uid}",
            "Nowhere",
            {"action_id": "x", "type": "letter", "title": "x", "template": "t"},
        )
    with pytest.raises(
        CommandRejected, match=r"activity.duration_minutes: Input should be greater"
    ):
        await opportunities.modify_action(
            f"o-{uid}", "intro-call", {"activity": {"duration_minutes": 0}}
        )
    with pytest.raises(CommandRejected, match=r"\['type'\] of an action cannot change"):
        await opportunities.modify_action(f"o-{uid}", "intro-call", {"type": "letter"})
    with pytest.raises(CommandRejected, match="has not reached"):
        await opportunities.perform_actions(f"o-{uid}", ["proposal-letter"])
    with pytest.raises(CommandRejected, match="unknown action 'nope'"):
        await opportunities.perform_actions(f"o-{uid}", ["intro-call", "nope"])
    assert await calendar.list_for(pool, f"o-{uid}") == [], "a rejected command does nothing"

    activity_id = (
        (await opportunities.perform_actions(f"o-{uid}", ["intro-call"])).actions[0].activity_id
    )
    with pytest.raises(CommandRejected, match="delete the activity first"):
        await opportunities.delete_action(f"o-{uid}", "intro-call")
    await opportunities.delete_activity(f"o-{uid}", activity_id or "")
    deleted = await opportunities.delete_action(f"o-{uid}", "intro-call")
    assert deleted.actions[0].outcome == "deleted"


async def test_previous_stage_actions_can_still_be_performed(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, contact=EMAIL)
    await opportunities.change_stage(f"o-{uid}", "Proposal")
    result = await opportunities.perform_actions(f"o-{uid}", ["seminar", "proposal-letter"])
    assert [a.outcome for a in result.actions] == ["invited", "letter_sent"]
    state = await opportunities.state(f"o-{uid}")
    assert state.visited_stages() == ["Prospect", "Proposal"]


async def test_a_second_contact_gets_its_own_invitation(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    other = await setup_contact(pool, f"{uid}-2")
    await opportunities.create(other, opportunity_id=f"o2-{uid}", process_id=f"life-{uid}")
    for opportunity_id in (f"o-{uid}", f"o2-{uid}"):
        result = await opportunities.perform_actions(opportunity_id, ["seminar"])
        assert result.actions[0].outcome == "invited"
    invitees = await events.list_invitees(pool, f"seminar-{uid}")
    assert sorted(i.contact_id for i in invitees) == sorted([f"c-{uid}", other])


async def test_an_update_is_judged_after_the_signals_that_came_before_it(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    """An action added by a signal and performed at once by an update: the update waits for
    its turn (its validator does not judge it by the state before the signal), and is
    applied; one that would still be invalid in its turn is rejected then, with its code."""
    await open_one(pool, opportunities, uid)
    opp = f"o-{uid}"
    for n in range(3):
        activity = {"kind": "call", "duration_minutes": 15, "due_in_days": 1}
        action = {"action_id": f"call-{n}", "type": "calendar", "title": "Call back",
                  "activity": activity}  # fmt: skip
        added = AddAction.model_validate({"stage": "Prospect", "action": action})
        await opportunities.signal(opp, added)
        done = await opportunities.perform_actions(opp, [f"call-{n}"])
        assert [a.outcome for a in done.actions] == ["activity_created"]
    await opportunities.signal(opp, added)  # call-2 again: rejected in its turn (a signal)
    await opportunities.signal(opp, AddAction.model_validate(
        {"stage": "Prospect", "action": {**action, "action_id": "call-9"}}))  # fmt: skip
    await opportunities.signal(opp, DeleteAction(action_id="call-9"))
    with pytest.raises(CommandRejected) as refused:
        await opportunities.perform_actions(opp, ["call-9"])
    assert refused.value.code == "unknown_action"
    state = await opportunities.state(opp)
    assert [r.command for r in state.rejected] == ["add_action"]
    assert sorted(a.action_id for a in await calendar.list_for(pool, opp)) == [
        "call-0", "call-1", "call-2"]  # fmt: skip
