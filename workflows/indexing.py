"""What operators see in the Temporal UI: the contract's search attributes, upserted at most
once a second, and the current details (markdown).

Each upsert is a history event and a write to the server's visibility store. A change within
`INDEX_AT_MOST_EVERY` of the last upsert waits for one timer (started by the first change
that has to wait), which then upserts everything changed meanwhile; a change after a quiet
second is upserted at once. Continuing as new and closing upsert whatever is still due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from runtime import search_attributes as sa
    from sales import value_rules
    from sales.opportunity import Opportunity

INDEX_AT_MOST_EVERY = timedelta(seconds=1)
FIX = {
    "no_address": "fix the contact (`contact modify`)",
    "unknown_contact": "add the contact",
    "unknown_template": "add the letter template",
    "template_error": "fix the letter template",
    "unknown_event": "add the event",
}
"""What an operator does about a failed action, by its code."""


class Indexing:
    """The search attributes as last upserted, and the timer of a change that waits."""

    def __init__(self, current: Callable[[], Opportunity | None]) -> None:
        self._current = current
        self._indexed: dict[str, Any] = {}
        self._indexed_at: datetime | None = None
        self._timer: asyncio.Task[None] | None = None

    def publish(self, state: Opportunity, *, due: bool = False) -> None:
        """Upsert the search attributes that changed (unless they must wait, and `due` is
        not set), and set the current details."""
        wanted: dict[str, Any] = {
            sa.OPPORTUNITY_STAGE.name: state.current_stage,
            sa.SALES_PROCESS.name: state.process_id,
            sa.OPPORTUNITY_STATUS.name: state.status,
            sa.CONTACT_ID.name: state.contact_id,
            sa.OPPORTUNITY_OWNER.name: state.owner,
            sa.OPEN_ACTIONS.name: state.open_actions(),
            sa.FAILED_ACTIONS.name: state.failed_actions(),
            sa.OPPORTUNITY_AMOUNT.name: float(state.amount) if state.amount is not None else None,
            sa.EXPECTED_CLOSE_DATE.name: _midnight(state.expected_close_date),
            sa.OPPORTUNITY_IDLE.name: state.idle_since is not None,
        }
        changed = {
            key.name: value
            for key in sa.ALL
            if self._indexed.get(key.name, ...) != (value := wanted[key.name])
        }
        if changed and not due and self._must_wait():
            if self._timer is None:
                self._timer = asyncio.ensure_future(self._when_due())
        elif changed:
            workflow.upsert_search_attributes([
                key.value_unset() if changed[key.name] is None else key.value_set(changed[key.name])
                for key in sa.ALL
                if key.name in changed
            ])  # fmt: skip
            self._indexed.update(changed)
            self._indexed_at = workflow.now()
        workflow.set_current_details(details(state, workflow.now()))

    def _must_wait(self) -> bool:
        return (
            self._indexed_at is not None and workflow.now() - self._indexed_at < INDEX_AT_MOST_EVERY
        )

    async def _when_due(self) -> None:
        assert self._indexed_at is not None
        await workflow.sleep(self._indexed_at + INDEX_AT_MOST_EVERY - workflow.now())
        self._timer = None
        state = self._current()
        if state is not None and state.status == "open":
            self.publish(state, due=True)


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(0), tzinfo=UTC)


def details(state: Opportunity, now: datetime) -> str:
    """The UI's current details (markdown): what the opportunity is doing, without payloads."""
    contact = (
        f"{state.contact_name} ({state.contact_id})" if state.contact_name else state.contact_id
    )
    name = f"{state.name} · " if state.name else ""
    lines = [
        f"**{name}{contact}**",
        f"**Stage:** {state.current_stage} (since {state.stage_entered_at:%Y-%m-%d %H:%M} UTC)"
        f" · **Status:** {state.status} · **Owner:** {state.owner or '-'}",
        f"**Process:** {state.process_id} v{state.process_version}",
        value_line(state),
    ]
    if state.idle_since is not None:
        lines.append(f"**Idle** since {state.idle_since:%Y-%m-%d %H:%M} UTC")
    overdue = value_rules.overdue(state, now)
    if overdue:
        lines.append(f"**Overdue activities ({len(overdue)}):**")
        lines += [f"- `{a.activity_id}` {a.title}, due {a.activity_starts_at:%Y-%m-%d %H:%M} UTC"
                  for a in overdue]  # fmt: skip
    current = state.stage_state(state.current_stage).actions
    open_actions = [a for a in current if not a.completed]
    lines.append(f"**Open actions ({len(open_actions)}):**")
    lines += [f"- {a.title} (`{a.action_id}`, {a.type})" for a in open_actions] or ["- none"]
    linked = [
        action
        for stage in state.stages
        for action in stage.actions
        if action.activity_id is not None
    ]
    if linked:
        lines.append(f"**Linked activities ({len(linked)}):**")
        lines += [
            f"- `{a.activity_id}` {a.title}: {a.activity_status or 'unknown'}"
            + (f", outcome {a.activity_outcome}" if a.activity_outcome else "")
            for a in linked
        ]
    failed = [action for stage in state.stages for action in stage.actions if action.last_error]
    if failed:
        lines.append(f"**Failed actions ({len(failed)}):**")
        lines += [
            f"- {a.type.capitalize()} `{a.action_id}` failed: {a.last_error.message}; "
            f"{FIX.get(a.last_error.code, 'fix the cause')} and perform it again"
            for a in failed
            if a.last_error is not None
        ]
    if state.dead_letters_count:
        lines.append(
            f"**Not written to the read model ({state.dead_letters_count}; "
            f"`opportunities verify {state.opportunity_id}` lists them):**"
        )
        lines += [f"- {letter.what}: {letter.why}" for letter in state.dead_letters]
    if state.rejected:
        last = state.rejected[-1]
        lines.append(
            f"**Last rejection:** `{last.command}` at {last.at:%Y-%m-%d %H:%M} UTC: {last.reason}"
        )
    return "\n".join(lines)


def value_line(state: Opportunity) -> str:
    """What it is worth and when it should close, as the UI shows it."""
    amount = f"{format(state.amount, ',f')} {state.currency}" if state.amount is not None else "-"
    closing = f"{state.expected_close_date:%Y-%m-%d}" if state.expected_close_date else "-"
    forecast = "" if state.include_in_forecast else " (not in the forecast)"
    return (
        f"**Amount:** {amount} · **Probability:** {state.probability}% · **Close:** {closing}"
        f" · **Forecast:** {state.forecast_category or '-'}{forecast}"
        + (f" · **Reason:** {state.close_reason}" if state.close_reason else "")
    )
