"""The sales-process rules: a command applied to an opportunity gives the new opportunity, the
effects to carry out, and the result to report. Pure functions over pydantic models: no Temporal,
no I/O, no clock (the caller passes `now`), so every rule is tested directly and replays exactly.

The shell makes one call per command: `run` applies it (its rule from `sales.registry`),
carries out its effects (a side effect with an outcome by the `perform` the shell gives, the
rest left for the projection as `Writes`), settles each outcome into the state, follows
through (the automatic advance) and returns the `Outcome`. What the command needs from
outside (a process, users) the shell looks up first, as `needs` says. An opening, a
reopening and the stage timers are carried out the same way (`carry_out`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from sales import action_rules, stage_rules, value_rules
from sales.authorization import Actor, Clearance, cleared
from sales.change_records import ChangeRecord, described, records
from sales.commands import Command
from sales.effects import Effect, EffectOutcome, PerformEffect, RecordHistory
from sales.errors import CommandRejected
from sales.events import events_of
from sales.opportunity import (
    MAX_DEAD_LETTERS,
    MAX_REASON,
    MAX_REJECTED,
    MAX_REJECTED_PAYLOAD,
    MAX_REQUEST_ID_CHARACTERS,
    MAX_REQUEST_IDS,
    ActionState,
    DeadLetter,
    Opportunity,
    Rejection,
    StageState,
    StartOpportunity,
)
from sales.process import SalesProcess
from sales.registry import LookedUp, Needs, declaration_of
from sales.results import MAX_RESULT_ACTIONS, ActionResult, CommandResult
from sales.validation import MAX_MESSAGE, cut, excerpt, json_size
from sales.writes import CARRIED_BY, Writes

Perform = Callable[[PerformEffect], Awaitable[EffectOutcome]]
"""Carries out a side effect with an outcome (an activity in the workflow)."""
Clock = Callable[[], datetime]


class Decision(BaseModel):
    """A rule's decision, before its effects are carried out."""

    state: Opportunity
    effects: list[Effect]
    result: CommandResult
    before: Opportunity | None = None
    """The state it changed (a reopening, a timer): what its change records compare with."""


@dataclass
class Outcome:
    """What a command (or an opening, a reopening, a timer) did: the new state, its result,
    what the projection writes, and a change record per thing it changed."""

    state: Opportunity
    result: CommandResult
    writes: Writes = field(default_factory=Writes)
    records: list[ChangeRecord] = field(default_factory=list)


def needs(state: Opportunity, command: Command) -> Needs:
    """What the shell must look up before `run`: nothing for a command already applied or an
    opportunity that is not open (it is acknowledged or rejected without)."""
    if state.status != "open" or state.has_applied(command.request_id):
        return Needs()
    return declaration_of(command).needs(command)


async def run(
    state: Opportunity,
    command: Command,
    looked_up: LookedUp,
    perform: Perform,
    clock: Clock,
    clearance: Clearance | None = None,
) -> Outcome:
    """Apply `command` and carry it through: its effects, the settling of each outcome, the
    automatic advance that may follow. Raises `CommandRejected` (nothing changed) when it
    cannot be applied, or its `clearance` does not allow it; the actor it clears is kept
    in the history entries and events it adds."""
    actor = None
    if clearance is not None:
        command, actor = cleared(clearance, declaration_of(command).name, command, state)
    decision = apply(state, command, clock(), looked_up)
    if decision.result.duplicate:
        return Outcome(state, decision.result)
    new, settled, writes = await _carried_out(decision.state, decision.effects, perform, clock)
    _note(state, new, command, decision.result.message, writes, clock())
    follow = follow_through(state, new, clock())
    if follow is not None:
        new, more, more_writes = await _carried_out(follow.state, follow.effects, perform, clock)
        settled += more
        writes += more_writes
    result = finish(new, decision.result, settled, follow.result if follow else None)
    why = getattr(command, "reason", None)
    changed = records(result.command, state, new, by=command.by, at=clock(), why=why)
    writes.add_events(events_of(new, state, changed, writes.details, actor))
    if actor is not None:
        _stamp(state, new, writes, actor)
    return Outcome(new, result, writes, changed)


def _note(
    before: Opportunity,
    new: Opportunity,
    command: Command,
    message: str,
    writes: Writes,
    now: datetime,
) -> None:
    """A history entry in the current stage for a `noted` command whose rule added none, saying
    what it changed (in place, before any automatic advance it causes)."""
    declaration = declaration_of(command)
    if not declaration.noted or new.history_entries != before.history_entries:
        return
    said = described(records(declaration.name, before, new, by=command.by, at=now))
    entry = stage_rules.note_in_history(new, now, command.by, said or message or declaration.name)
    writes.add(RecordHistory(entry=entry))


def _stamp(before: Opportunity | None, new: Opportunity, writes: Writes, actor: Actor) -> None:
    """The history entries the command (or the opening) added, with its actor (in place)."""
    last = before.history[-1].seq if before is not None and before.history else 0
    who = {"actor": actor.sub, "actor_service": actor.act, "verified": actor.verified}
    if not any(entry.seq > last for entry in new.history):
        return
    new.history = [e.model_copy(update=who) if e.seq > last else e for e in new.history]
    writes.history = [e.model_copy(update=who) if e.seq > last else e for e in writes.history]


async def carry_out(
    decision: Decision, perform: Perform, clock: Clock, actor: Actor | None = None
) -> Outcome:
    """Carry out what an opening, a reopening or a timer decided, with the events of what it
    changed; `actor`: who opened it, as authorization judged (kept in its history)."""
    state, _, writes = await _carried_out(decision.state, decision.effects, perform, clock)
    changed: list[ChangeRecord] = []
    if decision.before is not None:
        name = decision.result.command
        changed = records(name, decision.before, state, by=None, at=clock())
        writes.add_events(events_of(state, decision.before, changed, writes.details))
    if actor is not None:
        _stamp(decision.before, state, writes, actor)
    return Outcome(state, decision.result, writes, changed)


async def _carried_out(
    state: Opportunity, effects: list[Effect], perform: Perform, clock: Clock
) -> tuple[Opportunity, list[ActionResult], Writes]:
    """Carry out the effects in order, settling each perform's outcome into the state; return
    the state, the settled action results and what the projection must write."""
    settled: list[ActionResult] = []
    writes = Writes()
    for effect in effects:
        if CARRIED_BY[type(effect)] != "perform":
            writes.add(effect)
        else:
            outcome = await perform(effect)  # type: ignore[arg-type]
            state, result = settle(state, effect, outcome, clock())  # type: ignore[arg-type]
            settled.append(result)
    return state, settled, writes


def open_opportunity(
    start: StartOpportunity,
    process: SalesProcess,
    now: datetime,
    *,
    contact_name: str | None = None,
    day_seconds: int = 86400,
    currency: str = "USD",
) -> Decision:
    """The opportunity as it is created: in its initial stage, with one `start` history entry."""
    definition = process.definition
    stage = start.stage or definition.stages[0].name
    if definition.stage(stage) is None:
        raise CommandRejected(
            f"unknown stage {stage!r} for process {definition.process_id!r}; "
            f"stages are {definition.stage_names()}",
            code="unknown_stage",
        )
    state = Opportunity(
        opportunity_id=start.opportunity_id,
        contact_id=start.contact_id,
        contact_name=contact_name,
        name=start.name or contact_name,
        owner=start.owner or definition.default_owner,
        process_id=definition.process_id,
        process_version=process.version,
        process=definition,
        current_stage=stage,
        stage_entered_at=now,
        created_at=now,
        stages=[
            StageState(name=s.name, actions=[ActionState(definition=a) for a in s.actions])
            for s in definition.stages
        ],
    )
    state.day_seconds = day_seconds
    effects = stage_rules.enter_stage(state, stage, now, source="start", by=start.by, reason=None)
    value_rules.open_value(state, start, currency)
    return Decision(
        state=state,
        effects=effects,
        result=_result(state, "start", None, f"opened in stage {stage!r}"),
    )


def _copy(state: Opportunity, *, stages: bool = True) -> Opportunity:
    """The state to change, copied as deep as the rules change things in place: each stage and
    each action state (their scalars are set; not with `stages=False`, for a rule that leaves
    them alone), but not the action definitions (replaced whole by `modify_action`) nor
    `history`, `rejected`, `applied_request_ids` (always replaced by new lists) nor the
    process definition (never changed), so that a command's cost does not grow with the run
    (docs/decisions/copy-only-what-the-rules-change.md)."""
    if not stages:
        return state.model_copy()
    copied = [
        stage.model_copy(update={"actions": [action.model_copy() for action in stage.actions]})
        for stage in state.stages
    ]
    return state.model_copy(update={"stages": copied})


def check(state: Opportunity, command: Command) -> None:
    """Raise `CommandRejected` if the command cannot be applied to this state; change nothing.
    A command that needs a process is checked as far as the state goes (the process is
    looked up when it is applied); users it names are not checked here."""
    if declaration_of(command).needs(command).process_id is not None:
        if not state.has_applied(command.request_id):
            stage_rules.require_open(state)
        return
    apply(state, command, state.stage_entered_at)


def apply(
    state: Opportunity, command: Command, now: datetime, looked_up: LookedUp | None = None
) -> Decision:
    """Apply a command. Raises `CommandRejected` (with the state untouched) when it is invalid.
    What it needs looked up (`needs`) comes in `looked_up`: the process it moves to, and the
    users it names that exist (unchecked when they were not looked up).

    Any other error of a rule is a defect; it rejects the command too (`internal_error`), so
    that no input can fail the workflow task that applies it again and again."""
    try:
        return _apply(state, command, now, looked_up or LookedUp())
    except CommandRejected:
        raise
    except Exception as error:
        raise CommandRejected(
            f"{declaration_of(command).name} could not be applied: {type(error).__name__} in the "
            "sales rules (a defect; nothing was changed)",
            code="internal_error",
        ) from error


def _apply(state: Opportunity, command: Command, now: datetime, looked_up: LookedUp) -> Decision:
    declaration = declaration_of(command)
    name = declaration.name
    if state.has_applied(command.request_id):
        return Decision(
            state=state,
            effects=[],
            result=_result(state, name, command.request_id, "already applied", duplicate=True),
        )
    stage_rules.require_open(state)
    if looked_up.users is not None:
        named = declaration.needs(command).user_ids
        missing = [user for user in named if user not in looked_up.users]
        if missing:
            raise CommandRejected(
                f"unknown user {missing[0]!r}; `opportunities user add` adds one",
                code="unknown_user",
            )
    new = _copy(state, stages=not declaration.leaves_stages)
    ruling = declaration.rule(new, command, now, looked_up)
    new.revision += 1
    new.last_command_at = now
    new.idle_since = None  # any command clears it
    if command.request_id is not None:
        remember(new, command.request_id)
    result = _result(new, name, command.request_id, ruling.message)
    result.actions = ruling.actions
    return Decision(state=new, effects=ruling.effects, result=result)


def settle(
    state: Opportunity, effect: PerformEffect, outcome: EffectOutcome, now: datetime
) -> tuple[Opportunity, ActionResult]:
    """The state after a perform effect had `outcome` (activity created, letter sent, ...)."""
    new = _copy(state)
    return new, action_rules.settle(new, effect, outcome, now)


def follow_through(before: Opportunity, state: Opportunity, now: datetime) -> Decision | None:
    """What follows a command once its effects are settled: the automatic advance when it
    completed the last open action of the stage (None when nothing follows)."""
    if stage_rules.advance_target(before, state) is None:
        return None  # most commands: no copy needed to find that out
    new = _copy(state)
    effects = stage_rules.automatic_advance(before, new, now)
    new.revision += 1
    message = f"moved automatically from {state.current_stage!r} to {new.current_stage!r}"
    return Decision(state=new, effects=effects, result=_result(new, "advance", None, message))


def next_deadline(state: Opportunity) -> datetime | None:
    """When the next stage timer fires (None: no timer runs in this stage)."""
    return stage_rules.next_deadline(state)


def fire_timers(state: Opportunity, now: datetime) -> Decision | None:
    """The stage timers due at `now`: a follow-up activity, or the move to the next stage."""
    deadline = next_deadline(state)
    if deadline is None or deadline > now:
        return None  # nothing due: no copy needed to find that out
    new = _copy(state)
    ruling = stage_rules.fire_timers(new, now)
    if ruling is None:
        return None
    new.revision += 1
    return Decision(
        state=new,
        effects=ruling.effects,
        result=_result(new, "timer", None, ruling.message),
        before=state,
    )


def reopen(state: Opportunity, stage: str, by: str | None, now: datetime) -> Decision:
    """A won or lost opportunity opened again in `stage` (history source `reopened`)."""
    new = _copy(state)
    ruling = stage_rules.reopen(new, stage, by, now)
    new.revision += 1
    new.last_command_at = now
    result = _result(new, "reopen", None, ruling.message)
    result.actions = ruling.actions
    return Decision(state=new, effects=ruling.effects, result=result, before=state)


def note_dead_letters(state: Opportunity, refused: list[DeadLetter], now: datetime) -> Opportunity:
    """The state noting parts of its projection the read model refused (the newest
    `MAX_DEAD_LETTERS`; all are in the read model's `dead_letters`)."""
    new = state.model_copy()
    noted = [letter.model_copy(update={"at": letter.at or now}) for letter in refused]
    new.dead_letters = [*state.dead_letters, *noted][-MAX_DEAD_LETTERS:]
    new.dead_letters_count = state.dead_letters_count + len(refused)
    return new


def finish(
    state: Opportunity,
    result: CommandResult,
    settled: list[ActionResult],
    followed: CommandResult | None = None,
) -> CommandResult:
    """The command's result once its effects are settled (and what followed it, if anything)."""
    actions = [*result.actions, *settled][:MAX_RESULT_ACTIONS]
    message = result.message or "; ".join(f"{a.action_id}: {a.outcome}" for a in actions)
    if followed is not None:
        message += f"; {followed.message}"
    return result.model_copy(
        update={
            "actions": actions,
            "created_activities": [
                a.activity_id for a in actions if a.outcome == "activity_created" and a.activity_id
            ],
            "message": cut(message, MAX_MESSAGE),
            "current_stage": state.current_stage,
            "status": state.status,
        }
    )


def reject(state: Opportunity, name: str, payload: object, rejected: CommandRejected,
           now: datetime) -> Opportunity:  # fmt: skip
    """Keep a rejected signal in `rejected` (the newest `MAX_REJECTED`, each with at most
    `MAX_REJECTED_PAYLOAD` characters of its payload); nothing else changes."""
    return reject_all(state, [(name, payload, rejected)], now)


def reject_all(
    state: Opportunity, signals: list[tuple[str, object, CommandRejected]], now: datetime
) -> Opportunity:
    """Keep rejected signals (name, payload, rejection) in `rejected`, as `reject` does, in
    one copy of the state."""
    records = [
        Rejection(
            command=name[:200],
            code=rejected.code,
            reason=cut(rejected.reason, MAX_REASON),
            payload=payload[:MAX_REJECTED_PAYLOAD]
            if isinstance(payload, str)
            else excerpt(payload, MAX_REJECTED_PAYLOAD),
            at=now,
        )
        for name, payload, rejected in signals[-MAX_REJECTED:]
    ]
    new = state.model_copy()
    new.rejected = [*state.rejected, *records][-MAX_REJECTED:]
    return new


KEEP_HISTORY = 10
"""History entries `trim` always keeps (the newest)."""
KEEP_REMARKS = 1


def trim(state: Opportunity, excess: int) -> Opportunity:
    """A copy of the state about `excess` bytes (as JSON) smaller: without its oldest
    rejections, then its oldest request ids, then its oldest history entries and remarks (the
    newest `KEEP_HISTORY` and `KEEP_REMARKS` stay; every one is in the read model). For a
    state that has grown past what a run may carry or a query may return."""
    rejected, excess = _drop_oldest(state.rejected, excess)
    request_ids, excess = _drop_oldest(state.applied_request_ids, excess)
    characters = sum(map(len, request_ids))
    history, excess = _keep_newest(state.history, excess, KEEP_HISTORY)
    remarks, excess = _keep_newest(state.remarks, excess, KEEP_REMARKS)
    return state.model_copy(
        update={
            "rejected": rejected,
            "applied_request_ids": request_ids,
            "request_id_characters": characters,
            "history": history,
            "remarks": remarks,
        }
    )


def _keep_newest(items: list[Any], excess: int, keep: int) -> tuple[list[Any], int]:
    if excess <= 0 or len(items) <= keep:
        return items, excess
    older, excess = _drop_oldest(items[:-keep], excess)
    return [*older, *items[-keep:]], excess


def _drop_oldest(items: list[Any], excess: int) -> tuple[list[Any], int]:
    """`items` without as many of the first ones as make up `excess` bytes; what is left of
    `excess`."""
    start = 0
    while excess > 0 and start < len(items):
        excess -= json_size(_jsonable(items[start])) + 1
        start += 1
    return items[start:], excess


def _jsonable(item: Any) -> Any:
    return item.model_dump(mode="json") if isinstance(item, BaseModel) else item


def remember(state: Opportunity, request_id: str) -> None:
    """Add an applied request id to the (copied) state: the newest `MAX_REQUEST_IDS` are
    kept, and no more than `MAX_REQUEST_ID_CHARACTERS` of them in all (their running total
    kept beside them, so that a command's cost does not grow with the ids remembered)."""
    kept = [*state.applied_request_ids, request_id]
    total = state.request_id_characters + len(request_id)
    start = max(0, len(kept) - MAX_REQUEST_IDS)
    total -= sum(map(len, kept[:start]))
    while total > MAX_REQUEST_ID_CHARACTERS:
        total -= len(kept[start])
        start += 1
    state.applied_request_ids = kept[start:] if start else kept
    state.request_id_characters = total


def _result(
    state: Opportunity,
    name: str,
    request_id: str | None,
    message: str,
    *,
    duplicate: bool = False,
) -> CommandResult:
    return CommandResult(
        command=name,
        request_id=request_id,
        duplicate=duplicate,
        message=cut(message, MAX_MESSAGE),
        current_stage=state.current_stage,
        status=state.status,
    )


def replay_history(history: list[Any]) -> str | None:
    """The stage the history ends in: what the current stage must always equal (a history
    whose oldest entries were evicted replays from the first one kept)."""
    stage: str | None = history[0].from_stage if history else None
    for entry in history:
        if entry.from_stage != stage and entry.source != "start":
            raise ValueError(
                f"history entry {entry.seq} leaves {entry.from_stage!r}, not {stage!r}"
            )
        stage = entry.to_stage
    return stage
