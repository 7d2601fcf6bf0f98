"""The `opportunities` console script, run as a subprocess against the real servers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
import yaml
from temporalio.client import Client
from temporalio.worker import Worker

from runtime import embedded
from starter.client import OpportunitiesClient, schemas
from starter.client.read_model import ReadModel
from store import calendar, letters, users
from store.search import SearchFilters
from tests.support.helpers import WELCOME, eventually, example_definition, open_one, own_definition
from tests.support.servers import Cli, Inbox, Servers

pytestmark = pytest.mark.usefixtures("verified")


async def test_process_apply_versions_list_and_show(cli: Cli, tmp_path: Path, uid: str) -> None:
    path = tmp_path / "process.json"
    path.write_text(json.dumps(example_definition(f"p-{uid}")))
    first = await cli("process", "apply", str(path), "--allow-missing", "--json")
    assert first.code == 0, first.stderr
    assert first.json() == {"process_id": f"p-{uid}", "version": 1, "created": True}
    again = await cli("process", "apply", str(path), "--allow-missing")
    assert again.code == 0 and f"p-{uid}: unchanged, still version 1" in again.stdout

    yaml_path = tmp_path / "process.yaml"
    yaml_path.write_text(yaml.safe_dump(example_definition(f"p-{uid}", name="Renamed")))
    second = await cli("process", "apply", str(yaml_path), "--allow-missing", "--json")
    assert second.json()["version"] == 2

    listed = await cli("process", "list", "--json")
    mine = next(p for p in listed.json() if p["process_id"] == f"p-{uid}")
    assert (mine["version"], mine["name"]) == (2, "Renamed")

    shown = await cli("process", "show", f"p-{uid}")
    assert shown.code == 0
    for text in ("Renamed", "Prospect", "intro-call", "calendar", "Closed won", "'Sale Made'"):
        assert text in shown.stdout
    old = await cli("process", "show", f"p-{uid}", "--version", "1", "--json")
    assert old.json()["name"] == "Life insurance sale"


async def test_process_apply_reports_bad_definitions(cli: Cli, tmp_path: Path, uid: str) -> None:
    document = example_definition(f"p-{uid}")
    document["stages"][0]["actions"][1]["type"] = "fax"
    document["outcome_stages"] = {"Sale Made": "Signed"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    result = await cli("process", "apply", str(path), "--allow-missing")
    assert result.code == 1
    assert f"invalid process definition {path}" in result.stderr
    assert "stages[0].actions[1]" in result.stderr and "'fax'" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    result = await cli("process", "apply", str(broken))
    assert result.code == 1 and "is not valid JSON" in result.stderr
    missing = await cli("process", "apply", str(tmp_path / "nope.yaml"))
    assert missing.code == 1 and "cannot read" in missing.stderr
    unknown = await cli("process", "show", f"none-{uid}")
    assert unknown.code == 1 and f"unknown process 'none-{uid}'" in unknown.stderr


async def test_contact_add_and_list(cli: Cli, uid: str) -> None:
    args = ["contact", "add", "--id", f"c-{uid}", "--first-name", "Grace", "--last-name", "Hopper",
            "--email", "grace@example.com", "--street", "1 Navy Way", "--city", "Arlington",
            "--postal-code", "22202", "--country", "US"]  # fmt: skip
    added = await cli(*args, "--json")
    assert added.code == 0, added.stderr
    assert added.json() == {"contact_id": f"c-{uid}", "added": True}
    assert "unchanged" in (await cli(*args)).stdout
    conflict = await cli(*args[:-2], "--country", "UK")
    assert conflict.code == 1 and "already exists with other details" in conflict.stderr
    bad = await cli("contact", "add", "--id", f"x-{uid}", "--first-name", "A", "--last-name", "B",
                    "--email", "not-an-email")  # fmt: skip
    assert bad.code == 1 and "invalid contact: email" in bad.stderr
    listed = await cli("contact", "list", "--json")
    mine = next(c for c in listed.json() if c["contact_id"] == f"c-{uid}")
    assert mine["city"] == "Arlington" and mine["email"] == "grace@example.com"


async def test_create_change_stage_show_and_history(
    cli: Cli, worker: Worker, tmp_path: Path, uid: str
) -> None:
    path = tmp_path / "process.json"
    path.write_text(json.dumps(example_definition(f"p-{uid}")))
    assert (await cli("process", "apply", str(path), "--allow-missing")).code == 0
    contact = ["contact", "add", "--id", f"c-{uid}", "--first-name", "Ada", "--last-name", "L"]
    assert (await cli(*contact)).code == 0

    created = await cli("create", "--contact", f"c-{uid}", "--id", f"o-{uid}",
                        "--process", f"p-{uid}", "--name", "Term life",
                        "--owner", "ann")  # fmt: skip
    assert created.code == 0, created.stderr
    assert f"o-{uid}: open in stage 'Prospect' of p-{uid} v1" in created.stdout

    duplicate = await cli("create", "--contact", f"c-{uid}", "--id", f"o-{uid}",
                          "--process", f"p-{uid}")  # fmt: skip
    assert duplicate.code == 1 and f"opportunity 'o-{uid}' already exists" in duplicate.stderr

    asked = await cli("stage", f"o-{uid}", "Proposal")
    assert asked.code == 1
    assert "Stage 'Prospect' has 1 open activity" in asked.stderr
    assert "--keep-open-activities" in asked.stderr
    moved = await cli("stage", f"o-{uid}", "Proposal", "--reason", "wants a quote", "--by", "bob",
                      "--keep-open-activities")  # fmt: skip
    assert moved.code == 0, moved.stderr
    assert "moved from 'Prospect' to 'Proposal'" in moved.stdout

    refused = await cli("stage", f"o-{uid}", "Negotiation")
    assert refused.code == 1
    assert "unknown stage 'Negotiation'" in refused.stderr and "'Closed won'" in refused.stderr

    shown = await cli("show", f"o-{uid}")
    assert shown.code == 0
    for text in ("Term life", "Proposal", "ann", f"p-{uid} v1", "intro-call", "proposal-letter"):
        assert text in shown.stdout
    one_stage = await cli("show", f"o-{uid}", "--stage", "Proposal")
    assert "proposal-review" in one_stage.stdout and "intro-call" not in one_stage.stdout
    as_json = (await cli("show", f"o-{uid}", "--json")).json()
    assert as_json["current_stage"] == "Proposal" and as_json["owner"] == "ann"

    history = await cli("history", f"o-{uid}", "--json")
    assert [(h["from_stage"], h["to_stage"], h["source"], h["by"]) for h in history.json()] == [
        (None, "Prospect", "start", "cli-tester"),
        ("Prospect", "Proposal", "manual", "bob"),
    ]
    table = await cli("history", f"o-{uid}")
    assert "wants a quote" in table.stdout and "manual" in table.stdout


async def test_create_reports_unknown_ids(cli: Cli, worker: Worker, uid: str) -> None:
    result = await cli("create", "--contact", f"nobody-{uid}", "--id", f"o-{uid}")
    assert result.code == 1
    assert f"unknown contact 'nobody-{uid}'" in result.stderr
    missing = await cli("show", f"none-{uid}")
    assert missing.code == 1 and f"no opportunity 'none-{uid}'" in missing.stderr


async def test_stage_actions_from_the_command_line(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, inbox: Inbox, uid: str
) -> None:
    document = own_definition(uid, on_entry=False)
    (tmp_path / "process.json").write_text(json.dumps(document))
    assert (
        await cli("process", "apply", str(tmp_path / "process.json"), "--allow-missing")
    ).code == 0
    added = await cli("contact", "add", "--id", f"c-{uid}", "--first-name", "Ada",
                      "--last-name", "Lovelace", "--email", f"ada-{uid}@example.com")  # fmt: skip
    assert added.code == 0, added.stderr
    (tmp_path / "welcome.j2").write_text(WELCOME)
    assert (await cli("template", "add", f"welcome-{uid}", str(tmp_path / "welcome.j2"))).code == 0
    templates = await cli("template", "list", "--json")
    assert f"welcome-{uid}" in [t["name"] for t in templates.json()]
    (tmp_path / "bad.j2").write_text("Hello {{ contact.first_name ")
    bad = await cli("template", "add", f"bad-{uid}", str(tmp_path / "bad.j2"))
    assert bad.code == 1 and "cannot be used: line 1" in bad.stderr
    event = await cli("event", "add", "--id", f"seminar-{uid}", "--name", "Retirement seminar",
                      "--starts-at", "2027-01-15T18:00:00+00:00")  # fmt: skip
    assert event.code == 0, event.stderr
    naive = await cli(
        "event", "add", "--id", f"x-{uid}", "--name", "X", "--starts-at", "2027-01-15"
    )
    assert naive.code == 1 and "needs a time zone" in naive.stderr
    assert f"seminar-{uid}" in (await cli("event", "list")).stdout

    created = await cli("create", "--contact", f"c-{uid}", "--id", f"o-{uid}",
                        "--process", f"life-{uid}", "--name", "Term life")  # fmt: skip
    assert created.code == 0, created.stderr

    performed = await cli("perform", f"o-{uid}", "intro-call", "welcome-letter", "seminar")
    assert performed.code == 0, performed.stderr
    for text in ("activity_created", "letter_sent", "invited"):
        assert text in performed.stdout
    assert len(inbox.to(f"ada-{uid}@example.com")) == 1
    invitees = await cli("event", "invitees", f"seminar-{uid}", "--json")
    assert [i["contact_id"] for i in invitees.json()] == [f"c-{uid}"]

    activities = (await cli("activity", "list", "--opportunity", f"o-{uid}", "--json")).json()
    [activity] = activities
    assert activity["status"] == "active" and activity["subject"] == "Introductory call"
    refused = await cli("complete", f"o-{uid}", "intro-call")
    assert refused.code == 1 and "give an outcome" in refused.stderr
    done = await cli("activity", "done", activity["activity_id"], "--outcome", "Interested")
    assert done.code == 0, done.stderr
    assert "activity_done" in done.stdout

    (tmp_path / "action.json").write_text(json.dumps(
        {"action_id": "brochure", "type": "letter", "title": "Brochure", "template": "b"}
    ))  # fmt: skip
    add = await cli("action", "add", f"o-{uid}", "--stage", "Prospect",
                    "--file", str(tmp_path / "action.json"))  # fmt: skip
    assert add.code == 0, add.stderr
    (tmp_path / "changes.yaml").write_text("title: Our brochure\n")
    modify = await cli("action", "modify", f"o-{uid}", "brochure",
                       "--file", str(tmp_path / "changes.yaml"))  # fmt: skip
    assert modify.code == 0, modify.stderr
    shown = await cli("show", f"o-{uid}")
    for text in ("Our brochure", activity["activity_id"], "Interested", "yes"):
        assert text in shown.stdout
    completed = await cli("complete", f"o-{uid}", "brochure", "--json")
    assert completed.json()["actions"][0]["outcome"] == "completed"
    deleted = await cli("action", "delete", f"o-{uid}", "brochure")
    assert deleted.code == 0
    missing = await cli("activity", "done", "act-nope")
    assert missing.code == 1 and "unknown calendar activity 'act-nope'" in missing.stderr
    state = json.loads((await cli("show", f"o-{uid}", "--json")).stdout)
    prospect = next(s for s in state["stages"] if s["name"] == "Prospect")
    assert [(a["action_id"], a["completed"]) for a in prospect["actions"]] == [
        ("intro-call", True),
        ("welcome-letter", True),
        ("seminar", True),
    ]
    assert await letters.list_letters(pool, f"o-{uid}") != []


async def test_temporal_cli_sends_the_same_commands(
    servers: Servers, worker: Worker, pool: asyncpg.Pool, client: Client, task_queue: str, uid: str
) -> None:
    """Operators can use Temporal's own CLI with plain JSON."""
    await open_one(pool, OpportunitiesClient(client, task_queue), uid, on_entry=False)
    target = ["--address", servers.temporal_address, "-w", f"opportunity-o-{uid}"]

    async def temporal(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            embedded.temporal_binary(), *args, *target, "-o", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode()

    perform = '{"action_ids": ["intro-call"], "by": "ops"}'
    code, out = await temporal(
        "workflow", "update", "execute", "--name", "perform_actions", "--input", perform
    )
    assert code == 0, out
    assert "activity_created" in out
    code, out = await temporal("workflow", "update", "execute", "--name", "complete_actions",
                               "--input", '{"action_ids": ["intro-call"]}')  # fmt: skip
    assert code != 0 and "give an outcome" in out
    complete = '{"action_ids": ["intro-call"], "outcome": "Later"}'
    code, out = await temporal(
        "workflow", "signal", "--name", "complete_actions", "--input", complete
    )
    assert code == 0, out

    async def completed() -> bool:
        rows = await calendar.list_for(pool, f"o-{uid}")
        return bool(rows) and rows[0].status == "done"

    await eventually(completed)
    code, out = await temporal("workflow", "query", "--name", "state")
    assert code == 0 and '"activity_outcome":"Later"' in out.replace(" ", "").replace("\\", "")
    won = '{"stage": "Closed won", "reason": "signed"}'
    code, out = await temporal(
        "workflow", "update", "execute", "--name", "change_stage", "--input", won
    )
    assert code == 0 and '"won"' in out
    code, out = await temporal("workflow", "describe")
    assert code == 0 and "COMPLETED" in out.upper()


async def test_stage_confirmation_won_and_reopen(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    moved = await cli("stage", f"o-{uid}", "Needs analysis", "--yes", "--json")
    assert moved.code == 0, moved.stderr
    assert [a["outcome"] for a in moved.json()["actions"]] == ["activity_created"]
    activities = (await cli("activity", "list", "--opportunity", f"o-{uid}", "--json")).json()
    assert sorted((a["action_id"], a["status"]) for a in activities) == [
        ("fact-finder", "active"),
        ("intro-call", "canceled"),
    ]
    won = await cli("stage", f"o-{uid}", "Closed won", "--keep-open-activities")
    assert won.code == 0 and "moved from 'Needs analysis' to 'Closed won'" in won.stdout
    closed = await cli("stage", f"o-{uid}", "Proposal", "--keep-open-activities")
    assert closed.code == 1 and "is closed; reopen it" in closed.stderr
    reopened = await cli("reopen", f"o-{uid}", "--stage", "Proposal")
    assert reopened.code == 0, reopened.stderr
    assert f"o-{uid}: reopened in stage 'Proposal'" in reopened.stdout
    history = (await cli("history", f"o-{uid}", "--json")).json()
    assert [(h["to_stage"], h["source"], h["by"]) for h in history][-2:] == [
        ("Closed won", "manual", "cli-tester"),
        ("Proposal", "reopened", "cli-tester"),
    ]


async def test_mass_modify_from_the_command_line(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await open_one(pool, opportunities, uid, on_entry=False)
    for index in range(3):
        await opportunities.create(
            f"c-{uid}", opportunity_id=f"o{index}-{uid}", process_id=process_id
        )
    asked = await cli("mass-modify", "--process", process_id, "--to-stage", "Proposal")
    assert (
        asked.code == 1
        and "Change 4 opportunities to stage 'Proposal'? Answer with --yes" in asked.stderr
    )
    both = await cli("mass-modify", "--process", process_id, "--to-stage", "X", "--owner", "Y")
    assert both.code == 1
    assert "exactly one of --to-stage, --to-next-stage and --owner" in both.stderr
    done = await cli("mass-modify", "--process", process_id, "--to-stage", "Proposal", "--yes",
                     "--batch-id", f"b-{uid}", "--json")  # fmt: skip
    assert done.code == 0, done.stderr
    assert (done.json()["changed"], done.json()["total"]) == (4, 4)
    status = await cli("mass-modify", "status", f"b-{uid}")
    assert status.code == 0
    assert f"batch b-{uid} finished: 4 of 4 done, 4 changed, 0 skipped, 0 rejected" in status.stdout
    await users.put_user(pool, users.User(user_id="dora", name="Dora"))  # a batch's owner
    detached = await cli("mass-modify", "--process", process_id, "--owner", "dora", "--yes",
                         "--detach", "--batch-id", f"d-{uid}")  # fmt: skip
    assert detached.code == 0 and f"batch d-{uid} started" in detached.stdout

    async def owned() -> bool:
        return (
            await ReadModel(pool).search(SearchFilters(owner="dora", process_id=process_id))
        ).total == 4

    await eventually(owned)
    history = await opportunities.history(f"o0-{uid}")
    assert (history[-1].source, history[-1].by) == ("note", "cli-tester")
    assert history[-1].reason is not None and history[-1].reason.endswith("→ dora")
    stays = [entry for entry in history if entry.source != "note"]
    assert (stays[-1].source, stays[-1].by) == ("mass", "cli-tester")


async def test_the_cli_prints_the_same_schemas(cli: Cli) -> None:
    printed = (await cli("schema")).json()
    assert printed == {k.removesuffix(".json"): v for k, v in schemas.generate().items()}
    one = (await cli("schema", "change_stage")).json()
    assert one == schemas.generate()["commands/change_stage.json"]
    missing = await cli("schema", "nope")
    assert missing.code == 1 and "no schema 'nope'; schemas are:" in missing.stderr
