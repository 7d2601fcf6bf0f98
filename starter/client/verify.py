"""Does the read model say what the workflow says? `opportunities verify` compares each
opportunity's state (its `state` query, or a closed run's result) with its rows in
PostgreSQL: the opportunity, its stage history, its calendar activities, letters and
invitations. Run it on quiet opportunities: a command applied a moment ago may not be
written yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from sales.opportunity import ActionState, Opportunity
from sales.process import CalendarAction, EventAction, LetterAction
from starter.client import OpportunitiesClient
from store import calendar, events, letters, opportunities

SUMMARY_FIELDS = ["contact_id", "process_id", "process_version", "name", "owner", "status",
                  "current_stage", "stage_entered_at", "closed_at", "open_actions",
                  "failed_actions", "revision", "amount", "currency", "won_amount",
                  "expected_close_date", "probability", "forecast_category",
                  "include_in_forecast", "close_reason", "idle_since"]  # fmt: skip
HISTORY_FIELDS = ["at", "from_stage", "to_stage", "source", "by", "reason",
                  "canceled_activities", "created_activities", "left_at",
                  "duration_seconds"]  # fmt: skip


UNCHECKED = "could not check: "
"""How the difference of an opportunity that could not be checked begins."""


@dataclass
class Verdict:
    opportunity_id: str
    compared: bool
    """False when there was nothing to compare with (no workflow, or it failed or was
    terminated, and no row either; `note` says why), or when it could not be checked: its
    one difference then says why (`could not check: ...`)."""
    differences: list[str]
    note: str = ""


async def verify(client: OpportunitiesClient, pool: asyncpg.Pool, opportunity_id: str) -> Verdict:
    """Every difference between the opportunity's workflow state and its read model. What
    keeps it from being checked (a query refused or timed out, a run that failed, a row that
    cannot be read, a database error) is its one difference, never an exception, so that
    checking many goes on past it."""
    try:
        state, note = await _state(client, pool, opportunity_id)
    except Exception as error:  # whatever it is, it is this opportunity's, not the others'
        return _unchecked(opportunity_id, f"its workflow cannot be read ({_reason(error)})")
    try:
        row = await opportunities.get_opportunity(pool, opportunity_id)
        if state is None:
            if row is None:
                return Verdict(opportunity_id, False, [], note)
            return _unchecked(opportunity_id, f"{note}, but the read model has its row")
        found = _summary(state, row)
        found += [
            f"not written to the read model: {letter.what}: {letter.why}"
            for letter in await opportunities.dead_letters(pool, opportunity_id)
        ]
        if row is not None:
            found += await _history(pool, state)
            found += await _remarks(pool, state)
            found += await _calendar(pool, state)
            found += await _letters(pool, state)
            found += await _invitations(pool, state)
    except Exception as error:  # a row asyncpg cannot decode, the database gone, ...
        return _unchecked(opportunity_id, f"its read model cannot be read ({_reason(error)})")
    return Verdict(opportunity_id, True, found)


def _unchecked(opportunity_id: str, reason: str) -> Verdict:
    return Verdict(opportunity_id, False, [UNCHECKED + reason], reason)


def _reason(error: BaseException) -> str:
    """The error's type and the first line of its message, cut short."""
    lines = str(error).strip().splitlines()
    message = lines[0][:300] if lines else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


async def _state(
    client: OpportunitiesClient, pool: asyncpg.Pool, opportunity_id: str
) -> tuple[Opportunity | None, str]:
    """The state to compare: the running run's, else that of the run the read model names (a
    start refused over a closed opportunity's id makes a later, failed run)."""
    handle = client.handle(opportunity_id)
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None, "no workflow"
        raise
    if description.status == WorkflowExecutionStatus.RUNNING:
        return await client.state(opportunity_id), ""
    found = await opportunities.find_run(pool, opportunity_id)
    if found is not None and found[1] is not None:
        handle = client.handle(opportunity_id, found[1])
        description = await handle.describe()
    status = description.status
    if status == WorkflowExecutionStatus.COMPLETED:
        result = await client.temporal.get_workflow_handle(
            handle.id, run_id=handle.run_id, result_type=Opportunity
        ).result()
        return result, ""
    return None, f"workflow {status.name.lower().replace('_', ' ') if status else 'unknown'}"


def _summary(state: Opportunity, row: Any) -> list[str]:
    if row is None:
        return ["no row in opportunities"]
    wanted = state.summary()
    return [
        f"opportunities.{name}: workflow {getattr(wanted, name)!r}, "
        f"read model {getattr(row, name)!r}"
        for name in SUMMARY_FIELDS
        if getattr(wanted, name) != getattr(row, name)
    ]


async def _history(pool: asyncpg.Pool, state: Opportunity) -> list[str]:
    """The workflow keeps the newest entries (it may have trimmed the oldest); each of them
    must be in the read model as it is, and the read model has none beyond them."""
    rows = {
        entry.seq: entry for entry in await opportunities.get_history(pool, state.opportunity_id)
    }
    found = []
    for entry in state.history:
        row = rows.get(entry.seq)
        if row is None:
            found.append(f"history #{entry.seq} ({entry.to_stage}) missing")
            continue
        for name in HISTORY_FIELDS:
            if getattr(entry, name) != getattr(row, name):
                found.append(
                    f"history #{entry.seq}.{name}: workflow {getattr(entry, name)!r}, "
                    f"read model {getattr(row, name)!r}"
                )
    last = state.history[-1].seq if state.history else 0
    found += [f"history #{seq} is not in the workflow" for seq in sorted(rows) if seq > last]
    return found


async def _remarks(pool: asyncpg.Pool, state: Opportunity) -> list[str]:
    """The remarks the workflow keeps are in the read model as they are, and it has none the
    workflow has not made."""
    rows = {r.seq: r for r in await opportunities.list_remarks(pool, state.opportunity_id)}
    found = []
    for remark in state.remarks:
        row = rows.get(remark.seq)
        if row is None:
            found.append(f"remark #{remark.seq} missing")
        elif row != remark:
            found.append(f"remark #{remark.seq}: workflow {remark!r}, read model {row!r}")
    found += [f"remark #{seq} is not in the workflow" for seq in rows if seq > state.remarks_added]
    return found


def _actions(state: Opportunity) -> dict[str, ActionState]:
    return {action.action_id: action for stage in state.stages for action in stage.actions}


def _known_generation(state: Opportunity, action_id: str) -> int:
    action = _actions(state).get(action_id)
    retired = state.retired_generations.get(action_id, 0)
    return max(retired, action.generation if action else 0)


async def _calendar(pool: asyncpg.Pool, state: Opportunity) -> list[str]:
    rows = {
        (r.action_id, r.generation): r for r in await calendar.list_for(pool, state.opportunity_id)
    }
    found = []
    linked = set()
    for action in _actions(state).values():
        if not isinstance(action.definition, CalendarAction) or action.activity_id is None:
            continue
        key = (action.action_id, action.generation)
        linked.add(key)
        row = rows.get(key)
        if row is None:
            found.append(f"calendar activity {action.activity_id} missing")
        elif row.status != action.activity_status:
            found.append(
                f"calendar activity {action.activity_id}: workflow {action.activity_status}, "
                f"read model {row.status}"
            )
        elif row.status == "done" and row.outcome != action.activity_outcome:
            found.append(
                f"calendar activity {action.activity_id}.outcome: workflow "
                f"{action.activity_outcome!r}, read model {row.outcome!r}"
            )
    for key, row in sorted(rows.items()):
        if row.unreadable is not None:
            found.append(f"calendar activity {row.activity_id} holds {row.unreadable}")
        if row.status == "active" and key not in linked:
            found.append(f"calendar activity {row.activity_id} is active but not linked")
        if row.generation > _known_generation(state, row.action_id):
            found.append(f"calendar activity {row.activity_id} is not in the workflow")
    return found


async def _letters(pool: asyncpg.Pool, state: Opportunity) -> list[str]:
    rows = {
        (r.action_id, r.generation): r
        for r in await letters.list_letters(pool, state.opportunity_id)
    }
    found = []
    for action in _actions(state).values():
        if not _performed(action, LetterAction):
            continue
        row = rows.get((action.action_id, action.generation))
        if row is None or row.sent_at is None:
            found.append(f"letter of {action.action_id} (#{action.generation}) not sent")
    found += [
        f"letter {row.letter_id} is not in the workflow"
        for (action_id, generation), row in sorted(rows.items())
        if generation > _known_generation(state, action_id)
    ]
    return found


async def _invitations(pool: asyncpg.Pool, state: Opportunity) -> list[str]:
    found = []
    for action in _actions(state).values():
        if not _performed(action, EventAction):
            continue
        event_id = action.definition.event_id  # type: ignore[union-attr]
        if not await events.is_invited(pool, event_id, state.contact_id):
            found.append(f"the contact is not on the invitee list of event {event_id}")
    return found


def _performed(action: ActionState, kind: type) -> bool:
    """Whether the action's last perform succeeded (its side effect must exist)."""
    return (
        isinstance(action.definition, kind)
        and action.performed_at is not None
        and action.last_error is None
    )
