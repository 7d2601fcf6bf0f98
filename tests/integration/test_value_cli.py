"""The value of an opportunity on the command line: `create` with it, `details` to show, set,
clear and list its changes, `show` and `history` with the time in each stage, the searches by
value, close date, forecast category and overdue work, and a batch's lost reason."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
from temporalio.worker import Worker

from starter.client import OpportunitiesClient
from tests.support.helpers import (
    add_users,
    example_definition,
    own_definition,
    setup_contact,
    setup_references,
)
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")


async def _setup(cli: Cli, pool: asyncpg.Pool, tmp_path: Path, uid: str, **changes: object) -> str:
    path = tmp_path / "process.json"
    path.write_text(json.dumps(own_definition(uid, **changes)))
    assert (await cli("process", "apply", str(path), "--allow-missing")).code == 0
    await setup_contact(pool, uid)
    await setup_references(pool, uid)
    await add_users(pool, "ann", "bob")
    return f"life-{uid}"


async def test_create_details_show_and_history(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str,
    opportunities: OpportunitiesClient,
) -> None:  # fmt: skip
    process = await _setup(cli, pool, tmp_path, uid)
    opp = f"o-{uid}"
    value = ["--amount", "250000", "--currency", "USD", "--close-date", "2027-03-31"]
    created = await cli("create", "--contact", f"c-{uid}", "--id", opp, "--process", process,
                        *value)  # fmt: skip
    assert created.code == 0, created.stderr
    shown = await cli("details", opp)
    assert shown.code == 0, shown.stderr
    for text in ("250,000 USD", "2027-03-31", "Probability", "10%", "pipeline", "In this stage"):
        assert text in shown.stdout, shown.stdout

    for args, said in [
        (["--amount", "12.5", "--currency", "JPY"], "JPY has 0"),
        (["--amount", "-5"], "non-negative decimal"),
        (["--amount", "1e5"], "non-negative decimal"),
        (["--currency", "usd"], "ISO 4217"),
        (["--close-date", "2027-13-01"], "is not a date"),
        (["--forecast-category", "maybe"], "is not one of pipeline, best_case"),
        (["--clear", "owner"], "clear one of amount"),
        (["--probability", "80", "--clear", "probability"], "both given and cleared"),
    ]:
        refused = await cli("details", opp, *args)
        assert refused.code == 1 and said in refused.stderr, (args, refused.stderr)
        assert "\n" not in refused.stderr.strip(), "one line"
    usage = await cli("details", opp, "--probability", "101")
    assert usage.code == 2

    changed = await cli("details", opp, "--probability", "80", "--amount", "300000.50",
                        "--by", "bob")  # fmt: skip
    assert changed.code == 0, changed.stderr
    cleared = await cli("details", opp, "--clear", "probability", "--forecast-category", "commit")
    assert cleared.code == 0, cleared.stderr
    history = await cli("details", opp, "--history", "--json")
    assert [(c["what"], c["from_value"], c["to_value"]) for c in history.json()] == [
        ("amount", "250000", "300000.50"),
        ("probability", "10", "80"),
        ("probability", "80", "10"),
        ("forecast_category", "pipeline", "commit"),
    ]
    moved = await cli("stage", opp, "Proposal", "--keep-open-activities")
    assert moved.code == 0, moved.stderr
    state = await opportunities.state(opp)
    assert (state.probability, state.forecast_category) == (60, "commit")
    listed = await cli("history", opp)
    assert "stayed" in listed.stdout, listed.stdout
    show = await cli("show", opp)
    assert "300,000.50 USD" in show.stdout and "Time per stage" in show.stdout, show.stdout


async def test_searches_by_value_and_overdue_work(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    process = await _setup(cli, pool, tmp_path, uid)
    await add_users(pool, f"owner-{uid}")
    for n, amount, close in [(1, "100", "2027-01-15"), (2, "5000", "2027-06-30"), (3, None, None)]:
        value = ["--amount", amount, "--close-date", close] if amount and close else []
        value += ["--owner", f"owner-{uid}"] if n == 1 else []
        done = await cli("create", "--contact", f"c-{uid}", "--id", f"o{n}-{uid}",
                         "--process", process, *value)  # fmt: skip
        assert done.code == 0, done.stderr

    async def found(*filters: str) -> list[str]:
        result = await cli("search", "--process", process, *filters, "--json")
        assert result.code == 0, result.stderr
        return [o["opportunity_id"] for o in result.json()["items"]]

    assert await found("--amount-min", "1000") == [f"o2-{uid}"]
    assert await found("--amount-max", "1000") == [f"o1-{uid}"]
    assert await found("--closing-before", "2027-02-01") == [f"o1-{uid}"]
    assert await found("--closing-after", "2027-02-01") == [f"o2-{uid}"]
    assert len(await found("--forecast-category", "pipeline")) == 3
    assert await found("--overdue") == []
    late = await cli("activity", "modify", f"o3-{uid}/intro-call/1", "--due", "2026-01-05T10:00")
    assert late.code == 0, late.stderr
    assert await found("--overdue") == [f"o3-{uid}"]
    shown = await cli("show", f"o3-{uid}")
    assert "Overdue activities" in shown.stdout
    listed = await cli("activity", "list", "--overdue", "--json")
    assert f"o3-{uid}/intro-call/1" in [a["activity_id"] for a in listed.json()]
    assert f"o1-{uid}/intro-call/1" not in [a["activity_id"] for a in listed.json()]
    soon = await cli("activity", "list", "--due-within", "7d", "--owner", f"owner-{uid}", "--json")
    assert [a["opportunity_id"] for a in soon.json()] == [f"o1-{uid}"], soon.stdout
    for bad in (
        ["--due-within", "7x"],
        ["--due-within", "99999999d"],
        ["--overdue", "--due-within", "1d"],
    ):
        refused = await cli("activity", "list", *bad)
        assert refused.code == 1, (bad, refused.stderr)
    bad = await cli("search", "--amount-min", "12.5.5")
    assert bad.code == 1 and "amount_min" in bad.stderr


async def test_a_batch_loses_with_a_listed_reason(
    cli: Cli, worker: Worker, pool: asyncpg.Pool, tmp_path: Path, uid: str,
    opportunities: OpportunitiesClient,
) -> None:  # fmt: skip
    stages = example_definition("x")["stages"]
    process = await _setup(cli, pool, tmp_path, uid, stages=stages, lost_reasons=["Price"],
                           default_lost_reason="Price")  # fmt: skip
    for n in range(2):
        await opportunities.create(f"c-{uid}", opportunity_id=f"o{n}-{uid}", process_id=process)
    unreasoned = await cli("mass-modify", "--process", process, "--to-stage", "Closed lost",
                           "--yes", "--json")  # fmt: skip
    assert unreasoned.code == 1, unreasoned.stdout
    assert unreasoned.json()["rejected"] == 2
    assert {o["code"] for o in unreasoned.json()["outcomes"]} == {"unknown_reason"}
    lost = await cli("mass-modify", "--process", process, "--to-stage", "Closed lost",
                     "--reason", "Price", "--yes", "--json")  # fmt: skip
    assert lost.code == 0 and lost.json()["changed"] == 2, lost.stdout
    state = await opportunities.state(f"o0-{uid}")
    assert (state.status, state.close_reason) == ("lost", "Price")
