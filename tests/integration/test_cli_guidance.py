"""The command line says what happened and what is wrong, before it asks or writes anything:
failed actions exit non-zero and show where to fix them, contacts can be corrected, letters
can be read, references are checked before a prompt or a start, and ids are never cut."""

from __future__ import annotations

import json
import time
from pathlib import Path

import asyncpg
import pytest
from temporalio.worker import Worker

from store import processes
from tests.support.helpers import own_definition, setup_references
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")


async def _process_and_contact(
    cli: Cli, pool: asyncpg.Pool, tmp_path: Path, uid: str, *, address: bool
) -> None:
    await setup_references(pool, uid)
    path = tmp_path / "process.json"
    path.write_text(json.dumps(own_definition(uid, on_entry=False)))
    applied = await cli("process", "apply", str(path))
    assert applied.code == 0, applied.stderr
    contact = ["contact", "add", "--id", f"c-{uid}", "--first-name", "Ada",
               "--last-name", "Lovelace"]  # fmt: skip
    if address:
        contact += ["--street", "12 St James's Square", "--city", "London",
                    "--postal-code", "SW1Y 4JH"]  # fmt: skip
    assert (await cli(*contact)).code == 0


async def _opened(
    cli: Cli, pool: asyncpg.Pool, tmp_path: Path, uid: str, *options: str, address: bool = True
) -> None:
    """Opportunity `o-<uid>` open on this test's process and contact (`options`: more
    `create` options)."""
    await _process_and_contact(cli, pool, tmp_path, uid, address=address)
    opened = await cli("create", "--contact", f"c-{uid}", "--id", f"o-{uid}",
                       "--process", f"life-{uid}", *options)  # fmt: skip
    assert opened.code == 0, opened.stderr


async def test_a_failed_letter_exits_non_zero_shows_the_fix_and_succeeds_once_fixed(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    await _opened(cli, pool, tmp_path, uid, address=False)

    failed = await cli("perform", f"o-{uid}", "welcome-letter")
    assert failed.code == 1
    assert "welcome-letter" in failed.stdout and "failed" in failed.stdout
    assert failed.stderr.strip().splitlines() == [
        "error: 1 action failed: welcome-letter: contact "
        f"'c-{uid}' cannot receive letter 'welcome-{uid}': no e-mail address, and no "
        "postal address (street, postal code and city) to print it for"
    ]
    shown = await cli("show", f"o-{uid}")
    assert "last attempt failed (no_address)" in shown.stdout
    state = (await cli("show", f"o-{uid}", "--json")).json()
    welcome = next(
        a for s in state["stages"] for a in s["actions"] if a["action_id"] == "welcome-letter"
    )
    assert welcome["last_error"]["code"] == "no_address"
    assert (await cli("letter", "list", "--opportunity", f"o-{uid}", "--json")).json() == []

    bad = await cli("contact", "modify", f"c-{uid}", "--email", "not-an-address")
    assert bad.code == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "email" in bad.stderr
    fixed = await cli("contact", "modify", f"c-{uid}", "--street", "12 St James's Square",
                      "--city", "London", "--postal-code", "SW1Y 4JH",
                      "--first-name", "Augusta")  # fmt: skip
    assert (fixed.code, fixed.stdout.strip()) == (0, f"c-{uid}: changed")
    contact = (await cli("contact", "show", f"c-{uid}", "--json")).json()
    assert (contact["first_name"], contact["city"]) == ("Augusta", "London")
    assert "Augusta Lovelace" in (await cli("show", f"o-{uid}")).stdout

    again = await cli("perform", f"o-{uid}", "welcome-letter")
    assert again.code == 0, again.stderr
    assert "letter_filed" in again.stdout
    letters = (await cli("letter", "list", "--opportunity", f"o-{uid}", "--json")).json()
    assert [(x["action_id"], x["status"]) for x in letters] == [("welcome-letter", "filed")]
    assert (await cli("letter", "list", "--status", "sent", "--opportunity", f"o-{uid}",
                      "--json")).json() == []  # fmt: skip
    letter = await cli("letter", "show", letters[0]["letter_id"])
    assert letter.code == 0 and "Dear Augusta Lovelace" in letter.stdout
    assert "filed as a document to print" in letter.stdout
    unknown = await cli("letter", "show", f"none-{uid}")
    assert unknown.code == 1 and f"unknown letter 'none-{uid}'" in unknown.stderr

    refused = await cli("contact", "delete", f"c-{uid}")
    assert refused.code == 1
    assert f"contact 'c-{uid}' has open opportunities: o-{uid}; it is kept" in refused.stderr


async def test_a_contact_nothing_refers_to_can_be_deleted(cli: Cli, uid: str) -> None:
    added = await cli("contact", "add", "--id", f"c-{uid}", "--first-name", "A", "--last-name", "B")
    assert added.code == 0
    nothing = await cli("contact", "modify", f"c-{uid}")
    assert nothing.code == 1 and "nothing to change" in nothing.stderr
    assert (await cli("contact", "delete", f"c-{uid}")).code == 0
    gone = await cli("contact", "show", f"c-{uid}")
    assert gone.code == 1 and f"unknown contact 'c-{uid}'" in gone.stderr


async def test_a_process_is_checked_for_what_it_names_and_read_by_its_content(
    cli: Cli, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    document = own_definition(uid)
    as_text = tmp_path / "process.txt"
    as_text.write_text(json.dumps(document))
    refused = await cli("process", "apply", str(as_text))
    assert refused.code == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: process 'life-{uid}' names what does not exist: letter template "
        f"'proposal-{uid}', letter template 'welcome-{uid}', event 'seminar-{uid}'; add them "
        "first (`template add`, `event add`), or pass --allow-missing"
    ]
    assert await processes.get_process(pool, f"life-{uid}") is None

    await setup_references(pool, uid)
    applied = await cli("process", "apply", str(as_text))  # JSON, whatever the extension
    assert applied.code == 0, applied.stderr
    prose = tmp_path / "notes.json"
    prose.write_text("just some notes\n")
    unreadable = await cli("process", "apply", str(prose))
    assert unreadable.code == 1 and "holds no JSON or YAML document" in unreadable.stderr

    missing = await cli("process", "show", f"life-{uid}", "--version", "99")
    assert missing.code == 1
    assert f"process 'life-{uid}' has no version 99; its versions are 1" in missing.stderr


async def test_references_are_checked_before_any_question(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    await _opened(cli, pool, tmp_path, uid)
    activities = await cli("perform", f"o-{uid}", "intro-call")  # an open calendar activity
    assert activities.code == 0, activities.stderr

    active = await cli("action", "delete", f"o-{uid}", "intro-call")
    assert active.code == 1
    assert active.stderr.strip() == (
        f"error: activity_active: action 'intro-call' has active calendar activity "
        f"o-{uid}/intro-call/1: delete "
        "the activity first, then the action (on the command line: `opportunities activity "
        "delete ACTIVITY`)"
    )

    unknown = await cli("stage", f"o-{uid}", "Negotiation")  # would otherwise ask first
    assert unknown.code == 1
    assert unknown.stderr.startswith("error: unknown stage 'Negotiation'; stages are [")
    assert "Cancel" not in unknown.stderr + unknown.stdout

    started = time.monotonic()
    nowhere = await cli("mass-modify", "--process", f"life-{uid}", "--to-stage", "Nowhere",
                        "--yes", "--batch-id", f"b-{uid}")  # fmt: skip
    assert nowhere.code == 1 and time.monotonic() - started < 15
    assert "no selected opportunity's process has stage 'Nowhere'" in nowhere.stderr
    status = await cli("mass-modify", "status", f"b-{uid}")
    assert status.code == 1  # no batch was started


async def test_a_mass_modification_that_changes_nothing_exits_non_zero(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    await _opened(cli, pool, tmp_path, uid)
    won = await cli("stage", f"o-{uid}", "Closed won", "--keep-open-activities")
    assert won.code == 0, won.stderr
    closed = await cli("mass-modify", "--process", f"life-{uid}", "--to-stage", "Proposal",
                       "--yes")  # fmt: skip
    assert closed.code == 1, closed.stdout
    assert "1 rejected" in closed.stdout
    assert "every one of 1 opportunity was rejected" in closed.stderr


async def test_create_without_a_worker_says_so_at_once_and_uses_no_id(
    cli: Cli, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    await _process_and_contact(cli, pool, tmp_path, uid, address=True)
    cli.env["OPPORTUNITIES_TASK_QUEUE"] = f"nobody-{uid}"
    started = time.monotonic()
    refused = await cli("create", "--contact", f"c-{uid}", "--id", f"o-{uid}",
                        "--process", f"life-{uid}")  # fmt: skip
    assert refused.code == 1 and time.monotonic() - started < 10
    assert refused.stderr.strip() == (
        f"error: no worker is polling task queue 'nobody-{uid}': start one (`make run`, or "
        "`opportunities-worker`); nothing was sent"
    )
    shown = await cli("show", f"o-{uid}")
    assert shown.code == 1 and f"no opportunity 'o-{uid}'" in shown.stderr


async def test_ids_are_never_wrapped_and_counts_agree_with_their_nouns(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    added = await cli("user", "add", "--id", f"own-{uid}", "--name", "Own", "--role", "agent")
    assert added.code == 0, added.stderr
    await _opened(cli, pool, tmp_path, uid, "--owner", f"own-{uid}")
    assert (await cli("perform", f"o-{uid}", "intro-call")).code == 0
    cli.env["COLUMNS"] = "60"
    listed = await cli("activity", "list", "--opportunity", f"o-{uid}")
    assert f"o-{uid}/intro-call/1" in listed.stdout, listed.stdout
    found = await cli("search", "--owner", f"own-{uid}")
    assert "1 opportunity" in found.stdout and "1 opportunities" not in found.stdout


async def test_hostile_input_to_these_commands_is_one_line_and_writes_nothing(
    cli: Cli, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    assert (await cli("contact", "add", "--id", f"c-{uid}", "--first-name", "A",
                      "--last-name", "B")).code == 0  # fmt: skip
    before = (await cli("contact", "show", f"c-{uid}", "--json")).json()
    binary = tmp_path / "binary.j2"
    binary.write_bytes(bytes(range(128, 256)))
    cases = [
        ("contact", "modify", f"c-{uid}", "--first-name", "x\x01y"),
        ("contact", "modify", f"c-{uid}", "--first-name", ""),
        ("contact", "modify", f"c-{uid}", "--last-name", "a" * 3000),
        ("contact", "modify", f"c-{uid}; DROP TABLE contacts", "--first-name", "Z"),
        ("contact", "delete", f"none-{uid}"),
        ("letter", "show", "../../etc/passwd"),
        ("template", "add", f"t-{uid}", str(binary)),
        ("process", "apply", str(binary)),
        ("mass-modify", "--to-stage", "Pro\x07posal", "--yes"),
    ]
    for args in cases:
        result = await cli(*args)
        assert result.code == 1, (args, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert (await cli("contact", "show", f"c-{uid}", "--json")).json() == before
    assert (await cli("letter", "list", "--status", "bogus")).code == 2  # a usage error
