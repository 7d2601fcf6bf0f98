"""One command, start to finish: apply it through the core, carry out its effects, settle what
performing did, follow through (the automatic advance), and finish its result.

The effects of a command are carried out by what `CARRIED_BY` names: a side effect with an
outcome (a calendar activity created, a letter sent, an invitation) by `perform`, which the
caller gives (the workflow passes its activities, the tests a simulated calendar), and the
rest by the projection (`Changes`), written once per batch of commands. No Temporal here:
the same code runs in the workflow and in the tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sales import core
from sales.commands import Command, MoveProcess, users_named
from sales.effects import (
    CalendarChange,
    CancelCalendarActivity,
    CompleteCalendarActivity,
    CreateCalendarActivity,
    DeleteCalendarActivity,
    Effect,
    EffectOutcome,
    InviteToEvent,
    ModifyCalendarActivity,
    PerformEffect,
    RecordHistory,
    RecordRemark,
    SendLetter,
)
from sales.opportunity import HistoryEntry, Opportunity, Remark
from sales.process import FoundProcess
from sales.results import ActionResult, CommandResult

Perform = Callable[[PerformEffect], Awaitable[EffectOutcome]]
"""Carries out a side effect with an outcome (an activity in the workflow)."""
Clock = Callable[[], datetime]
FindProcess = Callable[[str], Awaitable[FoundProcess]]
"""Looks a process up by id (an activity in the workflow)."""
FindUsers = Callable[[list[str]], Awaitable[list[str]]]
"""Of the user ids given, those that exist (an activity in the workflow)."""

CARRIED_BY: dict[type, Literal["perform", "history", "remark", "calendar"]] = {
    CreateCalendarActivity: "perform",
    SendLetter: "perform",
    InviteToEvent: "perform",
    RecordHistory: "history",
    RecordRemark: "remark",
    CompleteCalendarActivity: "calendar",
    CancelCalendarActivity: "calendar",
    DeleteCalendarActivity: "calendar",
    ModifyCalendarActivity: "calendar",
}
"""What carries out each kind of effect: `perform`, or the projection (the history entries,
the remarks and the changes to calendar activities that already exist)."""


@dataclass
class Changes:
    """What commands changed in the read model beyond the opportunity's row: written by the
    projection with the row. `weight` estimates their size as JSON, in bytes, from the text
    they carry (a batch is written before it grows past what one write may carry)."""

    history: list[HistoryEntry] = field(default_factory=list)
    calendar: list[CalendarChange] = field(default_factory=list)
    remarks: list[Remark] = field(default_factory=list)
    weight: int = 0

    def __iadd__(self, other: Changes) -> Changes:
        self.history += other.history
        self.calendar += other.calendar
        self.remarks += other.remarks
        self.weight += other.weight
        return self

    def add(self, effect: Effect) -> None:
        """A history entry, remark or calendar change to write."""
        if isinstance(effect, RecordHistory):
            self.history.append(effect.entry)
            self.weight += 400 + 4 * len(effect.entry.reason or "")
        elif isinstance(effect, RecordRemark):
            self.remarks.append(effect.remark)
            self.weight += 300 + 4 * len(effect.remark.text)
        else:
            self.calendar.append(effect)  # type: ignore[arg-type]
            texts = [getattr(effect, name, None) for name in _CALENDAR_TEXTS]
            self.weight += 800 + 4 * sum(len(text) for text in texts if text)


_CALENDAR_TEXTS = ("outcome", "notes", "subject", "assignee", "location")


@dataclass
class Done:
    """A command applied and its effects carried out, waiting for its projection."""

    state: Opportunity
    result: CommandResult
    changes: Changes


async def carry_out(
    state: Opportunity, effects: list[Effect], perform: Perform, clock: Clock
) -> tuple[Opportunity, list[ActionResult], Changes]:
    """Carry out the effects in order, settling each perform's outcome into the state; return
    the state, the settled action results and what the projection must write."""
    settled: list[ActionResult] = []
    changes = Changes()
    for effect in effects:
        if CARRIED_BY[type(effect)] != "perform":
            changes.add(effect)
        else:
            outcome = await perform(effect)  # type: ignore[arg-type]
            state, result = core.settle(state, effect, outcome, clock())  # type: ignore[arg-type]
            settled.append(result)
    return state, settled, changes


async def run_command(
    state: Opportunity,
    command: Command,
    perform: Perform,
    clock: Clock,
    find_process: FindProcess | None = None,
    find_users: FindUsers | None = None,
) -> Done:
    """Apply `command` to `state` and carry it through; raises `CommandRejected` (nothing
    changed) when the command cannot be applied. First `move_process` looks its process up
    with `find_process`, and a command naming users looks them up with `find_users`."""
    found = None
    if isinstance(command, MoveProcess) and find_process is not None:
        found = await find_process(command.process_id)
    users = None
    if (named := users_named(command)) and find_users is not None and state.status == "open":
        users = frozenset(await find_users(named))
    decision = core.apply(state, command, clock(), found, users)
    if decision.result.duplicate:
        return Done(state, decision.result, Changes())
    new, settled, changes = await carry_out(decision.state, decision.effects, perform, clock)
    follow = core.follow_through(state, new, clock())
    if follow is not None:
        new, more, more_changes = await carry_out(follow.state, follow.effects, perform, clock)
        settled += more
        changes += more_changes
    result = core.finish(new, decision.result, settled, follow.result if follow else None)
    return Done(new, result, changes)
