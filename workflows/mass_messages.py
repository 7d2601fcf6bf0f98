"""Payloads of the `MassModify` workflow: the batch, its progress and its report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from activities.search import SearchFilters
from sales.process import Identifier

MAX_REPORTED = 1000
"""Rejections (and skips) listed in the report; the counts are always complete."""


class MassModifyInput(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    batch_id: Identifier
    filters: SearchFilters | None = None
    ids: list[str] | None = None
    to_stage: str | None = None
    cancel_open_activities: bool = False
    owner: str | None = None
    by: str | None = None
    concurrency: int = Field(default=200, ge=1, le=2000)
    """Changes sent and not yet answered. A waiting change costs the workers nothing; the
    bound keeps the opportunities' own work (projection, activities) in step with the
    workers and the database."""
    answer_timeout_seconds: float = Field(default=300, gt=0)
    """After this long without any answer, check whether the unanswered opportunities still
    run (a terminated one never answers)."""
    continue_as_new_after_events: int | None = Field(default=None, ge=100)
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
    result: Literal["changed", "skipped", "rejected"]
    reason: str = ""


class Selection(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    filters: SearchFilters | None = None
    ids: list[str] | None = None


class Progress(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    batch_id: str
    total: int = 0
    done: int = 0
    changed: int = 0
    skipped: int = 0
    rejected: int = 0
    outcomes: list[ItemOutcome] = Field(default_factory=list)
    """Skipped and rejected opportunities with the reason (the first `MAX_REPORTED`)."""
    canceled: bool = False
    finished: bool = False

    def record(self, outcome: ItemOutcome) -> None:
        self.done += 1
        if outcome.result == "changed":
            self.changed += 1
            return
        if outcome.result == "skipped":
            self.skipped += 1
        else:
            self.rejected += 1
        if len(self.outcomes) < MAX_REPORTED:
            self.outcomes.append(outcome)


MassModifyInput.model_rebuild()
