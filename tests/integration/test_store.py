"""The SQL store against a real PostgreSQL: migrations, versioned processes, contacts, and the
idempotent opportunity projection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import store
import store.opportunities
from sales import core
from sales.commands import ChangeStage
from sales.contact import Contact
from sales.effects import RecordHistory
from sales.opportunity import StartOpportunity
from sales.process import ProcessDefinition
from store import contacts, processes
from store.schema import migrate, migration_files
from tests.support.helpers import example_definition

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


async def test_migrations_are_idempotent_and_safe_to_run_concurrently(
    pool: asyncpg.Pool, postgres_url: str, uid: str
) -> None:
    name = f"migrate_{uid}"
    await pool.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url.replace("/opportunities?", f"/{name}?")
    pools = [await store.create_pool(url, max_size=1) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(p) for p in pools))
        versions = [version for version, _, _ in migration_files()]
        assert sorted(v for applied in results for v in applied) == versions, "each once"
        assert await migrate(pools[0]) == []
        tables = {
            row["tablename"]
            for row in await pools[0].fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        assert {
            "schema_migrations",
            "contacts",
            "sales_processes",
            "opportunities",
            "opportunity_history",
            "calendar_activities",
            "letters",
            "events",
            "event_invitees",
        } <= tables
    finally:
        for p in pools:
            await p.close()


async def test_applying_a_process_versions_it(pool: asyncpg.Pool, uid: str) -> None:
    definition = ProcessDefinition.model_validate(example_definition(f"p-{uid}"))
    first, created = await processes.apply_process(pool, definition)
    assert (first.version, created) == (1, True)
    same, created = await processes.apply_process(pool, definition)
    assert (same.version, created) == (1, False), "an unchanged definition is a no-op"
    changed = ProcessDefinition.model_validate(
        example_definition(f"p-{uid}", name="Life insurance sale (2027)")
    )
    second, created = await processes.apply_process(pool, changed)
    assert (second.version, created) == (2, True)
    assert (await processes.get_process(pool, f"p-{uid}")) == second
    assert (await processes.get_process(pool, f"p-{uid}", 1)) == first
    assert await processes.get_process(pool, f"p-{uid}", 3) is None
    listed = {p.process_id: p for p in await processes.list_processes(pool)}
    assert listed[f"p-{uid}"].version == 2
    assert listed[f"p-{uid}"].stages[0] == "Prospect"


async def test_concurrent_applies_of_one_change_make_one_version(
    pool: asyncpg.Pool, uid: str
) -> None:
    definition = ProcessDefinition.model_validate(example_definition(f"p-{uid}"))
    results = await asyncio.gather(*(processes.apply_process(pool, definition) for _ in range(5)))
    assert sorted(created for _, created in results) == [False] * 4 + [True]
    assert {process.version for process, _ in results} == {1}


async def test_the_latest_default_process_is_the_default(pool: asyncpg.Pool, uid: str) -> None:
    for name in ("a", "b"):
        definition = ProcessDefinition.model_validate(
            example_definition(f"{name}-{uid}", default=True)
        )
        await processes.apply_process(pool, definition)
    default = await processes.default_process(pool)
    assert default is not None and default.definition.process_id == f"b-{uid}"
    demoted = ProcessDefinition.model_validate(example_definition(f"b-{uid}", default=False))
    await processes.apply_process(pool, demoted)
    default = await processes.default_process(pool)
    assert default is not None and default.definition.process_id == f"a-{uid}"


async def test_contacts_are_added_once_and_never_overwritten(pool: asyncpg.Pool, uid: str) -> None:
    contact = Contact(
        contact_id=f"c-{uid}",
        first_name="Grace",
        last_name="Hopper",
        email="grace@example.com",
        street="1 Navy Way",
        city="Arlington",
        postal_code="22202",
        country="US",
    )
    assert await contacts.add_contact(pool, contact) is True
    assert await contacts.add_contact(pool, contact) is False
    with pytest.raises(store.StoreError, match="already exists with other details"):
        await contacts.add_contact(pool, contact.model_copy(update={"city": "Elsewhere"}))
    assert await contacts.get_contact(pool, f"c-{uid}") == contact


async def test_projection_writes_are_idempotent_and_never_go_back(
    pool: asyncpg.Pool, uid: str
) -> None:
    process = ProcessDefinition.model_validate(example_definition(f"p-{uid}"))
    stored, _ = await processes.apply_process(pool, process)
    await contacts.add_contact(pool, Contact(contact_id=f"c-{uid}", first_name="A", last_name="B"))
    opened = core.open_opportunity(
        StartOpportunity(opportunity_id=f"o-{uid}", contact_id=f"c-{uid}"), stored, T0
    )
    moved = core.apply(opened.state, ChangeStage(stage="Proposal"), T0)
    opened_history = [e.entry for e in opened.effects if isinstance(e, RecordHistory)]
    moved_history = [e.entry for e in moved.effects if isinstance(e, RecordHistory)]

    assert await store.opportunities.project_opportunity(
        pool, opened.state.summary(), opened_history
    )
    assert await store.opportunities.project_opportunity(pool, moved.state.summary(), moved_history)
    # Retries of both writes, in any order: the older one changes nothing, the same
    # revision writes the same again.
    assert not await store.opportunities.project_opportunity(
        pool, opened.state.summary(), opened_history
    )
    assert await store.opportunities.project_opportunity(pool, moved.state.summary(), moved_history)

    row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
    assert row is not None and row.current_stage == "Proposal" and row.revision == 1
    history = await store.opportunities.get_history(pool, f"o-{uid}")
    assert [(h.seq, h.to_stage) for h in history] == [(1, "Prospect"), (2, "Proposal")]

    # The same revision from a workflow task run again later (its clock later): it replaces
    # the row and its history entry, as the workflow keeps the second run's state.
    later = core.apply(opened.state, ChangeStage(stage="Proposal"), T0 + timedelta(seconds=1))
    later_history = [e.entry for e in later.effects if isinstance(e, RecordHistory)]
    assert await store.opportunities.project_opportunity(pool, later.state.summary(), later_history)
    row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
    assert row is not None and row.stage_entered_at == T0 + timedelta(seconds=1)
    history = await store.opportunities.get_history(pool, f"o-{uid}")
    assert history[-1].at == T0 + timedelta(seconds=1)


async def test_hostile_strings_are_stored_verbatim(pool: asyncpg.Pool, uid: str) -> None:
    hostile = "Robert'); DROP TABLE contacts;--"
    contact = Contact(contact_id=f"c-{uid}", first_name=hostile, last_name="$1 %s {0}")
    await contacts.add_contact(pool, contact)
    assert await contacts.get_contact(pool, f"c-{uid}") == contact
    assert await pool.fetchval("SELECT count(*) FROM contacts") >= 1
