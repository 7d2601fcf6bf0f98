"""One change record per thing an applied command changed: what, from, to, who, when, why.
The core makes them for every command it applies, by comparing the opportunity before and
after; the details history, the outbox of events and the audit trail are built from them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from sales.opportunity import ActionState, Opportunity
from sales.validation import MAX_MESSAGE, IdText, LineText, MessageText, cut


class ChangeRecord(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, use_attribute_docstrings=True)

    command: IdText
    what: LineText
    """`stage`, `status`, `owner`, `name`, `process`, `team:<role>`, `action:<id>`,
    `activity:<id>`, `activity_due:<id>`, `activity_overdue:<id>`, `remark`,
    or the command's name when it changed nothing of these (an action's definition, an
    activity's details)."""
    from_: MessageText | None = Field(default=None, alias="from")
    to: MessageText | None = None
    by: IdText | None = None
    at: datetime
    why: MessageText | None = None


def records(
    command: str,
    before: Opportunity,
    after: Opportunity,
    *,
    by: str | None,
    at: datetime,
    why: str | None = None,
) -> list[ChangeRecord]:
    """What `command` changed from `before` to `after`, one record per thing."""
    changed: list[tuple[str, str | None, str | None]] = [
        (what, old, new)
        for what, old, new in (
            ("stage", before.current_stage, after.current_stage),
            ("status", before.status, after.status),
            ("owner", before.owner, after.owner),
            ("name", before.name, after.name),
            ("process", _process(before), _process(after)),
        )
        if old != new
    ]
    if before.team != after.team:
        for role in sorted(before.team.keys() | after.team.keys()):
            if before.team.get(role) != after.team.get(role):
                changed.append((f"team:{role}", before.team.get(role), after.team.get(role)))
    if before.stages is not after.stages:
        changed += _actions(before, after)
    if after.external_status != before.external_status and after.external_status is not None:
        external = after.external_status
        changed.append((f"external:{external.source}", external.reference, external.status))
    if after.remarks_added > before.remarks_added and after.remarks:
        changed.append(("remark", None, after.remarks[-1].text))
    if not changed:
        changed.append((command, None, None))
    reason = cut(why, MAX_MESSAGE) if why else None
    return [
        ChangeRecord(
            command=command,
            what=cut(what, 200),
            from_=_text(old),
            to=_text(new),
            by=by,
            at=at,
            why=reason,
        )
        for what, old, new in changed
    ]


def _process(state: Opportunity) -> str:
    return f"{state.process_id} v{state.process_version}"


def _actions(before: Opportunity, after: Opportunity) -> list[tuple[str, str | None, str | None]]:
    old = {a.definition.action_id: a for stage in before.stages for a in stage.actions}
    new = {a.definition.action_id: a for stage in after.stages for a in stage.actions}
    changed = []
    for action_id in [*old, *(i for i in new if i not in old)]:
        was, now = old.get(action_id), new.get(action_id)
        if was == now:
            continue
        was_status, now_status = _status(was), _status(now)
        if was_status != now_status:
            changed.append((f"action:{action_id}", was_status, now_status))
        changed += _activity(was, now)
        changed += _notices(was, now)
    return changed


def _notices(
    was: ActionState | None, now: ActionState | None
) -> list[tuple[str, str | None, str | None]]:
    """The linked calendar activity falling due or becoming overdue (a timer's notice)."""
    if now is None or now.activity_id is None:
        return []
    found: list[tuple[str, str | None, str | None]] = []
    for which in ("due", "overdue"):
        noted = getattr(now, f"activity_{which}_noted")
        before = getattr(was, f"activity_{which}_noted") if was else None
        if noted is not None and noted != before:
            found.append((f"activity_{which}:{now.activity_id}", None, noted.isoformat()))
    return found


def _activity(
    was: ActionState | None, now: ActionState | None
) -> list[tuple[str, str | None, str | None]]:
    """The linked calendar activity's status, when it changed (created, done, canceled,
    deleted): a thing of its own beside its action."""
    was_id, now_id = (was.activity_id if was else None), (now.activity_id if now else None)
    was_status = was.activity_status if was else None
    now_status = now.activity_status if now else None
    if was_id == now_id and was_status == now_status:
        return []
    if was_id is not None and was_id != now_id:  # deleted, or replaced by another
        found = [(f"activity:{was_id}", was_status, None)]
        return found + ([(f"activity:{now_id}", None, now_status)] if now_id else [])
    return [(f"activity:{now_id}", was_status, now_status)]


def _status(action: ActionState | None) -> str | None:
    if action is None:
        return None
    if action.completed:
        return "completed"
    if action.last_error is not None:
        return "failed"
    return "performed" if action.performed_at else "open"


def described(changed: list[ChangeRecord]) -> str:
    """The records in one line (`owner: ann → bob; action:call: open → completed`); empty when
    they name only their command (it changed nothing these records tell apart)."""
    return "; ".join(
        f"{record.what}: {record.from_ or '-'} → {record.to or 'deleted'}"
        for record in changed
        if record.what != record.command
    )


def _text(value: str | None) -> str | None:
    return None if value is None else cut(value, MAX_MESSAGE)
