"""Hostile strings through every CLI field: stored and shown verbatim, nothing else changes.

SQL is parameterized everywhere (and the name filter escapes LIKE's wildcards), templates
see contact data as data, and ids that are not identifiers are refused with a clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
from temporalio.worker import Worker

from tests.support.helpers import example_definition
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")

HOSTILE = [
    "Robert'); DROP TABLE opportunities;-- 50%_off \\ \" /* */ $1 ::text "
    "{{ 7*7 }} {% raw %} ${HOME} $(id) Ünïcødé 🎉 \u202eevil\u202c <script>alert(1)</script>",
]
TABLES = ["contacts", "opportunities", "opportunity_history", "calendar_activities", "letters"]


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {t: int(await pool.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}


async def test_hostile_strings_are_data(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    path = tmp_path / "process.json"
    path.write_text(json.dumps(example_definition(f"p-{uid}")))
    assert (await cli("process", "apply", str(path), "--allow-missing")).code == 0
    before = await counts(pool)

    for n, text in enumerate(HOSTILE):
        contact = await cli("contact", "add", "--id", f"c-{uid}-{n}", "--first-name", text,
                            "--last-name", text, "--city", text, "--street", text)  # fmt: skip
        assert contact.code == 0, contact.stderr
        unknown = await cli("create", "--contact", f"c-{uid}-{n}", "--id", f"o-{uid}-{n}",
                            "--process", f"p-{uid}", "--name", text, "--owner", text)  # fmt: skip
        assert unknown.code == 1 and "unknown user" in unknown.stderr, "an owner is a user"
        created = await cli("create", "--contact", f"c-{uid}-{n}", "--id", f"o-{uid}-{n}",
                            "--process", f"p-{uid}", "--name", text, "--owner", "ann")  # fmt: skip
        assert created.code == 0, created.stderr
        moved = await cli("stage", f"o-{uid}-{n}", "Proposal", "--reason", text, "--by", text,
                          "--keep-open-activities")  # fmt: skip
        assert moved.code == 0, moved.stderr
        done = await cli("activity", "done", f"o-{uid}-{n}/intro-call/1", "--outcome", text,
                         "--notes", text)  # fmt: skip
        assert done.code == 0, done.stderr

        row = await pool.fetchrow(
            "SELECT name, owner, current_stage FROM opportunities WHERE opportunity_id = $1",
            f"o-{uid}-{n}",
        )
        assert tuple(row) == (text, "ann", "Proposal")
        entry = await pool.fetchrow(
            "SELECT reason, by FROM opportunity_history WHERE opportunity_id = $1 AND seq = 2",
            f"o-{uid}-{n}",
        )
        assert tuple(entry) == (text, text)
        stored = await pool.fetchrow(
            "SELECT first_name, city FROM contacts WHERE contact_id = $1", f"c-{uid}-{n}"
        )
        assert tuple(stored) == (text, text)
        activity = await pool.fetchrow(
            "SELECT outcome, notes FROM calendar_activities WHERE opportunity_id = $1",
            f"o-{uid}-{n}",
        )
        assert tuple(activity) == (text, text)

        # Every filter takes it literally: exactly this opportunity, or nothing.
        found = (await cli("search", "--process", f"p-{uid}", "--name", text, "--json")).json()
        assert [o["opportunity_id"] for o in found["items"]] == [f"o-{uid}-{n}"], text
        for flag in ("--stage", "--contact", "--process", "--owner"):
            found = await cli("search", flag, text, "--json")
            assert found.code in (0, 1), found.stderr
            if found.code == 0:
                assert found.json()["total"] == 0
        shown = await cli("show", f"o-{uid}-{n}", "--json")
        assert shown.json()["name"] == text

    after = await counts(pool)
    assert after["contacts"] - before["contacts"] == len(HOSTILE)
    assert after["opportunities"] - before["opportunities"] == len(HOSTILE)
    # Each: its start, its stage change, and the outcome noted beside the stages.
    assert after["opportunity_history"] - before["opportunity_history"] == 3 * len(HOSTILE)

    # Not an identifier: refused, naming the field, and nothing is created.
    refused = await cli("create", "--contact", f"c-{uid}-0", "--id", HOSTILE[0],
                        "--process", f"p-{uid}")  # fmt: skip
    assert refused.code != 0 and "opportunity_id" in refused.stderr
    assert await counts(pool) == after
