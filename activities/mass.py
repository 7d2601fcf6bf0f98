"""Activities of the `MassModify` workflow: freezing the selection (after checking that the
batch may run at all), with each member's stage for a batch moving each to its next stage, and
finding out why an opportunity cannot take its change (the changes themselves travel as
signals)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from temporalio import activity
from temporalio.client import Client

from activities.failures import BadData, classified
from runtime.opportunity_runs import Unreachable, unreachable
from runtime.signer import Signer
from sales.tokens import audience, sign
from sales.validation import Identifier, Line, json_size
from store import batches, search, users
from store.search import MAX_IDS, MAX_IDS_BYTES, SearchFilters, json_bytes_at_most

MAX_SELECTION = MAX_IDS
"""Opportunities one batch may change: its frozen selection travels in its history."""
MAX_SELECTION_BYTES = MAX_IDS_BYTES
"""The most a batch's selection may take as JSON: the ids it is given (with its filters), and
the ids it freezes together with their stages. Beyond it the batch is refused
(`limit_reached`)."""

SelectionIds = Annotated[
    list[Identifier],
    Field(max_length=MAX_SELECTION),
    AfterValidator(json_bytes_at_most(MAX_SELECTION_BYTES)),
]
"""Opportunity ids of a batch: at most `MAX_SELECTION`, `MAX_SELECTION_BYTES` as JSON."""

SelectionStages = Annotated[
    dict[Identifier, Line],
    Field(max_length=MAX_SELECTION),
    AfterValidator(json_bytes_at_most(MAX_SELECTION_BYTES)),
]
"""The stage each member of a batch was selected in: at most `MAX_SELECTION` members,
`MAX_SELECTION_BYTES` as JSON."""


def selection_size(ids: list[str], stages: dict[str, str] | None) -> int:
    """What a frozen selection takes as JSON: its ids, and their stages if it has them (the
    measure `MAX_SELECTION_BYTES` bounds)."""
    return json_size(ids) + (0 if stages is None else json_size(stages))


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
    stages: bool = False
    """Freeze each member's current stage too: the batch moves each to its next stage, and
    only from the stage it was selected in."""


class Frozen(BaseModel):
    """A batch's frozen selection: the ids in id order, and for a batch moving each to its
    next stage, the stage each was in (an id the read model has no row for has none). At
    most `MAX_SELECTION` ids, and `MAX_SELECTION_BYTES` as JSON with the stages."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    ids: SelectionIds
    stages: SelectionStages | None = None

    @model_validator(mode="after")
    def _within_budget(self) -> Frozen:
        size = selection_size(self.ids, self.stages)
        if size > MAX_SELECTION_BYTES:
            raise ValueError(
                f"the ids and their stages take {size:,} bytes as JSON; at most "
                f"{MAX_SELECTION_BYTES:,}"
            )
        return self


class MemberCommand(BaseModel):
    """A batch member's command to sign for the batch's starter."""

    sub: str
    wid: str
    cmd: str
    payload: Any


class MassActivities:
    def __init__(self, pool: asyncpg.Pool, client: Client, signer: Signer | None = None) -> None:
        """`signer`: the worker's service key (`OPPORTUNITIES_SERVICE_KEY_FILE`), which signs
        each member's command for the batch's starter while authorization is on."""
        self.pool = pool
        self.client = client
        self.signer = signer

    @activity.defn(name="sign_member_command")
    @classified("sign_member_command")
    async def sign_member_command(self, member: MemberCommand) -> str:
        """A token for one member's command, signed by the service key for the batch's
        starter (`act`: the service). A batch cannot sign in workflow code: a signature is
        random, and the key must not be in the workflow."""
        if self.signer is None:
            raise BadData(
                "no service key: set OPPORTUNITIES_SERVICE_KEY_FILE for batches while "
                "authorization is on",
                "unauthenticated",
            )
        signer = self.signer.acting_for(member.sub)
        return sign(signer.private_key, signer.kid, sub=signer.sub, act=signer.act,
                    aud=audience(self.client.namespace), wid=member.wid,
                    cmd=member.cmd, payload=member.payload,
                    jti=member.payload.get("request_id") if isinstance(member.payload, dict)
                    else None, now=datetime.now(UTC))  # fmt: skip

    @activity.defn(name="resolve_batch")
    @classified("resolve_batch")
    async def resolve_batch(self, selection: Selection) -> Frozen:
        """The matching opportunity ids now, with their stages if asked: the batch works on
        this frozen selection. Refused (non-retryable, before anything is sent) when the batch
        id was used for another request (`batch_exists`), the owner is no user
        (`unknown_user`), or the selection holds more than `MAX_SELECTION` ids or takes more
        than `MAX_SELECTION_BYTES` with its stages (`limit_reached`). The batch id is recorded
        as used only when the batch may run."""
        batch_id = selection.batch_id
        if await batches.request_of(self.pool, batch_id) not in (None, selection.request_hash):
            raise _used(batch_id)
        owner = selection.owner
        if owner is not None and not await users.existing(self.pool, [owner]):
            raise BadData(
                f"unknown_user: no user {owner!r}; `opportunities user add` adds one",
                "unknown_user",
            )
        ids, stages = await self._selected(selection)
        size = selection_size(ids, stages)
        if len(ids) > MAX_SELECTION or size > MAX_SELECTION_BYTES:
            raise _too_large(len(ids), size, stages is not None)
        frozen = Frozen(ids=ids, stages=stages)  # each one an id the batch can carry
        if await batches.claim(self.pool, batch_id, selection.request_hash) != (
            selection.request_hash
        ):
            raise _used(batch_id)
        return frozen

    async def _selected(self, selection: Selection) -> tuple[list[str], dict[str, str] | None]:
        """The selected ids in id order, and with `selection.stages` the current stage of
        each one the read model has."""
        if selection.ids is not None:
            ids = sorted(dict.fromkeys(selection.ids))
            if not selection.stages:
                return ids, None
            return ids, await search.matching_stages(self.pool, SearchFilters(ids=ids))
        filters = selection.filters or SearchFilters()
        if not selection.stages:
            return await search.matching_ids(self.pool, filters), None
        stages = await search.matching_stages(self.pool, filters)
        return list(stages), stages

    @activity.defn(name="unreachable")
    @classified("unreachable")
    async def unreachable(self, opportunity_ids: list[str]) -> dict[str, Unreachable]:
        """Why each of these opportunities cannot take a command (closed, unknown,
        terminated); the running ones are left out."""
        reasons = await asyncio.gather(*(unreachable(self.client, i) for i in opportunity_ids))
        answers = zip(opportunity_ids, reasons, strict=True)
        return {i: reason for i, reason in answers if reason is not None}

    def all(self) -> list:
        return [self.resolve_batch, self.unreachable, self.sign_member_command]


def _too_large(count: int, size: int, with_stages: bool) -> BadData:
    what, bound = ("ids and their stages", " with their stages") if with_stages else ("ids", "")
    return BadData(
        f"limit_reached: the selection holds {count:,} opportunities ({size:,} bytes of "
        f"{what}); one batch changes at most {MAX_SELECTION:,} ({MAX_SELECTION_BYTES:,} "
        f"bytes{bound}): narrow the filters",
        "limit_reached",
    )


def _used(batch_id: str) -> BadData:
    return BadData(
        f"batch_exists: batch {batch_id!r} was used for another change; give another batch id",
        "batch_exists",
    )
