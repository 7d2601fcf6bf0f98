"""The payloads of the commands an opportunity accepts (each both a signal and an update of
the same name, declared in `sales.registry`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from sales.process import Action
from sales.validation import Identifier, Line, Notes, ShortLine, When
from sales.value import Amount, CloseDate, Currency, ForecastCategory, Probability


class Envelope(BaseModel):
    """What every command carries besides its payload, read once as it arrives."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    request_id: ShortLine | None = None
    by: ShortLine | None = None
    reply_to: ShortLine | None = None
    actor: ShortLine | None = None
    """The verified actor: set by the shell from what authorization verified, never read
    from the payload (None until authorization fills it)."""


class Command(BaseModel):
    """Fields every command may carry (its `Envelope`), besides its payload."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    request_id: ShortLine | None = None
    """A command whose request id was already applied is acknowledged and not applied again."""
    by: ShortLine | None = None
    """Who issued the command; kept in history."""
    reply_to: ShortLine | None = None
    """The id of a workflow to signal `command_outcome` (a `CommandOutcome`) once this command
    is applied, acknowledged as a duplicate or rejected: how a workflow such as `MassModify`
    sends commands as signals and still learns each result."""


ActionIds = Annotated[list[Identifier], Field(min_length=1, max_length=100)]


LetterMethod = Literal["email", "document", "both"]
"""The correspondence option: e-mail it, file it as a document to print, or both."""


class ActivityDetails(BaseModel):
    """A calendar activity's details as the user enters them (each optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    due: When | None = None
    """When it starts (ISO-8601 with a time zone, within the business range)."""
    duration_minutes: int | None = Field(default=None, gt=0, le=7 * 24 * 60)
    subject: Line | None = None
    assignee: ShortLine | None = None
    """Who does it (a user id)."""
    notes: Notes | None = None
    location: Line | None = None

    def given(self) -> dict[str, Any]:
        """The details given (a subclass's other fields left out)."""
        fields = ActivityDetails.model_fields
        return {name: value for name in fields if (value := getattr(self, name)) is not None}


EntryOverrides = Annotated[dict[Identifier, ActivityDetails], Field(max_length=100)]
"""Per action id, the details of the calendar activity that entering the new stage creates
for that action (its `create_activity_on_entry`)."""

CancelOpenActivities = bool | None
"""When the opportunity moves on: cancel the open activities of the stage left (allowed only
if the process's `allow_cancel_activities`). Absent: the process's `cancel_on_advance`."""


class ChangeStage(Command):
    """Move to a stage of the process by name, or (`next_stage`) to the one after the current
    stage."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["stage"], "properties": {"stage": {"type": "string"}}},
                {"required": ["next_stage"], "properties": {"next_stage": {"const": True}}},
            ]
        }
    )

    stage: Line | None = None
    next_stage: bool = False
    """Move to the stage after the current one (never into a closing stage: winning or losing
    is named). Exactly one of `stage` and `next_stage`."""
    expected_stage: Line | None = None
    """Applied only while the opportunity is in this stage (else rejected `stage_changed`): a
    batch moving each opportunity on never moves one that has moved meanwhile."""
    cancel_open_activities: CancelOpenActivities = None
    """Cancel the open activities of the stage left; absent: the process's
    `cancel_on_advance`."""
    overrides: EntryOverrides = Field(default_factory=dict)
    """Details of the activities the new stage creates, per action id."""
    reason: Notes | None = None
    source: Literal["manual", "mass"] = "manual"
    """`mass` when a mass modification sent it (kept in history)."""

    @model_validator(mode="after")
    def _one_target(self) -> ChangeStage:
        if (self.stage is None) == (not self.next_stage):
            raise ValueError("give exactly one of stage and next_stage: true")
        return self


class ActionOverrides(ActivityDetails):
    """What the user enters when performing one action: a calendar activity's details, or a
    letter's correspondence option."""

    method: LetterMethod | None = None


class PerformActions(Command):
    """Perform tagged actions: create the calendar activity, send the letter, invite."""

    action_ids: ActionIds
    overrides: dict[Identifier, ActionOverrides] = Field(default_factory=dict, max_length=100)
    """Per tagged action: a calendar activity's details, or a letter's `method`."""


class CompleteActions(Command):
    """Mark Complete: the actions are completed without being performed; a calendar action's
    active activity is done. With `stage` (or one action's outcome mapped in the process's
    `outcome_stages`) the opportunity moves on."""

    action_ids: ActionIds
    outcome: Line | None = None
    notes: Notes | None = None
    stage: Line | None = None
    cancel_open_activities: CancelOpenActivities = None
    """When the opportunity moves on: cancel the open activities of the stage left (default:
    the process's `cancel_on_advance`)."""
    overrides: EntryOverrides = Field(default_factory=dict)
    """When the opportunity moves on: details of the activities the new stage creates."""


class AddAction(Command):
    stage: Line
    action: Action


class ModifyAction(Command):
    action_id: Identifier
    changes: dict[str, Any] = Field(min_length=1, max_length=20)


class DeleteAction(Command):
    action_id: Identifier


class RecordOutcome(Command):
    """The calendar side: the linked activity is done (with its outcome)."""

    activity_id: Line
    outcome: Line | None = None
    notes: Notes | None = None
    stage: Line | None = None
    cancel_open_activities: CancelOpenActivities = None
    """When the opportunity moves on: cancel the open activities of the stage left (default:
    the process's `cancel_on_advance`)."""
    overrides: EntryOverrides = Field(default_factory=dict)
    """When the opportunity moves on: details of the activities the new stage creates."""


class DeleteActivity(Command):
    activity_id: Line


class ModifyActivity(Command, ActivityDetails):
    """Change an active calendar activity's details (a history entry)."""

    activity_id: Line

    @model_validator(mode="after")
    def _something(self) -> ModifyActivity:
        if not self.given():
            raise ValueError(f"give at least one of {', '.join(ActivityDetails.model_fields)}")
        return self


class Assign(Command):
    """Give a role on the opportunity's team to a user (a history entry)."""

    role: Identifier
    user: ShortLine


class MoveProcess(Command):
    """Move an open opportunity to a stage of another process (its latest version): its
    actions become that process's; what was done before stays in history."""

    process_id: Identifier
    stage: Line


class AddRemark(Command):
    """A dated remark on the opportunity (shown by `show`)."""

    text: Notes


class DeleteOpportunity(Command):
    """End the opportunity as `deleted`: out of searches by default, kept in history, its
    active calendar activities canceled."""

    reason: Notes


class UpdateDetails(Command):
    """Change what the opportunity is worth and when it should close (and its name): each
    field given is set, each given as null is cleared (a probability or forecast category
    cleared follows the stage again; a currency cleared is the service's default); a field
    not given stays."""

    amount: Amount | None = None
    currency: Currency | None = None
    expected_close_date: CloseDate | None = None
    probability: Probability | None = None
    forecast_category: ForecastCategory | None = None
    include_in_forecast: bool | None = None
    name: Line | None = None

    @model_validator(mode="after")
    def _something(self) -> UpdateDetails:
        if not self.model_fields_set & set(DETAIL_FIELDS):
            raise ValueError(f"give at least one of {', '.join(DETAIL_FIELDS)}")
        if "include_in_forecast" in self.model_fields_set and self.include_in_forecast is None:
            raise ValueError("include_in_forecast is true or false")
        return self

    @model_serializer(mode="wrap")
    def _only_given(self, serialize: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the fields given travel: a field left out stays, one sent as null is
        cleared."""
        data = serialize(self)
        return {name: value for name, value in data.items() if name in self.model_fields_set}

    def given(self) -> dict[str, Any]:
        """The detail fields given, with their values (None: clear it)."""
        given = self.model_fields_set
        return {name: getattr(self, name) for name in DETAIL_FIELDS if name in given}


DETAIL_FIELDS = (
    "amount", "currency", "expected_close_date", "probability", "forecast_category",
    "include_in_forecast", "name",
)  # fmt: skip
"""The details `update_details` sets, in the order they are shown."""


class RecordExternalStatus(Command):
    """A status another system reports (a case or policy number and its status): moves the
    opportunity as its process's `external_status_stages` maps it (history source
    `external`); a status not mapped is kept in history without moving it."""

    source: ShortLine
    """The system it comes from (`policy-system`)."""
    reference: Line
    """Its case or policy number."""
    status: Line


class ChangeOwner(Command):
    """Hand the opportunity to another owner (no stage change, no history entry)."""

    owner: Line
