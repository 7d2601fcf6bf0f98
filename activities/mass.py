"""Activities of the `MassModify` workflow: freezing the selection (after checking that the
batch may run at all), and finding out why an opportunity cannot take its change (the changes
themselves travel as signals)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import asyncpg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter
from temporalio import activity
from temporalio.client import Client

from activities.failures import BadData, classified
from runtime.opportunity_runs import unreachable_reason
from sales.validation import Identifier, Line, json_size
from store import batches, search, users
from store.search import MAX_IDS, MAX_IDS_BYTES, SearchFilters, json_bytes_at_most

MAX_SELECTION = MAX_IDS
"""Opportunities one batch may change: its frozen selection travels in its history."""
MAX_SELECTION_BYTES = MAX_IDS_BYTES
"""The most a batch's selection may take as JSON: the ids it is given (with its filters), and
the ids it freezes. Beyond it the batch is refused (`limit_reached`)."""

SelectionIds = Annotated[
    list[Identifier],
    Field(max_length=MAX_SELECTION),
    AfterValidator(json_bytes_at_most(MAX_SELECTION_BYTES)),
]
"""Opportunity ids of a batch: at most `MAX_SELECTION`, `MAX_SELECTION_BYTES` as JSON."""
_selection_ids: TypeAdapter[list[str]] = TypeAdapter(SelectionIds)

RequestHash = Annotated[str, Field(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")]
"""A SHA-256 in hex."""


class Selection(BaseModel):
    """What a batch changes (the opportunities matching `filters`, or those of `ids`), and
    what decides whether it may run: its id, the hash of its request and the owner it
    gives."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    filters: SearchFilters | None = None
    ids: SelectionIds | None = None
    batch_id: Identifier
    request_hash: RequestHash
    """Of the batch's input: a batch id used before runs again only for the same request."""
    owner: Line | None = None
    """The owner the batch gives, which must be a user."""


class MassActivities:
    def __init__(self, pool: asyncpg.Pool, client: Client) -> None:
        self.pool = pool
        self.client = client

    @activity.defn(name="resolve_batch")
    @classified("resolve_batch")
    async def resolve_batch(self, selection: Selection) -> list[str]:
        """The matching opportunity ids now: the batch works on this frozen list. Refused
        (non-retryable, before anything is sent) when the batch id was used for another
        request (`batch_exists`), the owner is no user (`unknown_user`), or the selection
        holds more than `MAX_SELECTION` ids or `MAX_SELECTION_BYTES` (`limit_reached`). The
        batch id is recorded as used only when the batch may run."""
        batch_id = selection.batch_id
        if await batches.request_of(self.pool, batch_id) not in (None, selection.request_hash):
            raise _used(batch_id)
        owner = selection.owner
        if owner is not None and not await users.existing(self.pool, [owner]):
            raise BadData(
                f"unknown_user: no user {owner!r}; `opportunities user add` adds one",
                "unknown_user",
            )
        if selection.ids is not None:
            ids = sorted(dict.fromkeys(selection.ids))
        else:
            ids = await search.matching_ids(self.pool, selection.filters or SearchFilters())
        if len(ids) > MAX_SELECTION or json_size(ids) > MAX_SELECTION_BYTES:
            raise BadData(
                f"limit_reached: the selection holds {len(ids):,} opportunities "
                f"({json_size(ids):,} bytes of ids); one batch changes at most "
                f"{MAX_SELECTION:,} ({MAX_SELECTION_BYTES:,} bytes): narrow the filters",
                "limit_reached",
            )
        ids = _selection_ids.validate_python(ids)  # each one an id the batch can carry
        if await batches.claim(self.pool, batch_id, selection.request_hash) != (
            selection.request_hash
        ):
            raise _used(batch_id)
        return ids

    @activity.defn(name="unreachable")
    @classified("unreachable")
    async def unreachable(self, opportunity_ids: list[str]) -> dict[str, str]:
        """Why each of these opportunities cannot take a command (closed, unknown,
        terminated); the running ones are left out."""
        reasons = await asyncio.gather(
            *(unreachable_reason(self.client, i) for i in opportunity_ids)
        )
        answers = zip(opportunity_ids, reasons, strict=True)
        return {i: reason for i, reason in answers if reason is not None}

    def all(self) -> list:
        return [self.resolve_batch, self.unreachable]


def _used(batch_id: str) -> BadData:
    return BadData(
        f"batch_exists: batch {batch_id!r} was used for another change; give another batch id",
        "batch_exists",
    )
