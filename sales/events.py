"""Events other systems hear about: made from the change records the core produces (and the
detail changes), one per thing that changed, numbered per opportunity. The projection writes
them to the outbox (`opportunity_events`) in the same transaction as what they describe."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sales.authorization import Actor
from sales.change_records import ChangeRecord
from sales.opportunity import DetailChange, Opportunity
from sales.validation import IdText, MessageText

EventType = Literal[
    "stage_changed", "won", "lost", "reopened", "deleted", "action_completed", "action_failed",
    "activity_created", "activity_done", "activity_canceled", "activity_modified",
    "activity_due", "activity_overdue",
    "owner_changed", "team_changed", "details_changed", "remark_added", "process_changed",
    "external_status",
]  # fmt: skip
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]

EventData = Annotated[dict[IdText, MessageText | None], Field(max_length=20)]


class OpportunityEvent(BaseModel):
    """One event: `event_id` (the opportunity id and `seq`) lets a receiver drop a duplicate;
    `seq` orders one opportunity's events."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    event_id: IdText
    type: EventType
    opportunity_id: IdText
    seq: int
    at: datetime
    data: EventData = Field(default_factory=dict)


_STATUS_EVENTS: dict[str, EventType] = {"won": "won", "lost": "lost", "deleted": "deleted"}
_ACTION_EVENTS: dict[str, EventType] = {"completed": "action_completed", "failed": "action_failed"}
_ACTIVITY_EVENTS: dict[str, EventType] = {
    "active": "activity_created", "done": "activity_done", "canceled": "activity_canceled",
}  # fmt: skip


def events_of(
    state: Opportunity,
    before: Opportunity,
    records: list[ChangeRecord],
    details: list[DetailChange],
    actor: Actor | None = None,
) -> list[OpportunityEvent]:
    """The events of what one command (or an opening, a reopening, a timer) changed, numbered
    after the opportunity's earlier ones (`state.events_made` is advanced in place); with the
    command's `actor` (`actor`, `actor_service`, `verified`) while authorization is on."""
    who: dict[str, str | None] = {}
    if actor is not None:
        who = {"actor": actor.sub, "actor_service": actor.act,
               "verified": "true" if actor.verified else "false"}  # fmt: skip
    made: list[tuple[EventType, dict[str, str | None], datetime, str | None]] = []
    for record in records:
        kind = _kind(record, before)
        if kind is None:
            continue
        data: dict[str, str | None] = {"from": record.from_, "to": record.to}
        if kind == "stage_changed":
            data |= {"source": _source(state), "reason": record.why}
        elif kind == "team_changed":
            data["role"] = record.what.removeprefix("team:")
        elif record.what.startswith("action:"):
            data = {"action_id": record.what.removeprefix("action:"), "status": record.to}
        elif kind == "external_status":
            data = {"source": record.what.removeprefix("external:"), "reference": record.from_,
                    "status": record.to}  # fmt: skip
        elif kind in ("activity_due", "activity_overdue"):
            data = {"activity_id": record.what.partition(":")[2], "due": record.to}
        elif record.what.startswith("activity:"):
            data = {"activity_id": record.what.removeprefix("activity:"), "status": record.to}
        if kind == "remark_added":
            data = {"seq": str(state.remarks_added), "text": record.to}
        made.append((kind, data, record.at, record.by))
    for change in details:
        data = {"what": change.what, "from": change.from_value, "to": change.to_value}
        made.append(("details_changed", data, change.at, change.by))
    events = []
    for kind, data, at, by in made:
        state.events_made += 1
        events.append(
            OpportunityEvent(
                event_id=f"{state.opportunity_id}/{state.events_made}",
                type=kind,
                opportunity_id=state.opportunity_id,
                seq=state.events_made,
                at=at,
                data={key: _short(value) for key, value in {**data, "by": by, **who}.items()},
            )
        )
    return events


def _kind(record: ChangeRecord, before: Opportunity) -> EventType | None:
    what = record.what
    if what == "stage":
        return "stage_changed"
    if what == "status":
        if record.to in _STATUS_EVENTS:
            return _STATUS_EVENTS[record.to or ""]
        return "reopened" if before.status in ("won", "lost") else None
    if what == "owner":
        return "owner_changed"
    if what.startswith("team:"):
        return "team_changed"
    if what == "remark":
        return "remark_added"
    if what == "process":
        return "process_changed"
    if what == "modify_activity":
        return "activity_modified"
    if what.startswith("action:"):
        return _ACTION_EVENTS.get(record.to or "")
    if what.startswith("external:"):
        return "external_status"
    if what.startswith("activity:"):
        return _ACTIVITY_EVENTS.get(record.to or "")
    if what.startswith("activity_due:"):
        return "activity_due"
    if what.startswith("activity_overdue:"):
        return "activity_overdue"
    return None  # name: a detail change; the rest changes nothing others hear about


MAX_VALUE = 300
"""Characters of a value an event carries (a remark's or a reason's text is cut: the read
model has it whole)."""


def _short(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_VALUE:
        return value
    return value[: MAX_VALUE - 1] + "…"


def _source(state: Opportunity) -> str | None:
    entered = next((e for e in state.history if e.seq == state.entered_seq), None)
    return entered.source if entered else None
