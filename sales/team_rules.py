"""The opportunity as a whole, beside its stages: its team (who plays which role), its
remarks, and its deletion."""

from __future__ import annotations

from datetime import datetime

from sales.commands import AddRemark, Assign, DeleteOpportunity
from sales.effects import RecordHistory, RecordRemark
from sales.errors import CommandRejected
from sales.opportunity import MAX_REMARKS, Opportunity, Remark
from sales.results import Ruling
from sales.stage_rules import cancel_activities, every_active_activity, note_in_history


def assign(state: Opportunity, command: Assign, now: datetime) -> Ruling:
    roles = state.process.roles()
    if command.role not in roles:
        raise CommandRejected(
            f"no action of process {state.process_id!r} names role {command.role!r}; "
            f"its roles are {roles}",
            code="unknown_role",
        )
    if state.team.get(command.role) == command.user:
        raise CommandRejected(f"{command.user!r} is the {command.role} already", code="not_allowed")
    state.team = {**state.team, command.role: command.user}
    entry = note_in_history(state, now, command.by, f"{command.role}: {command.user}")
    return Ruling(f"{command.role} is {command.user!r}", effects=[RecordHistory(entry=entry)])


def add_remark(state: Opportunity, command: AddRemark, now: datetime) -> Ruling:
    """A dated remark, written to the read model; the state keeps the newest `MAX_REMARKS`."""
    state.remarks_added += 1
    remark = Remark(seq=state.remarks_added, at=now, by=command.by, text=command.text)
    state.remarks = [*state.remarks, remark][-MAX_REMARKS:]
    return Ruling(f"remark {remark.seq} added", effects=[RecordRemark(remark=remark)])


def delete_opportunity(state: Opportunity, command: DeleteOpportunity, now: datetime) -> Ruling:
    """Ends it as `deleted`, where it stands; its active calendar activities are canceled."""
    effects, canceled = cancel_activities(state, every_active_activity(state))
    entry = note_in_history(state, now, command.by, f"deleted: {command.reason}")
    entry.canceled_activities = canceled
    state.status = "deleted"
    state.closed_at = now
    return Ruling("deleted", effects=[*effects, RecordHistory(entry=entry)])
