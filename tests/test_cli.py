"""The `opportunities` console script, run as a subprocess against the real servers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from temporalio.worker import Worker

from tests.conftest import Cli, example_definition


async def test_process_apply_versions_list_and_show(cli: Cli, tmp_path: Path, uid: str) -> None:
    path = tmp_path / "process.json"
    path.write_text(json.dumps(example_definition(f"p-{uid}")))
    first = await cli("process", "apply", str(path), "--json")
    assert first.code == 0, first.stderr
    assert first.json() == {"process_id": f"p-{uid}", "version": 1, "created": True}
    again = await cli("process", "apply", str(path))
    assert again.code == 0 and f"p-{uid}: unchanged, still version 1" in again.stdout

    yaml_path = tmp_path / "process.yaml"
    yaml_path.write_text(yaml.safe_dump(example_definition(f"p-{uid}", name="Renamed")))
    second = await cli("process", "apply", str(yaml_path), "--json")
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
    result = await cli("process", "apply", str(path))
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
    assert (await cli("process", "apply", str(path))).code == 0
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

    moved = await cli("stage", f"o-{uid}", "Proposal", "--reason", "wants a quote", "--by", "bob")
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
