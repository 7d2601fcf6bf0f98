"""Payloads of the `MassModify` workflow: the batch, its progress and its report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from activities.mass import MAX_SELECTION
from sales.validation import Identifier, Line, ShortLine
from store.search import SearchFilters

MAX_REPORTED = 1000
"""Rejections (and skips) listed in the report; the counts are always complete."""


class MassModifyInput(BaseModel):
    """Input of `MassModify`; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    batch_id: Identifier
    filters: SearchFilters | None = None
    ids: list[Identifier] | None = Field(default=None, max_length=MAX_SELECTION)
    to_stage: Line | None = None
    cancel_open_activities: bool = False
    owner: Line | None = None
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
    remaining: list[str] | None = None
    """Carried across continue-as-new: the frozen selection not yet done."""
    progress: Progress | None = None

    @model_validator(mode="after")
    def _one_change(self) -> MassModifyInput:
        if (self.to_stage is None) == (self.owner is None):
            raise ValueError("give exactly one of to_stage and owner")
        if self.filters is None and self.ids is None:
            raise ValueError("give filters or ids to select the opportunities")
        return self


class ItemOutcome(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    opportunity_id: str
    result: Literal["changed", "skipped", "rejected", "stuck"]
    reason: str = ""
    code: str | None = None
    """The rejection code, for `skipped` and `rejected` answers."""


class Progress(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    batch_id: str
    total: int = 0
    done: int = 0
    changed: int = 0
    skipped: int = 0
    rejected: int = 0
    stuck: int = 0
    """Running opportunities that never answered (see `MassModifyInput.resends`)."""
    outcomes: list[ItemOutcome] = Field(default_factory=list)
    """Skipped, rejected and stuck opportunities with the reason (the first `MAX_REPORTED`)."""
    canceled: bool = False
    finished: bool = False

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
        if len(self.outcomes) < MAX_REPORTED:
            self.outcomes.append(outcome)


MassModifyInput.model_rebuild()
