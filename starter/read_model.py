"""Reading the read model (PostgreSQL) from a backend service: searches and the names the
CLI shows. Commands and queries go through Temporal (`starter.client`)."""

from __future__ import annotations

import asyncpg

import store
from runtime import settings
from sales.opportunity import HistoryEntry
from store import contacts, opportunities, search
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
