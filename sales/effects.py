"""Effects: what the workflow shell must carry out after the core decided a change, and the
outcomes it feeds back.

The core never performs I/O; it returns these, and the shell turns each into an activity whose
idempotency key comes from the effect itself (opportunity, action, generation), so that a
retry or a replay never doubles a calendar activity, a letter or an invitation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from sales.opportunity import DetailChange, HistoryEntry, Remark, StageLeft
from sales.validation import CodeText, DisplayId, IdText, LineText, MessageText, NotesText


class RecordHistory(BaseModel):
    kind: Literal["record_history"] = "record_history"
    entry: HistoryEntry


class RecordRemark(BaseModel):
    """A remark written to the read model (the state keeps only the newest)."""

    kind: Literal["record_remark"] = "record_remark"
    remark: Remark


class RecordStageLeft(BaseModel):
    """When the stage an earlier history entry entered was left, and how long it lasted."""

    kind: Literal["record_stage_left"] = "record_stage_left"
    left: StageLeft


class RecordDetailChange(BaseModel):
    """A change of the opportunity's details, written to the read model."""

    kind: Literal["record_detail_change"] = "record_detail_change"
    change: DetailChange


class CreateCalendarActivity(BaseModel):
    kind: Literal["create_calendar_activity"] = "create_calendar_activity"
    opportunity_id: str
    contact_id: str
    action_id: str
    generation: int
    activity_id: str
    activity_kind: str
    subject: str
    starts_at: datetime
    ends_at: datetime
    track_outcome: bool
    assignee: str | None = None
    notes: str | None = None
    location: str | None = None


class LetterContext(BaseModel):
    """The opportunity and process fields a letter template may use."""

    opportunity_id: str
    name: str | None
    owner: str | None
    current_stage: str
    process_id: str
    process_name: str


class SendLetter(BaseModel):
    kind: Literal["send_letter"] = "send_letter"
    opportunity_id: str
    contact_id: str
    action_id: str
    generation: int
    letter_id: str
    template: str
    title: str
    context: LetterContext
    method: Literal["email", "document", "both"] | None = None
    """The correspondence option chosen (None: e-mail when possible, else a document)."""


class InviteToEvent(BaseModel):
    kind: Literal["invite_to_event"] = "invite_to_event"
    opportunity_id: str
    contact_id: str
    action_id: str
    generation: int
    event_id: str


class CalendarKey(BaseModel):
    """A calendar activity's key in the read model: (opportunity, action, generation)."""

    opportunity_id: IdText
    action_id: IdText
    generation: int
    activity_id: DisplayId
    """Its display id (`calendar_rules.activity_id_for`), for summaries and logs."""


class CompleteCalendarActivity(BaseModel):
    kind: Literal["complete_calendar_activity"] = "complete_calendar_activity"
    key: CalendarKey
    outcome: LineText | None = None
    notes: NotesText | None = None


class CancelCalendarActivity(BaseModel):
    kind: Literal["cancel_calendar_activity"] = "cancel_calendar_activity"
    key: CalendarKey


class DeleteCalendarActivity(BaseModel):
    kind: Literal["delete_calendar_activity"] = "delete_calendar_activity"
    key: CalendarKey


class ModifyCalendarActivity(BaseModel):
    """New details of an active calendar activity (None: unchanged). A new due keeps the
    duration unless one is given."""

    kind: Literal["modify_calendar_activity"] = "modify_calendar_activity"
    key: CalendarKey
    starts_at: datetime | None = None
    duration_minutes: int | None = None
    subject: LineText | None = None
    assignee: LineText | None = None
    notes: NotesText | None = None
    location: LineText | None = None


CalendarChange = Annotated[
    CompleteCalendarActivity
    | CancelCalendarActivity
    | DeleteCalendarActivity
    | ModifyCalendarActivity,
    Field(discriminator="kind"),
]
"""A change to a calendar activity row the opportunity already has: written with the
projection, in order, idempotently (only an active row is completed or canceled)."""

Effect = Annotated[
    RecordHistory
    | RecordRemark
    | RecordStageLeft
    | RecordDetailChange
    | CreateCalendarActivity
    | SendLetter
    | InviteToEvent
    | CompleteCalendarActivity
    | CancelCalendarActivity
    | DeleteCalendarActivity
    | ModifyCalendarActivity,
    Field(discriminator="kind"),
]

PerformEffect = CreateCalendarActivity | SendLetter | InviteToEvent
"""Effects whose outcome decides what happens to an action (fed back through `core.settle`)."""


class EffectOutcome(BaseModel):
    """What carrying out an effect did. `failed` (with a `code`) when no retry can fix it, or
    the retries ran out."""

    status: Literal["created", "exists", "sent", "filed", "invited", "already_invited", "failed"]
    message: MessageText = ""
    code: CodeText | None = None
    """Why it failed (see `sales.opportunity.EffectFailure.code`)."""
    activity_id: DisplayId | None = None
    created_on: datetime | None = None
