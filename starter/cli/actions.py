"""Stage actions and their calendar activities: perform (with the details the user enters),
complete, add, modify and delete actions; record an outcome, change, show and list
calendar activities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from sales.action_rules import stage_moved_to
from sales.commands import (
    AddAction,
    CompleteActions,
    DeleteAction,
    DeleteActivity,
    ModifyAction,
    ModifyActivity,
    PerformActions,
    RecordOutcome,
)
from sales.opportunity import Opportunity
from starter.cli.common import (
    ColumnsOption,
    JsonFlag,
    UserError,
    actor,
    database,
    errors,
    load_document,
    new_app,
    new_table,
    print_fields,
    print_json,
    print_table,
    run,
)
from starter.cli.send import (
    ByOption,
    command_of,
    opportunity_of,
    require_users,
    send,
    state_of,
)
from starter.cli.stage_choices import (
    ask_outcome,
    ask_the_rest,
    cancel_choice,
    details_of,
    interactive,
    outcome_wanted,
    when,
)
from starter.client.read_model import ReadModel

app = new_app("Stage actions.")
action_app = new_app("Actions of one opportunity (its own copy of the process's actions).")
activity_app = new_app("Calendar activities linked to actions.")

CancelOption = Annotated[
    bool | None,
    typer.Option(
        "--cancel-open-activities/--keep-open-activities",
        help="When the opportunity moves on: cancel the open activities of the stage left "
        "(default: the process's cancel_on_advance).",
    ),
]


# --- opportunities ----------------------------------------------------------------------------


DueOption = Annotated[
    str | None,
    typer.Option("--due", help="When the calendar activity starts: 2027-01-05T10:00 (local "
                 "time) or with a zone."),
]  # fmt: skip
DurationOption = Annotated[
    int | None, typer.Option("--duration", help="Its length in minutes.", min=1, max=10080)
]
LetterMethodOption = Annotated[
    str | None,
    typer.Option(
        "--letter-method",
        help="email, document or both (the letters' correspondence option; default the action's).",
    ),
]
SubjectOption = Annotated[str | None, typer.Option("--subject")]
AssigneeOption = Annotated[str | None, typer.Option("--assignee", help="Who does it (a user).")]
NotesOption = Annotated[str | None, typer.Option("--notes")]
LocationOption = Annotated[str | None, typer.Option("--location")]


def _details(
    due: str | None, duration: int | None, subject: str | None, assignee: str | None,
    notes: str | None, location: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The calendar activity details given on the command line."""
    return details_of({
        "due": due, "duration": duration, "subject": subject, "assignee": assignee,
        "notes": notes, "location": location,
    })  # fmt: skip


@app.command("perform")
def perform(
    opportunity_id: str,
    action_ids: Annotated[list[str], typer.Argument(help="The tagged actions.")],
    due: DueOption = None,
    duration: DurationOption = None,
    subject: SubjectOption = None,
    assignee: AssigneeOption = None,
    notes: NotesOption = None,
    location: LocationOption = None,
    letter_method: LetterMethodOption = None,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Perform actions: create the calendar activity (with the details given here), send the
    letter (as --letter-method says), invite to the event."""
    details = _details(due, duration, subject, assignee, notes, location)
    if assignee is not None:
        run(lambda: require_users([assignee]))
    overrides: dict[str, dict[str, Any]] = {}
    if details or letter_method:
        state = run(lambda: state_of(opportunity_id))
        for action_id in action_ids:
            found = state.find_action(action_id)
            kind = found[1].type if found else None
            if kind == "calendar" and details:
                overrides[action_id] = details
            elif kind == "letter" and letter_method:
                overrides[action_id] = {"method": letter_method}
    command = command_of(PerformActions, action_ids=action_ids, overrides=overrides, by=by)
    send(opportunity_id, command, as_json)


@app.command("complete")
def complete(
    opportunity_id: str,
    action_ids: Annotated[list[str], typer.Argument(help="The tagged actions.")],
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="Outcome of the linked activity.")
    ] = None,
    notes: Annotated[str | None, typer.Option("--notes")] = None,
    stage: Annotated[
        str | None, typer.Option("--stage", help="Also move the opportunity to this stage.")
    ] = None,
    cancel: CancelOption = None,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Mark actions completed (a calendar action's linked activity becomes done). With one
    action whose activity tracks outcomes, asked for the outcome in a terminal; when the
    stage changes (--stage, or the outcome's stage), asked whether to cancel the open
    activities of the stage left and for the details of the activities the new stage
    creates."""

    def prepare() -> CompleteActions:
        # Asked outside the event loop, where Ctrl-C interrupts a question.
        state = run(lambda: state_of(opportunity_id))
        chosen = outcome
        found = state.find_action(action_ids[0]) if len(set(action_ids)) == 1 else None
        if chosen is None and found is not None and outcome_wanted(state, found[1]):
            if not interactive():
                return _complete(chosen, None, {})  # refused with the outcomes listed
            chosen = ask_outcome(state, found[1])
        target = stage_moved_to(state, chosen if len(set(action_ids)) == 1 else None, stage)
        done = {found[1].activity_id for i in action_ids if (found := state.find_action(i))}
        return _complete(chosen, *_entering(state, target, cancel, done))

    def _complete(
        chosen: str | None, cancelled: bool | None, overrides: dict[str, Any]
    ) -> CompleteActions:
        return command_of(
            CompleteActions, action_ids=action_ids, outcome=chosen, notes=notes, stage=stage,
            cancel_open_activities=cancelled, overrides=overrides, by=by,
        )  # fmt: skip

    send(opportunity_id, prepare(), as_json)


def _entering(
    state: Opportunity, target: str | None, cancel: bool | None, done: set[str | None]
) -> tuple[bool | None, dict[str, Any]]:
    """For a command that may change the stage: the cancel choice (of the open activities
    but those it marks `done`) and the details of the activities the new stage creates
    (asked in a terminal)."""
    if target is None or state.process.stage(target) is None:
        return cancel, {}  # it stays, or the workflow refuses the stage
    finished = frozenset(i for i in done if i is not None)
    choice = cancel_choice(state, target, cancel, done=finished)
    return choice, ask_the_rest(state, target, {})


@action_app.command("add")
def action_add(
    opportunity_id: str,
    stage: Annotated[str, typer.Option("--stage", help="The stage to add it to.")],
    file: Annotated[Path, typer.Option("--file", help="The action definition (JSON or YAML).")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Add an action to this opportunity only."""
    document = load_document(file)
    send(opportunity_id, command_of(AddAction, stage=stage, action=document, by=by), as_json)


@action_app.command("modify")
def action_modify(
    opportunity_id: str,
    action_id: str,
    file: Annotated[Path, typer.Option("--file", help="The fields to change (JSON or YAML).")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Change fields of an action of this opportunity only."""
    changes = load_document(file)
    command = command_of(ModifyAction, action_id=action_id, changes=changes, by=by)
    send(opportunity_id, command, as_json)


@action_app.command("delete")
def action_delete(
    opportunity_id: str, action_id: str, by: ByOption = None, as_json: JsonFlag = False
) -> None:
    """Delete an action from this opportunity only."""
    send(opportunity_id, DeleteAction(action_id=action_id, by=by or actor()), as_json)


@activity_app.command("done")
def activity_done(
    activity_id: str,
    outcome: Annotated[str | None, typer.Option("--outcome")] = None,
    notes: Annotated[str | None, typer.Option("--notes")] = None,
    stage: Annotated[
        str | None, typer.Option("--stage", help="Also move the opportunity to this stage.")
    ] = None,
    cancel: CancelOption = None,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Mark a linked calendar activity done, recording its outcome; completes its action.
    Asked for the outcome when it is needed and not given (from the process's list of the
    activity's kind, when it has one)."""
    opportunity_id = run(lambda: opportunity_of(activity_id))

    def prepare() -> RecordOutcome:
        state = run(lambda: state_of(opportunity_id))
        chosen = outcome
        found = state.find_calendar_activity(activity_id)
        if chosen is None and found is not None and interactive():
            if outcome_wanted(state, found[1]):
                chosen = ask_outcome(state, found[1])
        cancelled: bool | None = cancel
        overrides: dict[str, Any] = {}
        if found is not None and found[1].activity_status == "active":
            target = stage_moved_to(state, chosen, stage)
            cancelled, overrides = _entering(state, target, cancel, {activity_id})
        return command_of(
            RecordOutcome, activity_id=activity_id, outcome=chosen, notes=notes, stage=stage,
            cancel_open_activities=cancelled, overrides=overrides, by=by,
        )  # fmt: skip

    send(opportunity_id, prepare(), as_json)


@activity_app.command("delete")
def activity_delete(activity_id: str, by: ByOption = None, as_json: JsonFlag = False) -> None:
    """Delete a linked calendar activity, so that its action can create another."""
    command = DeleteActivity(activity_id=activity_id, by=by or actor())
    send(run(lambda: opportunity_of(activity_id)), command, as_json)


@activity_app.command("list")
def activity_list(
    opportunity_id: Annotated[str | None, typer.Option("--opportunity")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee", help="One user's calendar.")] = None,
    due_from: Annotated[
        str | None, typer.Option("--due-from", help="Starting at or after (ISO-8601).")
    ] = None,
    due_before: Annotated[
        str | None, typer.Option("--due-before", help="Starting before (ISO-8601).")
    ] = None,
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only the active ones past their due time.")
    ] = False,
    due_within: Annotated[
        str | None,
        typer.Option("--due-within", help="Only the active ones due in this period: 7d, 12h."),
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Of the opportunities of this owner.")
    ] = None,
    columns: ColumnsOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Calendar activities (the product's SmartCalendar), soonest first."""
    since = when("--due-from", due_from)
    until = when("--due-before", due_before)
    now = datetime.now(UTC)
    if overdue and due_within:
        raise UserError("give one of --overdue and --due-within")
    if overdue:
        until = min(until, now) if until else now
    if due_within is not None:
        until = now + period(due_within)
        since = max(since, now) if since else now
    active = overdue or due_within is not None

    async def work() -> None:
        async with database() as pool:
            found = await ReadModel(pool).calendar_activities(
                opportunity_id, assignee=assignee, due_from=since, due_before=until,
                active=active, owner=owner,
            )  # fmt: skip
        if as_json:
            print_json(found)
            return
        table = new_table("activity", "opportunity", "kind", "subject", "starts", "assignee",
                          "status", "outcome")  # fmt: skip
        for a in found:
            table.add_row(
                a.activity_id,
                a.opportunity_id,
                a.kind,
                a.subject,
                _time(a.starts_at, "%Y-%m-%d %H:%M"),
                a.assignee or "",
                a.status,
                a.outcome or "",
            )
        print_table(table, view="activity list", columns=columns)
        for a in found:
            if a.unreadable:
                errors.print(f"{a.activity_id} holds {a.unreadable}, {UNREADABLE}")

    run(work)


UNREADABLE = "a time outside the dates this program can read"
PERIOD_UNITS = {"d": 86400, "h": 3600, "m": 60}


def period(text: str) -> timedelta:
    """A period such as `7d`, `12h` or `30m` (at most ten years)."""
    amount, unit = text[:-1], text[-1:]
    if not amount.isdigit() or unit not in PERIOD_UNITS or len(amount) > 6:
        raise UserError(f"--due-within {text!r}: give a number and d, h or m, such as 7d")
    seconds = int(amount) * PERIOD_UNITS[unit]
    if seconds > 3650 * 86400:
        raise UserError(f"--due-within {text!r}: at most ten years")
    return timedelta(seconds=seconds)


def _time(value: datetime | None, layout: str) -> str:
    """A time as `layout`; `?` for one the row holds that cannot be read (`unreadable`)."""
    return "?" if value is None else format(value, layout)


@activity_app.command("show")
def activity_show(activity_id: str, as_json: JsonFlag = False) -> None:
    """One calendar activity, with everything entered for it."""

    async def work() -> None:
        async with database() as pool:
            found = await ReadModel(pool).calendar_activity(activity_id)
        if found is None:
            raise UserError(f"unknown calendar activity {activity_id!r}")
        if as_json:
            print_json(found)
            return
        print_fields({
            "Activity": found.activity_id,
            "Opportunity": f"{found.opportunity_id} (action {found.action_id})",
            "Contact": found.contact_id,
            "Kind": found.kind,
            "Subject": found.subject,
            "Due": f"{_time(found.starts_at, '%Y-%m-%d %H:%M %Z')} to "
            f"{_time(found.ends_at, '%H:%M')}",
            "Assignee": found.assignee or "-",
            "Location": found.location,
            "Status": found.status + (f", outcome {found.outcome}" if found.outcome else ""),
            "Notes": found.notes,
            "Created on": _time(found.created_on, "%Y-%m-%d"),
            "Unreadable": f"{found.unreadable}, {UNREADABLE}" if found.unreadable else None,
        })  # fmt: skip

    run(work)


@activity_app.command("modify")
def activity_modify(
    activity_id: str,
    due: DueOption = None,
    duration: DurationOption = None,
    subject: SubjectOption = None,
    assignee: AssigneeOption = None,
    notes: NotesOption = None,
    location: LocationOption = None,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Change an active calendar activity's details (kept in the opportunity's history)."""
    details = _details(due, duration, subject, assignee, notes, location)
    if not details:
        raise UserError("nothing to change: give at least one of the options (see --help)")
    if assignee is not None:
        run(lambda: require_users([assignee]))
    command = command_of(ModifyActivity, activity_id=activity_id, **details, by=by)
    send(run(lambda: opportunity_of(activity_id)), command, as_json)
