"""What the projection writes besides the opportunity's row, and which effects it carries
out: the history entries, the remarks and the changes to calendar activities that already
exist. The other effects (a calendar activity created, a letter sent, an invitation) are
performed one by one by the shell, and their outcomes settled into the state by the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sales.effects import (
    CalendarChange,
    CancelCalendarActivity,
    CompleteCalendarActivity,
    CreateCalendarActivity,
    DeleteCalendarActivity,
    Effect,
    InviteToEvent,
    ModifyCalendarActivity,
    RecordDetailChange,
    RecordHistory,
    RecordRemark,
    RecordStageLeft,
    SendLetter,
)
from sales.events import OpportunityEvent
from sales.opportunity import DetailChange, HistoryEntry, Remark, StageLeft

CARRIED_BY: dict[type, Literal["perform", "history", "remark", "calendar", "details"]] = {
    CreateCalendarActivity: "perform",
    SendLetter: "perform",
    InviteToEvent: "perform",
    RecordHistory: "history",
    RecordRemark: "remark",
    RecordStageLeft: "history",
    RecordDetailChange: "details",
    CompleteCalendarActivity: "calendar",
    CancelCalendarActivity: "calendar",
    DeleteCalendarActivity: "calendar",
    ModifyCalendarActivity: "calendar",
}
"""What carries out each kind of effect: `perform`, or the projection (the history entries,
the remarks and the changes to calendar activities that already exist)."""


@dataclass
class Writes:
    """What commands changed in the read model beyond the opportunity's row, written by the
    projection with the row. `weight` estimates their size as JSON, in bytes, from the text
    they carry (a batch is written before it grows past what one write may carry)."""

    history: list[HistoryEntry] = field(default_factory=list)
    calendar: list[CalendarChange] = field(default_factory=list)
    remarks: list[Remark] = field(default_factory=list)
    left: list[StageLeft] = field(default_factory=list)
    details: list[DetailChange] = field(default_factory=list)
    events: list[OpportunityEvent] = field(default_factory=list)
    """The outbox's events of these changes, written in the same transaction."""
    weight: int = 0

    def __iadd__(self, other: Writes) -> Writes:
        self.history += other.history
        self.calendar += other.calendar
        self.remarks += other.remarks
        self.left += other.left
        self.details += other.details
        self.events += other.events
        self.weight += other.weight
        return self

    def add_events(self, events: list[OpportunityEvent]) -> None:
        """Events of what is written, with their weight."""
        self.events += events
        self.weight += sum(300 + 4 * sum(len(v or "") for v in e.data.values()) for e in events)

    def add(self, effect: Effect) -> None:
        """A history entry, remark or calendar change to write."""
        if isinstance(effect, RecordHistory):
            self.history.append(effect.entry)
            self.weight += 400 + 4 * len(effect.entry.reason or "")
        elif isinstance(effect, RecordRemark):
            self.remarks.append(effect.remark)
            self.weight += 300 + 4 * len(effect.remark.text)
        elif isinstance(effect, RecordStageLeft):
            self.left.append(effect.left)
            self.weight += 100
        elif isinstance(effect, RecordDetailChange):
            self.details.append(effect.change)
            change = effect.change
            self.weight += 200 + 4 * (len(change.from_value or "") + len(change.to_value or ""))
        else:
            self.calendar.append(effect)  # type: ignore[arg-type]
            texts = [getattr(effect, name, None) for name in _CALENDAR_TEXTS]
            self.weight += 800 + 4 * sum(len(text) for text in texts if text)


_CALENDAR_TEXTS = ("outcome", "notes", "subject", "assignee", "location")
