"""What the command line shows and repairs, run as a user would: `verify --all` checks every
opportunity it can and names each one it could not check, with the reason; a calendar row
holding a time no date holds is reported, not a crash; hostile names are shown escaped;
a contact stored with bad data is repaired field by field; a file too large or unreadable is
one line."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

import store
from runtime.escaping import UNSAFE, escaped
from sales.validation import MAX_PROCESS_BYTES
from starter.client import OpportunitiesClient
from store.schema import migrate
from tests.support.helpers import (
    eventually,
    example_definition,
    open_one,
    register_search_attributes,
)
from tests.support.servers import Cli, Servers
from worker import build_worker

FORGED = "evil\x1b[31mRED\x1b[0m\nFAKE 2026 INFO line\u202e"


def raw_controls(text: str) -> list[str]:
    """The control and bidi characters `text` holds as they are (line feeds aside)."""
    return [c for c in UNSAFE.findall(text) if c != "\n"]


@dataclass
class Isolated:
    """A Temporal namespace and a database of this test's own, a worker on them, and the CLI
    pointed at them: `verify --all` sees only what the test made."""

    temporal: Client
    pool: asyncpg.Pool
    opportunities: OpportunitiesClient
    cli: Cli


@pytest.fixture
async def isolated(
    client: Client, pool: asyncpg.Pool, servers: Servers, postgres_url: str, task_queue: str
) -> AsyncIterator[Isolated]:
    name = f"surfaces-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86_400)
        )
    )
    await pool.execute(f'CREATE DATABASE "{name}"')
    own_pool = await store.create_pool(postgres_url.replace("/opportunities?", f"/{name}?"))
    await migrate(own_pool)
    temporal = await Client.connect(
        servers.temporal_address, namespace=name, data_converter=pydantic_data_converter
    )

    await register_search_attributes(client, name)
    cli = Cli(servers, task_queue)
    cli.env["TEMPORAL_NAMESPACE"] = name
    cli.env["DATABASE_URL"] = postgres_url.replace("/opportunities?", f"/{name}?")
    async with build_worker(temporal, own_pool, task_queue):
        yield Isolated(temporal, own_pool, OpportunitiesClient(temporal, task_queue), cli)
    await own_pool.close()


async def test_verify_all_checks_what_it_can_and_names_what_it_could_not(
    isolated: Isolated, uid: str
) -> None:
    pool, opportunities, cli = isolated.pool, isolated.opportunities, isolated.cli
    healthy, far, gone, unread = (f"o-{uid}{n}" for n in "abcd")
    for suffix in "abcd":
        await open_one(pool, opportunities, f"{uid}{suffix}")
    # A time past year 9999, as a row written before the service checked dates holds it (the
    # read model's check of the business range spares rows older than itself).
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "ALTER TABLE calendar_activities DROP CONSTRAINT calendar_activities_in_business_range"
        )
        await conn.execute(
            "UPDATE calendar_activities SET ends_at = '10000-01-01 00:00:00+00'"
            " WHERE opportunity_id = $1",
            far,
        )
        await conn.execute(
            "ALTER TABLE calendar_activities ADD CONSTRAINT calendar_activities_in_business_range"
            " CHECK (starts_at >= '1900-01-01T00:00:00Z' AND ends_at < '2200-01-01T00:00:00Z')"
            " NOT VALID"
        )
    await pool.execute(
        "UPDATE opportunities SET stage_entered_at = '10000-01-01 00:00:00+00'"
        " WHERE opportunity_id = $1",
        unread,
    )
    await opportunities.handle(gone).terminate("an operator's mistake")
    # Running, but on a task queue no worker polls: its queries are never answered.
    stranded = f"o-{uid}e"
    silent = await isolated.temporal.start_workflow(
        "Opportunity",
        {"opportunity_id": stranded, "contact_id": f"c-{uid}a"},
        id=f"opportunity-{stranded}",
        task_queue=f"nobody-{uid}",
    )
    try:
        checked = await cli("verify", "--all")
        assert checked.code == 1, checked.stdout + checked.stderr
        assert "Traceback" not in checked.stderr and checked.stderr == ""
        lines = checked.stdout.splitlines()
        assert not [line for line in lines if line.startswith(f"{healthy}:")], lines
        activity = f"{far}/intro-call/1"
        assert f"{far}: calendar activity {activity} holds ends_at 10000-01-01 00:00:00 UTC" in (
            lines
        )
        assert (
            f"{gone}: could not check: workflow terminated, but the read model has its row" in lines
        )
        assert [line for line in lines if line.startswith(f"{unread}: ")] == [
            f"{unread}: could not check: its read model cannot be read "
            "(OverflowError: date value out of range)"
        ]
        [stranded_line] = [line for line in lines if line.startswith(f"{stranded}: ")]
        assert stranded_line.startswith(
            f"{stranded}: could not check: its workflow cannot be read ("
        ), stranded_line
        assert lines[-1] == "2 compared, 1 with differences, 3 could not be checked"

        as_json = await cli("verify", "--json", healthy, far, gone, unread)
        assert as_json.code == 1
        verdicts = {v["opportunity_id"]: v for v in as_json.json()}
        assert verdicts[healthy] == {
            "opportunity_id": healthy, "compared": True, "differences": [], "note": ""}  # fmt: skip
        assert verdicts[far]["compared"] and len(verdicts[far]["differences"]) == 1
        assert verdicts[gone]["differences"] == [
            "could not check: workflow terminated, but the read model has its row"
        ]
        assert not verdicts[unread]["compared"]

        # The calendar's readers report the row instead of failing on it.
        listed = await cli("activity", "list", "--opportunity", far)
        assert listed.code == 0 and activity in listed.stdout, listed.stderr
        assert f"{activity} holds ends_at 10000-01-01 00:00:00 UTC" in listed.stderr
        shown = await cli("activity", "show", activity)
        assert shown.code == 0 and "Traceback" not in shown.stderr
        assert re.search(r"Unreadable\s+ends_at 10000-01-01 00:00:00 UTC", shown.stdout)
        row = (await cli("activity", "show", activity, "--json")).json()
        assert (row["ends_at"], row["unreadable"]) == (None, "ends_at 10000-01-01 00:00:00 UTC")
        assert row["starts_at"] is not None
    finally:
        await silent.terminate()


async def test_hostile_names_are_shown_escaped_and_carried_exactly_in_json(
    isolated: Isolated, uid: str
) -> None:
    pool, opportunities, cli = isolated.pool, isolated.opportunities, isolated.cli
    opportunity_id = f"o-{uid}"
    await open_one(pool, opportunities, uid)
    await opportunities.handle(opportunity_id).signal(FORGED, {"stage": "Proposal"})
    name = "[red]Grace[/red] \u202eevil\u202c"
    notes = "one line\ntwo [bold]lines[/bold] \u2066"
    modified = await cli("activity", "modify", f"{opportunity_id}/intro-call/1", "--subject",
                         name, "--notes", notes)  # fmt: skip
    assert modified.code == 0, modified.stderr

    async def rejected() -> list[str]:
        state = await opportunities.state(opportunity_id)
        return [r.command for r in state.rejected]

    [command] = await eventually(rejected)
    for args in (["show", opportunity_id], ["history", opportunity_id],
                 ["activity", "list", "--opportunity", opportunity_id],
                 ["activity", "show", f"{opportunity_id}/intro-call/1"]):  # fmt: skip
        shown = await cli(*args)
        assert shown.code == 0, shown.stderr
        assert raw_controls(shown.stdout) == [] and raw_controls(shown.stderr) == [], args
        assert "FAKE 2026 INFO line" not in shown.stdout.splitlines()
    shown = await cli("show", opportunity_id)
    assert f"last rejected command: {escaped(command)}: " in shown.stdout
    listed = await cli("activity", "list", "--opportunity", opportunity_id)
    assert "[red]Grace[/red] \\u202eevil\\u202c" in listed.stdout
    details = await cli("activity", "show", f"{opportunity_id}/intro-call/1")
    assert "one line\\x0atwo [bold]lines[/bold] \\u2066" in details.stdout

    for args in (["show", opportunity_id, "--json"],
                 ["activity", "show", f"{opportunity_id}/intro-call/1", "--json"]):  # fmt: skip
        as_json = await cli(*args)
        assert raw_controls(as_json.stdout) == [], args
    state = (await cli("show", opportunity_id, "--json")).json()
    assert state["rejected"][-1]["command"] == command  # the very same value
    activity = (await cli("activity", "show", f"{opportunity_id}/intro-call/1", "--json")).json()
    assert (activity["subject"], activity["notes"]) == (name, notes)

    unknown = await cli("show", FORGED)
    assert unknown.code == 1 and raw_controls(unknown.stderr) == []
    assert len(unknown.stderr.strip().splitlines()) == 1


async def test_a_contact_stored_with_bad_data_is_repaired_field_by_field(
    cli: Cli, pool: asyncpg.Pool, uid: str
) -> None:
    contact = f"c-{uid}"
    added = await cli("contact", "add", "--id", contact, "--first-name", "Ada",
                      "--last-name", "Lovelace")  # fmt: skip
    assert added.code == 0, added.stderr
    await pool.execute(
        "UPDATE contacts SET last_name = E'Love\\rlace', city = E'Lon\\x01don'"
        " WHERE contact_id = $1",
        contact,
    )
    listed = await cli("contact", "list", "--json")
    assert listed.code == 0, listed.stderr
    [stored] = [c for c in listed.json() if c["contact_id"] == contact]
    assert (stored["last_name"], stored["city"]) == ("Love\rlace", "Lon\x01don"), "as stored"
    table = await cli("contact", "list")
    assert table.code == 0 and contact in table.stdout, table.stderr
    assert "\x01" not in table.stdout and "\r" not in table.stdout, "shown escaped"
    other = await cli("contact", "modify", contact, "--first-name", "Zed")
    assert (other.code, other.stdout.strip()) == (0, f"{contact}: changed"), other.stderr
    row = await pool.fetchrow("SELECT first_name, last_name FROM contacts WHERE contact_id = $1",
                              contact)  # fmt: skip
    assert tuple(row) == ("Zed", "Love\rlace"), "only the field given is written"

    bad = await cli("contact", "modify", contact, "--first-name", "Z\re", "--postal-code", "1")
    assert bad.code == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "first_name: must be one line" in bad.stderr and "last_name" not in bad.stderr
    assert await pool.fetchval("SELECT postal_code FROM contacts WHERE contact_id = $1",
                               contact) is None, "a refused change writes nothing"  # fmt: skip

    repaired = await cli("contact", "modify", contact, "--last-name", "Lovelace", "--city",
                         "London", "--email", "Ada@EXAMPLE.com", "--json")  # fmt: skip
    assert repaired.code == 0, repaired.stderr
    assert repaired.json()["changed"] is True
    shown = (await cli("contact", "show", contact, "--json")).json()
    assert (shown["first_name"], shown["last_name"], shown["city"], shown["email"]) == (
        "Zed", "Lovelace", "London", "Ada@example.com")  # fmt: skip
    same = await cli("contact", "modify", contact, "--city", "London")
    assert (same.code, same.stdout.strip()) == (0, f"{contact}: unchanged")


async def test_a_process_file_too_large_or_unreadable_is_one_line(
    cli: Cli, tmp_path: Path, uid: str
) -> None:
    document = example_definition(f"p-{uid}")
    action = {"type": "fax", "action_id": "x" * 150, "title": "漢" * 400}
    document["stages"] = [{"name": f"s{n}", "actions": [action] * 50} for n in range(50)]
    big = tmp_path / "big.json"
    big.write_text(json.dumps(document))  # 3.9 MB, every action invalid
    document["stages"] = document["stages"][:5]
    large = tmp_path / "large.json"
    large.write_text(json.dumps(document))
    long_integer = tmp_path / "long.json"
    long_integer.write_text('{"process_id": 1' + "0" * 5000 + "}")
    for path, says in [
        (big, "it is larger than 1,048,576 bytes"),
        (large, f"is too large: at most {MAX_PROCESS_BYTES:,} bytes as JSON"),
        (long_integer, "is not valid JSON: Exceeds the limit (4300 digits)"),
    ]:
        refused = await cli("process", "apply", str(path))
        assert refused.code == 1
        assert refused.stderr.count("\n") == 1 and len(refused.stderr) < 400, refused.stderr
        assert says in refused.stderr and "Traceback" not in refused.stderr


async def test_verify_keeps_checking_when_asked_about_ids_it_cannot_find(
    isolated: Isolated, uid: str
) -> None:
    await open_one(isolated.pool, isolated.opportunities, uid)
    checked = await isolated.cli("verify", f"o-{uid}", f"none-{uid}", "not an id \x1b[2J")
    assert checked.code == 0, checked.stdout + checked.stderr
    assert raw_controls(checked.stdout) == []
    assert f"none-{uid}: not compared (no workflow)" in checked.stdout
    assert (
        checked.stdout.splitlines()[-1] == "1 compared, 0 with differences, 0 could not be checked"
    )
