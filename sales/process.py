"""Opportunity Setup: the definition of a sales process.

A process is an ordered list of stages, each with the actions a user performs and completes
there. Definitions are versioned by the store; an opportunity keeps a copy of the version it
started with, so editing the process never changes a running sale.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sales.validation import (
    MAX_ACTIONS,
    MAX_ACTIONS_PER_STAGE,
    MAX_OUTCOME_STAGES,
    MAX_STAGES,
    Identifier,
    Line,
    ShortLine,
)
from sales.value import ForecastCategory


class _Strict(BaseModel):
    """Unknown fields are errors: a typo in a setup file must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ActivitySpec(_Strict):
    """The calendar activity a calendar action creates."""

    kind: Line = "call"
    duration_minutes: int = Field(default=30, gt=0, le=7 * 24 * 60)
    due_in_days: int = Field(default=0, ge=0, le=3650)
    track_outcome: bool = False


class CalendarAction(_Strict):
    action_id: Identifier
    type: Literal["calendar"]
    title: Line
    role: Identifier | None = None
    """Who on the opportunity's team is responsible: a calendar activity the action creates is
    assigned to the team member of this role (default: the owner)."""
    activity: ActivitySpec
    create_activity_on_entry: bool = False


class LetterAction(_Strict):
    action_id: Identifier
    type: Literal["letter"]
    title: Line
    role: Identifier | None = None
    """Who on the opportunity's team is responsible: a calendar activity the action creates is
    assigned to the team member of this role (default: the owner)."""
    template: Identifier
    method: Literal["email", "document", "both"] | None = None
    """The correspondence option: e-mail, a document to print, or both (default: e-mail when
    SMTP is configured and the contact has an address, else a document)."""


class EventAction(_Strict):
    action_id: Identifier
    type: Literal["event"]
    title: Line
    role: Identifier | None = None
    """Who on the opportunity's team is responsible: a calendar activity the action creates is
    assigned to the team member of this role (default: the owner)."""
    event_id: Identifier


Action = Annotated[CalendarAction | LetterAction | EventAction, Field(discriminator="type")]


class StageDefinition(_Strict):
    name: Line
    probability: int = Field(default=0, ge=0, le=100)
    closes_as: Literal["won", "lost"] | None = None
    actions: list[Action] = Field(default_factory=list, max_length=MAX_ACTIONS_PER_STAGE)
    follow_up_after_days: int | None = Field(default=None, ge=1, le=3650)
    """After this many days in the stage without a command, create a follow-up activity."""
    advance_after_days: int | None = Field(default=None, ge=1, le=3650)
    """After this many days in the stage, move to the next stage automatically."""
    idle_after_days: int | None = Field(default=None, ge=1, le=3650)
    """After this many days in the stage without a command, the opportunity is idle (until
    the next command)."""
    forecast_category: ForecastCategory | None = None
    """The forecast category of an opportunity in this stage (default: `closed` for a won
    stage, `omitted` for a lost one, else `pipeline`), unless set by hand."""

    def default_forecast_category(self) -> ForecastCategory:
        if self.forecast_category is not None:
            return self.forecast_category
        if self.closes_as == "won":
            return "closed"
        return "omitted" if self.closes_as == "lost" else "pipeline"


class ProcessDefinition(_Strict):
    """The JSON (or YAML) document of Opportunity Setup, as in the contract."""

    process_id: Identifier
    name: Line
    default: bool = False
    change_stage_automatically: bool = False
    allow_cancel_activities: bool = False
    default_owner: ShortLine | None = None
    """The owner of an opportunity opened without one."""
    cancel_on_advance: bool = False
    """Cancel the open activities of the stage left when an outcome, a completion or the
    automatic advance moves the opportunity on (with `allow_cancel_activities`), unless the
    command says otherwise."""
    stages: list[StageDefinition] = Field(max_length=MAX_STAGES)
    outcome_stages: dict[Line, Line] = Field(default_factory=dict, max_length=MAX_OUTCOME_STAGES)
    activity_outcomes: dict[Line, Annotated[list[Line], Field(max_length=100)]] = Field(
        default_factory=dict, max_length=MAX_OUTCOME_STAGES
    )
    """The outcomes a kind of calendar activity may have (`{"call": ["Interested", ...]}`);
    a kind without a list takes any outcome."""
    external_status_stages: dict[Line, Line] = Field(
        default_factory=dict, max_length=MAX_OUTCOME_STAGES
    )
    """A status another system reports (`record_external_status`) to the stage it moves the
    opportunity to; a status not here is kept in history without moving it."""
    lost_reasons: Annotated[list[Line], Field(max_length=100)] = Field(default_factory=list)
    """When listed, entering a lost stage needs one of them as its reason."""
    won_reasons: Annotated[list[Line], Field(max_length=100)] = Field(default_factory=list)
    """When listed, winning by hand needs one of them as its reason."""
    default_lost_reason: Line | None = None
    """The reason of a loss nobody gave one for (an outcome mapped to a lost stage): one of
    `lost_reasons`, required when they are listed and an outcome can lose."""

    @model_validator(mode="after")
    def _consistent(self) -> ProcessDefinition:
        if not self.stages:
            raise ValueError("a process needs at least one stage")
        for index, stage in enumerate(self.stages):
            if stage.closes_as and (stage.follow_up_after_days or stage.advance_after_days):
                raise ValueError(
                    f"stages[{index}]: closing stage {stage.name!r} cannot have stage timers"
                )
        actions = sum(len(stage.actions) for stage in self.stages)
        if actions > MAX_ACTIONS:
            raise ValueError(f"a process has at most {MAX_ACTIONS} actions; this one has {actions}")
        seen_stages: set[str] = set()
        for index, stage in enumerate(self.stages):
            if stage.name in seen_stages:
                raise ValueError(f"stages[{index}]: duplicate stage name {stage.name!r}")
            seen_stages.add(stage.name)
        where: dict[str, str] = {}
        for stage in self.stages:
            for action in stage.actions:
                if action.action_id in where:
                    raise ValueError(
                        f"duplicate action id {action.action_id!r} "
                        f"(in stage {where[action.action_id]!r} and in stage {stage.name!r})"
                    )
                where[action.action_id] = stage.name
        for kind, outcomes in self.activity_outcomes.items():
            if not outcomes or len(set(outcomes)) != len(outcomes) or len(outcomes) > 100:
                raise ValueError(
                    f"activity_outcomes[{kind!r}] must list 1 to 100 different outcomes"
                )
        for outcome, target in self.outcome_stages.items():
            if target not in seen_stages:
                raise ValueError(
                    f"outcome_stages[{outcome!r}] points at unknown stage {target!r}; "
                    f"stages are {self.stage_names()}"
                )
        for status, target in self.external_status_stages.items():
            if target not in seen_stages:
                raise ValueError(
                    f"external_status_stages[{status!r}] points at unknown stage {target!r}; "
                    f"stages are {self.stage_names()}"
                )
        self._check_reasons()
        return self

    def _check_reasons(self) -> None:
        for name in ("lost_reasons", "won_reasons"):
            listed = getattr(self, name)
            if len(set(listed)) != len(listed):
                raise ValueError(f"{name} lists a reason twice")
        default = self.default_lost_reason
        if default is not None and self.lost_reasons and default not in self.lost_reasons:
            raise ValueError(
                f"default_lost_reason {default!r} is not one of lost_reasons {self.lost_reasons}"
            )
        lost = {stage.name for stage in self.stages if stage.closes_as == "lost"}
        mapped = {**self.outcome_stages, **self.external_status_stages}
        losing = sorted(o for o, target in mapped.items() if target in lost)
        if self.lost_reasons and losing and default is None:
            raise ValueError(
                f"outcomes {losing} lose an opportunity without a reason given: name a "
                "default_lost_reason (one of lost_reasons)"
            )

    def reasons_for(self, closes_as: str | None) -> list[str]:
        """The reasons a won or lost stage needs (empty: any, or none)."""
        if closes_as == "won":
            return list(self.won_reasons)
        return list(self.lost_reasons) if closes_as == "lost" else []

    def roles(self) -> list[str]:
        """The roles its actions name, in order."""
        named = [a.role for stage in self.stages for a in stage.actions if a.role]
        return list(dict.fromkeys(named))

    def outcomes_of(self, kind: str) -> list[str] | None:
        """The outcomes a calendar activity of `kind` may have (None: any)."""
        return self.activity_outcomes.get(kind)

    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def stage(self, name: str) -> StageDefinition | None:
        return next((stage for stage in self.stages if stage.name == name), None)

    def next_stage(self, name: str) -> StageDefinition | None:
        """The stage after `name` in order, or None after the last one."""
        names = self.stage_names()
        index = names.index(name) + 1
        return self.stages[index] if index < len(self.stages) else None

    def fingerprint(self) -> str:
        """A stable hash of the definition: applying an unchanged definition is a no-op."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class SalesProcess(BaseModel):
    """One stored version of a process definition."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    version: int = Field(ge=1)
    definition: ProcessDefinition


class FoundProcess(BaseModel):
    """What looking up a process by id found: its latest version (None: unknown), and whether
    it is retired."""

    process: SalesProcess | None = None
    retired: bool = False
