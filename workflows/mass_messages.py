"""Payloads of the `MassModify` workflow: the batch, its progress and its report.

A batch carries its input and its progress across continue-as-new as one payload, which must
stay under Temporal's 2 MB limit with room to spare. Every collection and text is bounded
(as compact JSON, non-ASCII counted escaped, so the real payload is smaller):

- the selection as given, `ids` and `filters` together: `MAX_SELECTION_BYTES` (384 KiB);
- `remaining` and `selected_stages` together, part of the frozen selection (its ids, and for
  a batch moving each to its next stage the stage each was selected in), which the freezing
  activity refuses beyond `MAX_SELECTION` ids or `MAX_SELECTION_BYTES` with the stages
  (`limit_reached`): 384 KiB;
- `progress.outcomes`: at most `MAX_REPORTED` outcomes and `MAX_REPORTED_BYTES` (256 KiB);
  past either, outcomes are counted but not listed; each reason is cut to `MAX_ITEM_REASON`
  characters;
- the other texts: a few KiB.

So the payload is at most about 1 MiB (10,000 members at most).
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from activities.mass import (
    MAX_SELECTION,
    MAX_SELECTION_BYTES,
    SelectionIds,
    SelectionStages,
    selection_size,
)
from sales.results import cut_to
from sales.validation import Identifier, Line, Notes, ShortLine, json_size
from store.search import SearchFilters, json_bytes_at_most

MAX_REPORTED = 1000
"""Rejections (and skips) listed in the report; the counts are always complete."""
MAX_REPORTED_BYTES = 256 * 1024
"""The most the listed outcomes take as JSON; past it, outcomes are counted, not listed."""
MAX_ITEM_REASON = 300
"""Characters of an outcome's reason; a longer one is cut."""


class MassModifyInput(BaseModel):
    """Input of `MassModify`; unknown fields are refused. Its bounds are the module's."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    batch_id: Identifier
    """Names one request for good: a batch id used before runs again only for the same
    input (`request_hash`); otherwise the batch is refused (`batch_exists`)."""
    filters: SearchFilters | None = None
    ids: SelectionIds | None = None
    """At most `MAX_SELECTION` ids, and with `filters` at most `MAX_SELECTION_BYTES` as
    JSON."""
    to_stage: Line | None = None
    """Move each to this stage."""
    to_next_stage: bool = False
    """Move each to the stage after the one it was selected in, and only from that stage: one
    that has moved meanwhile is rejected (`stage_changed`), one without a next open stage
    (the last stage, or one followed by a closing stage) or closed is skipped."""
    cancel_open_activities: bool = False
    reason: Notes | None = None
    """The reason of each stage change (kept in history); entering a won or lost stage of a
    process that lists reasons needs one of them (else that opportunity is rejected
    `unknown_reason`)."""
    owner: Line | None = None
    """The owner to give: a user (`opportunities user add`), else the batch is refused
    (`unknown_user`)."""
    by: ShortLine | None = None
    concurrency: int = Field(default=200, ge=1, le=2000)
    """Changes sent and not yet answered. A waiting change costs the workers nothing; the
    bound keeps the opportunities' own work (projection, activities) in step with the
    workers and the database."""
    answer_timeout_seconds: float = Field(default=300, gt=0, le=86400)
    """An opportunity that has not answered this long after its change was sent is checked:
    not running (closed, terminated, unknown) is reported `rejected`; still running, the
    change is sent again (the same request id: applied at most once)."""
    resends: int = Field(default=2, ge=0, le=10)
    """How often a change is sent again to a running opportunity that does not answer; after
    that it is reported `stuck` and the batch goes on. An opportunity is done with in at most
    (resends + 1) x answer_timeout_seconds."""
    continue_as_new_after_events: int | None = Field(default=None, ge=100, le=1_000_000)
    """Continue-as-new earlier than the server's suggestion (tests)."""
    remaining: SelectionIds | None = None
    """Carried across continue-as-new (accepted only by a continued run): the frozen
    selection not yet done."""
    progress: Progress | None = None
    """Carried across continue-as-new (accepted only by a continued run)."""
    selected_stages: SelectionStages | None = None
    """Carried across continue-as-new by a batch moving each to its next stage (accepted only
    by a continued run): the stage each member of `remaining` was selected in. With
    `remaining` at most `MAX_SELECTION_BYTES` as JSON."""

    @model_validator(mode="after")
    def _one_change(self) -> MassModifyInput:
        changes = (self.to_stage is not None, self.to_next_stage, self.owner is not None)
        if sum(changes) != 1:
            raise ValueError("give exactly one of to_stage, to_next_stage: true and owner")
        if self.filters is None and self.ids is None:
            raise ValueError("give filters or ids to select the opportunities")
        given = json_size(self.model_dump(mode="json", include={"ids", "filters"}))
        if given > MAX_SELECTION_BYTES:
            raise ValueError(
                f"ids and filters take {given:,} bytes as JSON; at most "
                f"{MAX_SELECTION_BYTES:,} (at most {MAX_SELECTION:,} ids)"
            )
        self._check_carried_stages()
        return self

    def _check_carried_stages(self) -> None:
        """`selected_stages` belongs to a batch moving each to its next stage, and fits the
        frozen selection's budget together with `remaining`."""
        if self.selected_stages is None:
            return
        if not self.to_next_stage:
            raise ValueError("selected_stages is carried only by a batch with to_next_stage")
        carried = selection_size(self.remaining or [], self.selected_stages)
        if carried > MAX_SELECTION_BYTES:
            raise ValueError(
                f"remaining and selected_stages take {carried:,} bytes as JSON; at most "
                f"{MAX_SELECTION_BYTES:,}"
            )

    def request_hash(self) -> str:
        """SHA-256 of the request: the input as canonical JSON (sorted keys, no whitespace,
        UTF-8, fields at their default left out), without what a continued run carries
        (`remaining`, `progress`, `selected_stages`)."""
        request = self.model_dump(
            mode="json",
            exclude={"remaining", "progress", "selected_stages"},
            exclude_defaults=True,
        )
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


ItemReason = Annotated[
    str, BeforeValidator(cut_to(MAX_ITEM_REASON)), Field(max_length=MAX_ITEM_REASON)
]
ItemCode = Annotated[str, BeforeValidator(cut_to(100)), Field(max_length=100)]


class ItemOutcome(BaseModel):
    """One opportunity's outcome; at most about 1.9 KB as JSON."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    opportunity_id: Identifier
    result: Literal["changed", "skipped", "rejected", "stuck"]
    reason: ItemReason = ""
    """Cut to `MAX_ITEM_REASON` characters."""
    code: ItemCode | None = None
    """The rejection code, for `skipped` and `rejected` answers."""


Outcomes = Annotated[
    list[ItemOutcome],
    Field(max_length=MAX_REPORTED),
    AfterValidator(json_bytes_at_most(MAX_REPORTED_BYTES)),
]


class Progress(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    batch_id: Identifier
    total: int = 0
    done: int = 0
    changed: int = 0
    skipped: int = 0
    rejected: int = 0
    stuck: int = 0
    """Running opportunities that never answered (see `MassModifyInput.resends`)."""
    outcomes: Outcomes = Field(default_factory=list)
    """Skipped, rejected and stuck opportunities with the reason: the first `MAX_REPORTED`,
    within `MAX_REPORTED_BYTES` as JSON."""
    canceled: bool = False
    finished: bool = False

    _listed_bytes: int | None = PrivateAttr(default=None)
    """What `outcomes` take as JSON (computed once per run, then kept up to date)."""

    def record(self, outcome: ItemOutcome) -> None:
        self.done += 1
        if outcome.result == "changed":
            self.changed += 1
            return
        if outcome.result == "skipped":
            self.skipped += 1
        elif outcome.result == "stuck":
            self.stuck += 1
        else:
            self.rejected += 1
        if self._listed_bytes is None:
            self._listed_bytes = json_size([o.model_dump(mode="json") for o in self.outcomes])
        size = json_size(outcome.model_dump(mode="json")) + 1  # and a comma
        if len(self.outcomes) < MAX_REPORTED and self._listed_bytes + size <= MAX_REPORTED_BYTES:
            self.outcomes.append(outcome)
            self._listed_bytes += size


MassModifyInput.model_rebuild()
