"""The state of one opportunity, as the workflow holds it and the `state` query returns it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from sales.process import Action, ProcessDefinition
from sales.validation import (
    MAX_ACTIONS,
    MAX_NOTES,
    MAX_STAGES,
    CodeText,
    DisplayId,
    Identifier,
    IdText,
    Line,
    LineText,
    MessageText,
    NotesText,
    ShortLine,
)
from sales.value import Amount, CloseDate, Currency, ForecastCategory, Probability

Status = Literal["open", "won", "lost", "deleted"]
"""`deleted`: ended by `delete_opportunity`, out of searches by default."""
HistorySource = Literal[
    "start", "manual", "automatic", "outcome", "mass", "reopened", "external", "note"
]
"""How an entry came: a stage entered (`start` ... `external`), or a `note` of a change beside
the stages (it stays in the current stage)."""

MAX_REJECTED = 50
"""Rejections kept for the `state` query; older ones are dropped (they stay in Temporal history)."""
MAX_REJECTED_PAYLOAD = 1024
"""Characters of a rejected command's payload (as JSON) kept with its rejection."""
MAX_REASON = 1024
"""Characters of a rejection's reason kept."""

MAX_HISTORY = 100
"""History entries the state keeps (the newest; the read model has every one)."""
MAX_REMARKS = 5
"""Remarks the state keeps (the newest; the read model's `remarks` table has every one)."""
MAX_RETIRED = 500
"""Deleted actions whose generation the state remembers; past it, the oldest are folded into
`Opportunity.retired_floor`."""
MAX_DEAD_LETTERS = 5
"""Refused projection parts the state keeps (the newest)."""
MAX_ERROR_MESSAGE = 500
"""Characters of a failed side effect's reason kept with its action."""
MAX_REQUEST_IDS = 5000
"""Applied request ids remembered for de-duplication; the oldest are forgotten first."""
MAX_REQUEST_ID_CHARACTERS = 256 * 1024
"""...and at most this many characters of them in all, so long ids cannot grow the state."""


class StartOpportunity(BaseModel):
    """Input of the `Opportunity` workflow (the contract's start payload). Unknown fields are
    refused: a typo such as `proces_id` must not open the opportunity on the default process."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    opportunity_id: Identifier
    contact_id: Identifier
    process_id: Identifier | None = None
    name: Line | None = None
    owner: Line | None = None
    stage: Line | None = None
    by: ShortLine | None = None
    """Who opened it; kept in the `start` history entry."""
    amount: Amount | None = None
    currency: Currency | None = None
    """Default: the service's currency setting (`OPPORTUNITIES_CURRENCY`)."""
    expected_close_date: CloseDate | None = None
    probability: Probability | None = None
    """Set by hand: it stays (default: the stage's, following stage changes)."""
    forecast_category: ForecastCategory | None = None
    """Set by hand: it stays (default: the stage's)."""
    include_in_forecast: bool = True


ActivityStatus = Literal["active", "done", "canceled"]


class EffectFailure(BaseModel):
    """Why performing an action failed last time; the action can be performed again once
    the data is fixed."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    code: CodeText
    """One of `sales.errors.FAILURE_CODES`: `bad_data` (and narrower: `unknown_template`,
    `template_error`, `no_address`, `unknown_event`, `unknown_contact`, `mail_refused`,
    `method_unavailable`), `unavailable` (a service stayed down longer than the retries last),
    or `unclassified` (an unexpected error, retried up to a bound)."""
    message: MessageText
    at: datetime


class ActionState(BaseModel):
    """This opportunity's copy of an action, with its progress (a row of "Stage Actions")."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    definition: Action
    completed: bool = False
    completed_at: datetime | None = None
    performed_at: datetime | None = None
    activity_id: DisplayId | None = None
    """The linked calendar activity, until it is deleted."""
    activity_status: ActivityStatus | None = None
    activity_created_on: datetime | None = None
    activity_outcome: LineText | None = None
    activity_assignee: LineText | None = None
    """Who does the linked calendar activity."""
    activity_starts_at: datetime | None = None
    activity_ends_at: datetime | None = None
    """When the linked calendar activity is due and ends (a change of either is checked
    against the business range)."""
    activity_due_noted: datetime | None = None
    """The due time whose `activity_due` event was made (another due time is noted again)."""
    activity_overdue_noted: datetime | None = None
    """The due time whose `activity_overdue` event was made."""
    generation: int = 0
    """How many side effects (activities, letters) this action has started; with the
    opportunity and the action id it is the idempotency key of the next one."""
    last_error: EffectFailure | None = None
    """Why the last perform failed (unknown template, no address, ...); cleared on success."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def action_id(self) -> str:
        return self.definition.action_id

    @computed_field  # type: ignore[prop-decorator]
    @property
    def type(self) -> str:
        return self.definition.type

    @computed_field  # type: ignore[prop-decorator]
    @property
    def title(self) -> str:
        return self.definition.title


class StageState(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: LineText
    actions: list[ActionState] = Field(default_factory=list, max_length=MAX_ACTIONS)


class HistoryEntry(BaseModel):
    """One stage change; `seq` numbers entries from 1 and keys the history row in the store."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    seq: int
    at: datetime
    from_stage: LineText | None
    to_stage: LineText
    source: HistorySource
    by: IdText | None = None
    reason: NotesText | None = None
    canceled_activities: list[DisplayId] = Field(default_factory=list, max_length=MAX_ACTIONS)
    """Active activities of the stage left, cancelled by this change."""
    created_activities: list[DisplayId] = Field(default_factory=list, max_length=MAX_ACTIONS)
    """Activities created on entry (actions marked `create_activity_on_entry`)."""
    left_at: datetime | None = None
    """When the stage it entered was left (None: not yet, or an entry that stays in the
    stage)."""
    duration_seconds: int | None = None
    """How long the opportunity stayed in the stage it entered, once left."""
    left_for: LineText | None = None
    """The stage it went to when it left the stage this entry entered."""
    actor: IdText | None = None
    """Who sent the command, as its token proves (`verified`) or as it claims (`by`, when
    authorization records unsigned commands); None while authorization is off."""
    actor_service: IdText | None = None
    """The service that signed for `actor` (a token's `act`)."""
    verified: bool | None = None
    """Whether a valid signature proves `actor` (None: authorization off)."""


class ExternalStatus(BaseModel):
    """The last status another system reported: a case or policy (`reference`) in `source`."""

    source: IdText
    reference: LineText
    status: LineText
    at: datetime


class StageLeft(BaseModel):
    """The stage history entry `seq` entered was left at `left_at` for `left_for`, after
    `duration_seconds`."""

    seq: int
    left_at: datetime
    duration_seconds: int
    left_for: LineText | None = None


class DetailChange(BaseModel):
    """One change of an opportunity's details; `seq` numbers them from 1 per opportunity."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    seq: int
    what: IdText
    """`amount`, `currency`, `expected_close_date`, `probability`, `forecast_category`,
    `include_in_forecast` or `name`."""
    from_value: MessageText | None = None
    to_value: MessageText | None = None
    by: IdText | None = None
    at: datetime


class Rejection(BaseModel):
    """A signal that was not applied."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    command: IdText
    code: CodeText
    """One of the rejection codes (`contract/rejection-codes.json`)."""
    reason: Annotated[str, Field(max_length=MAX_REASON)]
    payload: Annotated[str, Field(max_length=MAX_REJECTED_PAYLOAD)]
    """The payload as JSON, cut to `MAX_REJECTED_PAYLOAD` characters."""
    at: datetime


class DeadLetter(BaseModel):
    """A part of a projection the read model refused (kept in its `dead_letters` table)."""

    what: LineText
    why: MessageText
    at: datetime | None = None


class Remark(BaseModel):
    """A dated remark; `seq` numbers an opportunity's remarks from 1 and keys its row."""

    seq: int = 0
    at: datetime
    by: IdText | None = None
    text: Annotated[str, Field(max_length=MAX_NOTES)]


class Opportunity(BaseModel):
    """Everything the workflow knows; carried whole across continue-as-new."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    opportunity_id: IdText
    contact_id: IdText
    contact_name: LineText | None = None
    name: LineText | None
    owner: LineText | None
    team: dict[IdText, IdText] = Field(default_factory=dict, max_length=MAX_ACTIONS)
    """Role to user: who does the calendar activities of the actions naming the role (a role
    not here falls to the owner)."""
    remarks: list[Remark] = Field(default_factory=list, max_length=MAX_REMARKS)
    """The newest dated remarks, oldest first (every one is in the read model)."""
    remarks_added: int = 0
    """Remarks added in all (numbers the next one)."""
    status: Status = "open"
    process_id: IdText
    process_version: int
    process: ProcessDefinition
    current_stage: LineText
    stage_entered_at: datetime
    created_at: datetime
    closed_at: datetime | None = None
    stages: list[StageState] = Field(max_length=MAX_STAGES)
    visited: list[LineText] = Field(default_factory=list, max_length=MAX_STAGES)
    """The stages of this process the opportunity has been in, the current one included
    ("Stage Actions for Current/Previous"), in the order entered."""
    history: list[HistoryEntry] = Field(default_factory=list, max_length=MAX_HISTORY)
    """The newest stage changes and other history entries, oldest first."""
    history_entries: int = 0
    """History entries made in all (numbers the next one: `seq`)."""
    rejected: list[Rejection] = Field(default_factory=list, max_length=MAX_REJECTED)
    applied_request_ids: list[IdText] = Field(default_factory=list, max_length=MAX_REQUEST_IDS)
    request_id_characters: int = 0
    """The characters of `applied_request_ids` in all (kept with them, for their bound)."""
    retired_generations: dict[IdText, int] = Field(default_factory=dict, max_length=MAX_RETIRED)
    """The generation of each deleted action: an action added again under the same id goes
    on from there, so its next calendar activity or letter never reuses a key."""
    retired_floor: int = 0
    """The highest generation of the deleted actions no longer in `retired_generations`: an
    action it does not name starts above it, so no key is reused after the oldest are
    forgotten."""
    dead_letters: list[DeadLetter] = Field(default_factory=list, max_length=MAX_DEAD_LETTERS)
    """The newest parts of its projection the read model refused (all are in its
    `dead_letters` table); `dead_letters_count` counts them all."""
    dead_letters_count: int = 0
    revision: int = 0
    """Bumped on every applied change; the store ignores a projection older than the one it has."""
    last_command_at: datetime | None = None
    """When a command was last applied: the follow-up timer counts idle days from here."""
    follow_ups: int = 0
    """Follow-up actions created by the stage timer so far (numbers their action ids)."""
    day_seconds: int = 86400
    """The length of a day for stage timers (`OPPORTUNITIES_DAY_SECONDS` of the worker that
    opened it; tests use a second)."""
    amount: Amount | None = None
    currency: Currency | None = None
    """The currency of `amount` (set when it opened, from the start or the setting)."""
    default_currency: Currency | None = None
    """The service's currency when it opened: what a cleared currency becomes."""
    won_amount: Amount | None = None
    """The amount it was won at (kept when it is won; cleared by a reopening)."""
    expected_close_date: CloseDate | None = None
    """Expected, while open; the day it closed, once won."""
    probability: Probability | None = None
    """The current stage's probability, unless set by hand (`probability_by_hand`)."""
    probability_by_hand: bool = False
    forecast_category: ForecastCategory | None = None
    """The current stage's forecast category, unless set by hand."""
    forecast_category_by_hand: bool = False
    include_in_forecast: bool = True
    close_reason: LineText | None = None
    """Why it was won or lost (one of the process's reasons when it lists them)."""
    entered_seq: int = 0
    """The history entry that entered the current stage (its `left_at` is set on leaving)."""
    stage_seconds: dict[LineText, int] = Field(default_factory=dict, max_length=4 * MAX_STAGES)
    """Seconds spent in each stage, over the stays already ended (a stage entered twice counts
    both); the current stay is `now - stage_entered_at`."""
    idle_since: datetime | None = None
    """Since when no command came while the stage's `idle_after_days` passed (None: not
    idle)."""
    detail_changes: int = 0
    """Changes of its details recorded in all (numbers the next one)."""
    external_status: ExternalStatus | None = None
    """The last status another system reported (`record_external_status`)."""
    events_made: int = 0
    """Events made in all (numbers the next one: its `seq` in the outbox)."""

    def stage_state(self, name: str) -> StageState:
        return next(stage for stage in self.stages if stage.name == name)

    def visited_stages(self) -> list[str]:
        """The current stage and the stages it has been in: "Stage Actions for Current/Previous"."""
        visited = {*self.visited, self.current_stage}
        return [stage.name for stage in self.stages if stage.name in visited]

    def retired_generation(self, action_id: str) -> int:
        """The generation a new action of this id goes on from (0 for a new id)."""
        return self.retired_generations.get(action_id, self.retired_floor)

    def find_action(self, action_id: str) -> tuple[StageState, ActionState] | None:
        for stage in self.stages:
            for action in stage.actions:
                if action.action_id == action_id:
                    return stage, action
        return None

    def find_calendar_activity(self, activity_id: str) -> tuple[StageState, ActionState] | None:
        for stage in self.stages:
            for action in stage.actions:
                if action.activity_id == activity_id:
                    return stage, action
        return None

    def member(self, role: str | None) -> str | None:
        """Who plays `role` on this opportunity's team (the owner by default)."""
        return self.team.get(role, self.owner) if role else self.owner

    def open_actions(self) -> int:
        """Actions of the current stage not yet completed (the `OpenActions` search attribute)."""
        return sum(not action.completed for action in self.stage_state(self.current_stage).actions)

    def failed_actions(self) -> int:
        """Actions whose last side effect failed (the `FailedActions` search attribute)."""
        return sum(action.last_error is not None for s in self.stages for action in s.actions)

    def has_applied(self, request_id: str | None) -> bool:
        return request_id is not None and request_id in self.applied_request_ids

    def summary(self) -> OpportunitySummary:
        return OpportunitySummary(
            opportunity_id=self.opportunity_id,
            contact_id=self.contact_id,
            process_id=self.process_id,
            process_version=self.process_version,
            name=self.name,
            owner=self.owner,
            status=self.status,
            current_stage=self.current_stage,
            stage_entered_at=self.stage_entered_at,
            closed_at=self.closed_at,
            open_actions=self.open_actions(),
            failed_actions=self.failed_actions(),
            created_at=self.created_at,
            revision=self.revision,
            amount=self.amount,
            currency=self.currency,
            won_amount=self.won_amount,
            expected_close_date=self.expected_close_date,
            probability=self.probability,
            forecast_category=self.forecast_category,
            include_in_forecast=self.include_in_forecast,
            close_reason=self.close_reason,
            idle_since=self.idle_since,
        )


class OpportunitySummary(BaseModel):
    """The row of the `opportunities` read-model table."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    opportunity_id: IdText
    contact_id: IdText
    process_id: IdText
    process_version: int
    name: LineText | None
    owner: LineText | None
    status: Status
    current_stage: LineText
    stage_entered_at: datetime
    closed_at: datetime | None
    open_actions: int
    failed_actions: int = 0
    created_at: datetime
    revision: int
    amount: Amount | None = None
    currency: Currency | None = None
    won_amount: Amount | None = None
    expected_close_date: CloseDate | None = None
    probability: Probability | None = None
    forecast_category: ForecastCategory | None = None
    include_in_forecast: bool = True
    close_reason: LineText | None = None
    idle_since: datetime | None = None
