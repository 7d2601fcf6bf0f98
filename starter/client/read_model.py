"""Reading the read model (PostgreSQL) from a backend service and the CLI: searches, calendar
activities, remarks, the run an opportunity's row names, the reports. Commands and queries go
through Temporal (`starter.client`)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

import store
from runtime import settings
from sales.opportunity import DetailChange, HistoryEntry, Remark
from store import calendar, contacts, opportunities, outbox, reports, search
from store.calendar import CalendarActivity
from store.reports import ConversionReport, ForecastRow, Period, PipelineRow
from store.search import SearchFilters, SearchPage, SortKey


class ReadModel:
    """The read model over a pool: the one given, or one on `DATABASE_URL` (`connect`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls) -> ReadModel:
        return cls(await store.create_pool(settings.database_url(), max_size=4))

    async def close(self) -> None:
        await self.pool.close()

    async def search(
        self,
        filters: SearchFilters | None = None,
        *,
        sort: SortKey = "opportunity_id",
        descending: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> SearchPage:
        """Opportunities matching `filters`, one page of them."""
        return await search.search(
            self.pool,
            filters or SearchFilters(),
            sort=sort,
            descending=descending,
            limit=limit,
            offset=offset,
        )

    async def contact_name(self, contact_id: str) -> str | None:
        """The contact's full name, for what the Temporal UI shows (None: unknown)."""
        contact = await contacts.get_contact(self.pool, contact_id)
        return contact.full_name if contact else None

    async def closed_run(self, opportunity_id: str) -> str | None:
        """The run a closed opportunity's state is read from: the one that wrote its row (a
        start refused over its id made a later run, which says nothing of it). None while it
        is open, or unknown to the read model: its latest run is the one."""
        found = await opportunities.find_run(self.pool, opportunity_id)
        return found[1] if found is not None and found[0] != "open" else None

    async def history_before(self, opportunity_id: str, seq: int) -> list[HistoryEntry]:
        """The history entries older than `seq` (the workflow keeps only the newest)."""
        entries = await opportunities.get_history(self.pool, opportunity_id)
        return [entry for entry in entries if entry.seq < seq]

    async def matching_ids(self, filters: SearchFilters | None = None) -> list[str]:
        """The ids of every opportunity matching `filters` (every one without)."""
        return await search.matching_ids(self.pool, filters or SearchFilters())

    async def process_versions(self, filters: SearchFilters) -> list[tuple[str, int]]:
        """The process versions the opportunities matching `filters` follow."""
        return await search.process_versions(self.pool, filters)

    async def run_of(self, opportunity_id: str) -> tuple[str, str | None] | None:
        """The opportunity's status and the run its row names (None: unknown)."""
        return await opportunities.find_run(self.pool, opportunity_id)

    async def remarks(self, opportunity_id: str, limit: int) -> list[Remark]:
        """The opportunity's remarks, newest first."""
        return await opportunities.list_remarks(self.pool, opportunity_id, limit=limit)

    async def calendar_activities(
        self,
        opportunity_id: str | None = None,
        *,
        assignee: str | None = None,
        due_from: datetime | None = None,
        due_before: datetime | None = None,
        active: bool = False,
        owner: str | None = None,
    ) -> list[CalendarActivity]:
        """Calendar activities by due date (see `store.calendar.list_for`)."""
        return await calendar.list_for(self.pool, opportunity_id, assignee=assignee,
                                       due_from=due_from, due_before=due_before, active=active,
                                       owner=owner)  # fmt: skip

    async def events(
        self,
        *,
        after: outbox.Cursor | None = None,
        opportunity_id: str | None = None,
        types: list[str] | None = None,
        since: datetime | None = None,
        limit: int = 500,
    ) -> outbox.ReadEvents:
        """The outbox's next events after a cursor, in the order they committed (see
        `store.outbox.read`)."""
        return await outbox.read(
            self.pool, after=after, opportunity_id=opportunity_id, types=types, since=since,
            limit=limit,
        )  # fmt: skip

    async def detail_changes(self, opportunity_id: str) -> list[DetailChange]:
        """Every change of the opportunity's details, oldest first."""
        return await opportunities.detail_changes(self.pool, opportunity_id)

    async def calendar_activity(self, activity_id: str) -> CalendarActivity | None:
        return await calendar.get(self.pool, activity_id)

    async def pipeline(
        self,
        process_id: str | None = None,
        owner: str | None = None,
        now: datetime | None = None,
    ) -> list[PipelineRow]:
        """The open opportunities by process, stage and currency (`store.reports.pipeline`)."""
        return await reports.pipeline(self.pool, process_id, owner, now)

    async def conversion(
        self,
        process_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> ConversionReport:
        """Stage entries in [since, until) and what became of them, with each process's win
        rate and cycle time (`store.reports.conversion`)."""
        return await reports.conversion(self.pool, process_id, since, until)

    async def forecast(
        self,
        period: Period = "month",
        process_id: str | None = None,
        owner: str | None = None,
    ) -> list[ForecastRow]:
        """The forecast by close period, forecast category and currency
        (`store.reports.forecast`)."""
        return await reports.forecast(self.pool, period, process_id, owner)
