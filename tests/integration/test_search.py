"""Finding opportunities: the read model's filters, sorting and paging, its indexes, and the
search attributes operators filter by in the Temporal UI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from sales.contact import Contact
from sales.opportunity import OpportunitySummary
from sales.process import ProcessDefinition
from starter.client import OpportunitiesClient
from starter.client.read_model import ReadModel
from store import contacts, processes, search
from store.search import SearchFilters
from tests.support.helpers import eventually, example_definition, open_one
from tests.support.servers import Cli

pytestmark = pytest.mark.usefixtures("verified")

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STAGES = ["Prospect", "Needs analysis", "Proposal", "Closed won", "Closed lost"]


async def seed(pool: asyncpg.Pool, uid: str, count: int) -> str:
    """`count` opportunities straight into the read model, spread over stages, owners, names
    and dates; returns their process id."""
    process = ProcessDefinition.model_validate(example_definition(f"seed-{uid}"))
    await processes.apply_process(pool, process)
    await contacts.add_contact(pool, Contact(contact_id=f"c-{uid}", first_name="A", last_name="B"))
    rows = []
    for index in range(count):
        stage = STAGES[index % len(STAGES)]
        status = {"Closed won": "won", "Closed lost": "lost"}.get(stage, "open")
        summary = OpportunitySummary(
            opportunity_id=f"s-{uid}-{index:06d}",
            contact_id=f"c-{uid}",
            process_id=process.process_id,
            process_version=1,
            name=f"{['Term life', 'Pension', 'Annuity'][index % 3]} #{index}",
            owner=f"owner-{index % 7}-{uid}",
            status=status,  # type: ignore[arg-type]
            current_stage=stage,
            stage_entered_at=T0 + timedelta(days=index % 30),
            closed_at=None,
            open_actions=index % 2,
            created_at=T0,
            revision=1,
        )
        rows.append(tuple(summary.model_dump().values()))
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "opportunities",
            records=[(*row, T0) for row in rows],
            columns=[*OpportunitySummary.model_fields, "updated_at"],
        )
        await conn.execute("ANALYZE opportunities")
    return process.process_id


async def test_filters_sorting_and_paging(pool: asyncpg.Pool, uid: str) -> None:
    process_id = await seed(pool, uid, 210)
    mine = SearchFilters(process_id=process_id)
    assert (await search.search(pool, mine)).total == 210
    proposal = await search.search(pool, mine.model_copy(update={"stage": "Proposal"}), limit=10)
    assert proposal.total == 42 and len(proposal.items) == 10
    assert all(o.current_stage == "Proposal" for o in proposal.items)
    won = await search.search(pool, mine.model_copy(update={"status": "won"}))
    assert won.total == 42 and {o.current_stage for o in won.items} == {"Closed won"}
    owner = await search.search(pool, SearchFilters(owner=f"owner-3-{uid}"))
    assert owner.total == 30
    named = await search.search(pool, mine.model_copy(update={"name": "PENSION #1"}))
    assert {o.name for o in named.items} >= {"Pension #1", "Pension #16", "Pension #166"}
    assert all("pension #1" in (o.name or "").lower() for o in named.items)
    before = await search.search(
        pool, mine.model_copy(update={"entered_before": T0 + timedelta(days=1)})
    )
    assert before.total == 7  # indexes 0, 30, 60, ... entered on day 0
    after = await search.search(
        pool, mine.model_copy(update={"entered_after": T0 + timedelta(days=29)})
    )
    assert after.total == 7
    with_open = await search.search(pool, mine.model_copy(update={"has_open_actions": True}))
    assert with_open.total == 105
    literal = await search.search(pool, mine.model_copy(update={"name": "100%"}))
    assert literal.total == 0, "% is matched literally, not as a wildcard"

    page1 = await search.search(pool, mine, sort="stage_entered_at", descending=True, limit=25)
    page2 = await search.search(
        pool, mine, sort="stage_entered_at", descending=True, limit=25, offset=25
    )
    dates = [o.stage_entered_at for o in page1.items + page2.items]
    assert dates == sorted(dates, reverse=True)
    assert not {o.opportunity_id for o in page1.items} & {o.opportunity_id for o in page2.items}
    with pytest.raises(ValueError, match="cannot sort by"):
        await search.search(pool, mine, sort="drop table")  # type: ignore[arg-type]


async def test_stage_and_owner_filters_never_scan_the_table(pool: asyncpg.Pool, uid: str) -> None:
    await seed(pool, uid, 20_000)
    for filters in (
        SearchFilters(stage="Needs analysis"),
        SearchFilters(owner=f"owner-2-{uid}"),
        SearchFilters(stage="Proposal", owner=f"owner-5-{uid}"),
    ):
        plan = await search.explain(pool, filters)
        assert "Seq Scan on opportunities" not in plan, plan
        assert "Index" in plan or "Bitmap" in plan, plan


async def test_search_attributes_agree_with_the_read_model(
    worker: Worker,
    pool: asyncpg.Pool,
    client: Client,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    process_id = await open_one(pool, opportunities, uid, owner="ann")
    for index, stage in enumerate(["Proposal", "Proposal", "Needs analysis"]):
        await opportunities.create(
            f"c-{uid}", opportunity_id=f"o{index}-{uid}", process_id=process_id, owner="bob"
        )
        await opportunities.change_stage(f"o{index}-{uid}", stage)

    async def agree(query: str, filters: SearchFilters, expected: int) -> None:
        async def counted() -> bool:
            return (await client.count_workflows(query)).count == expected

        await eventually(counted, seconds=15)
        assert (await search.search(pool, filters)).total == expected

    await agree(
        f"SalesProcess = '{process_id}' AND OpportunityStage = 'Proposal'",
        SearchFilters(process_id=process_id, stage="Proposal"),
        2,
    )
    await agree(
        f"SalesProcess = '{process_id}' AND OpportunityOwner = 'bob'",
        SearchFilters(process_id=process_id, owner="bob"),
        3,
    )
    await agree(
        f"ContactId = 'c-{uid}' AND OpportunityStatus = 'open' AND OpenActions > 0",
        SearchFilters(contact_id=f"c-{uid}", status="open", has_open_actions=True),
        4,
    )
    page = await ReadModel(pool).search(SearchFilters(process_id=process_id), sort="owner")
    assert [o.owner for o in page.items] == ["ann", "bob", "bob", "bob"]


async def test_search_from_the_command_line(cli: Cli, pool: asyncpg.Pool, uid: str) -> None:
    process_id = await seed(pool, uid, 60)
    result = await cli("search", "--process", process_id, "--stage", "Proposal", "--json")
    assert result.code == 0, result.stderr
    page = result.json()
    assert page["total"] == 12 and {o["current_stage"] for o in page["items"]} == {"Proposal"}
    table = await cli("search", "--owner", f"owner-1-{uid}", "--limit", "3", "--sort", "name")
    assert table.code == 0 and "showing 1-3 of 9" in table.stdout
    named = await cli("search", "--process", process_id, "--name", "term LIFE", "--json")
    assert named.json()["total"] == 20
    bad = await cli("search", "--status", "pending")
    assert bad.code == 1 and "invalid search filters: status" in bad.stderr
    assert "'open', 'won', 'lost' or 'deleted'" in bad.stderr
    unsorted = await cli("search", "--sort", "colour")
    assert unsorted.code == 1 and "cannot sort by 'colour'" in unsorted.stderr
    dates = await cli("search", "--entered-before", "yesterday")
    assert dates.code == 1 and "entered_before" in dates.stderr
