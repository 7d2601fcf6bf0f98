"""Opportunities: create, show, history, and the commands that advance them."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from asyncpg import Pool
from pydantic import ValidationError

from sales.commands import (
    AddAction,
    AddRemark,
    Assign,
    ChangeStage,
    Command,
    CompleteActions,
    DeleteAction,
    DeleteActivity,
    DeleteOpportunity,
    ModifyAction,
    ModifyActivity,
    MoveProcess,
    PerformActions,
    RecordOutcome,
)
from sales.errors import CommandRejected, describe_validation_error
from sales.opportunity import HistoryEntry, Opportunity
from sales.process import CalendarAction
from sales.results import CommandResult
from starter.cli_common import (
    ColumnsOption,
    JsonFlag,
    Unsuccessful,
    UserError,
    actor,
    console,
    counted,
    database,
    load_document,
    new_app,
    new_table,
    print_fields,
    print_json,
    print_table,
    run,
)
from starter.client import OpportunitiesClient
from starter.read_model import ReadModel
from store import calendar, processes, search, users
from store.search import SearchFilters, SortKey

app = new_app("Opportunities.")
action_app = new_app("Actions of one opportunity (its own copy of the process's actions).")
activity_app = new_app("Calendar activities linked to actions.")
app.add_typer(action_app, name="action")
app.add_typer(activity_app, name="activity")

ByOption = Annotated[
    str | None, typer.Option("--by", help="Who issues it (kept in history); default: you.")
]
C = TypeVar("C", bound=Command)
EnteredBefore = Annotated[
    str | None, typer.Option("--entered-before", help="Stage entered before (ISO-8601).")
]
EnteredAfter = Annotated[
    str | None, typer.Option("--entered-after", help="Stage entered at or after (ISO-8601).")
]
OpenActionsFilter = Annotated[
    bool | None,
    typer.Option("--open-actions/--no-open-actions", help="Current stage has open actions."),
]
CancelOption = Annotated[
    bool | None,
    typer.Option(
        "--cancel-open-activities/--keep-open-activities",
        help="When the opportunity moves on: cancel the open activities of the stage left "
        "(default: the process's cancel_on_advance).",
    ),
]


# --- opportunities ----------------------------------------------------------------------------


@app.command("create")
def create(
    contact: Annotated[str, typer.Option("--contact", help="The contact's id.")],
    opportunity_id: Annotated[str | None, typer.Option("--id", help="Default: generated.")] = None,
    process: Annotated[
        str | None, typer.Option("--process", help="Default: the default process.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Default: the first stage.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Open an opportunity for a contact: starts its workflow and waits until it is open."""

    async def work() -> None:
        client = await OpportunitiesClient.connect()
        async with database() as pool:
            contact_name = await ReadModel(pool).contact_name(contact)
            process_label = await ReadModel(pool).process_label(process)
            await _check_start(pool, contact, contact_name, process, stage)
        try:
            opportunity = await client.create(
                contact,
                opportunity_id=opportunity_id,
                process_id=process,
                name=name,
                owner=owner,
                stage=stage,
                by=actor(),
                contact_name=contact_name,
                process_label=process_label,
            )
        except ValidationError as error:
            raise UserError(describe_validation_error(error, "opportunity")) from None
        if as_json:
            print_json(opportunity)
        else:
            console.print(
                f"{opportunity.opportunity_id}: open in stage {opportunity.current_stage!r} "
                f"of {opportunity.process_id} v{opportunity.process_version}",
                highlight=False,
            )

    run(work)


async def _check_start(
    pool: Pool, contact: str, contact_name: str | None, process_id: str | None, stage: str | None
) -> None:
    """What the workflow would refuse, refused before anything starts (the id stays free)."""
    if contact_name is None:
        raise UserError(f"unknown contact {contact!r}; `contact add` adds one")
    found = await (
        processes.default_process(pool)
        if process_id is None
        else processes.get_process(pool, process_id)
    )
    if found is None:
        known = await processes.process_ids(pool)
        what = "no default process is set up" if process_id is None else (
            f"unknown process {process_id!r}")  # fmt: skip
        raise UserError(f"{what}; processes are {known}")
    if process_id is not None and await processes.is_retired(pool, process_id):
        raise UserError(f"process {process_id!r} is retired: it takes no new opportunities")
    if stage is not None and found.definition.stage(stage) is None:
        raise UserError(
            f"unknown stage {stage!r} for process {found.definition.process_id!r}; "
            f"stages are {found.definition.stage_names()}"
        )


@app.command("show")
def show(
    opportunity_id: str,
    stage: Annotated[str | None, typer.Option("--stage", help="Show one stage's actions.")] = None,
    columns: ColumnsOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The opportunity's detail: current stage, status and stage actions."""

    async def work() -> None:
        client = await OpportunitiesClient.connect()
        opportunity = await client.state(opportunity_id)
        if stage is not None and opportunity.process.stage(stage) is None:
            raise UserError(
                f"unknown stage {stage!r}; stages are {opportunity.process.stage_names()}"
            )
        async with database() as pool:  # the contact as it is now, not as it was when opened
            current = await ReadModel(pool).contact_name(opportunity.contact_id)
        if current is not None:
            opportunity = opportunity.model_copy(update={"contact_name": current})
        if as_json:
            print_json(opportunity)
        else:
            print_opportunity(opportunity, stage, columns)

    run(work)


def print_opportunity(o: Opportunity, stage: str | None, columns: str | None = None) -> None:
    console.print(f"[bold]{o.opportunity_id}[/bold] {o.name or ''}", highlight=False)
    print_fields({
        "Contact": f"{o.contact_name} ({o.contact_id})" if o.contact_name else o.contact_id,
        "Owner": o.owner or "-",
        "Process": f"{o.process_id} v{o.process_version}",
        "Current stage": f"{o.current_stage} (since {o.stage_entered_at:%Y-%m-%d %H:%M})",
        "Status": o.status + (f" ({o.closed_at:%Y-%m-%d})" if o.closed_at else ""),
    })  # fmt: skip
    shown = [stage] if stage else o.visited_stages()
    title = f"Stage actions for {stage}" if stage else "Stage actions for current/previous stages"
    table = new_table(
        "stage", "action", "type", "title", "completed", "performed", "linked activity",
        "created on", title=title,
    )  # fmt: skip
    for state in o.stages:
        if state.name not in shown:
            continue
        for a in state.actions:
            who = f", {a.activity_assignee}" if a.activity_assignee else ""
            activity = f"{a.activity_id} ({a.activity_status}{who})" if a.activity_id else ""
            if a.activity_outcome:
                activity += f": {a.activity_outcome}"
            table.add_row(
                state.name,
                a.action_id,
                a.type,
                a.title,
                f"yes {a.completed_at:%Y-%m-%d}" if a.completed_at else "no",
                f"{a.performed_at:%Y-%m-%d}" if a.performed_at else "",
                activity,
                f"{a.activity_created_on:%Y-%m-%d}" if a.activity_created_on else "",
                style="red" if a.last_error else None,
            )
            if a.last_error:
                table.add_row(
                    "",
                    "",
                    "",
                    f"last attempt failed ({a.last_error.code}): {a.last_error.message}",
                    style="red",
                )
    print_table(table, view="show", columns=columns)
    roles = o.process.roles()
    if roles:
        team = ", ".join(f"{role}: {o.member(role) or '-'}" for role in roles)
        console.print(f"Team: {team}", highlight=False)
    for remark in o.remarks:
        by = f" ({remark.by})" if remark.by else ""
        console.print(f"Remark {remark.at:%Y-%m-%d %H:%M}{by}: {remark.text}", highlight=False)
    if o.rejected:
        last = o.rejected[-1]
        console.print(f"last rejected command: {last.command}: {last.reason}", highlight=False)


@app.command("history")
def history(opportunity_id: str, as_json: JsonFlag = False) -> None:
    """The opportunity's stage changes, oldest first."""

    async def work() -> None:
        client = await OpportunitiesClient.connect()
        entries = await client.history(opportunity_id)
        if as_json:
            print_json(entries)
        else:
            print_history(entries)

    run(work)


def print_history(entries: list[HistoryEntry]) -> None:
    table = new_table("#", "at", "from", "to", "source", "by", "reason", "activities")
    for e in entries:
        activities = [f"created {a}" for a in e.created_activities]
        activities += [f"canceled {a}" for a in e.canceled_activities]
        table.add_row(
            str(e.seq),
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.from_stage or "",
            e.to_stage,
            e.source,
            e.by or "",
            e.reason or "",
            "\n".join(activities),
        )
    print_table(table)


@app.command("stage")
def change_stage(
    opportunity_id: str,
    stage: str,
    cancel: Annotated[
        bool | None,
        typer.Option(
            "--cancel-open-activities/--keep-open-activities",
            help="Cancel the open activities of the stage being left (if the process allows); "
            "asked when not given.",
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Answer yes: cancel the open activities.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Move the opportunity to any stage of its process, at any time."""
    if cancel is None:
        cancel = run(lambda: _ask_to_cancel(opportunity_id, stage, yes))
    send(
        opportunity_id,
        ChangeStage(stage=stage, cancel_open_activities=cancel, reason=reason, by=by or actor()),
        as_json,
    )


async def _ask_to_cancel(opportunity_id: str, stage: str, yes: bool) -> bool:
    """The product's confirmation: cancel the open activities of the stage being left? Asked
    only of a stage change the workflow would accept."""
    client = await OpportunitiesClient.connect()
    state = await client.state(opportunity_id)
    if state.status != "open":
        raise UserError(f"opportunity {opportunity_id!r} is closed; reopen it to change it")
    if state.process.stage(stage) is None:
        raise UserError(f"unknown stage {stage!r}; stages are {state.process.stage_names()}")
    if stage == state.current_stage:
        raise UserError(f"opportunity {opportunity_id!r} is already in stage {stage!r}")
    open_ids = [
        a.activity_id
        for a in state.stage_state(state.current_stage).actions
        if a.activity_status == "active"
    ]
    if not open_ids or not state.process.allow_cancel_activities:
        return False
    if yes:
        return True
    question = (
        f"Stage {state.current_stage!r} has {counted(len(open_ids), 'open activity')} "
        f"({', '.join(map(str, open_ids))}). Cancel them?"
    )
    if not sys.stdin.isatty():
        raise UserError(
            f"{question} Answer with --cancel-open-activities (or --yes) or --keep-open-activities"
        )
    return typer.confirm(question, default=False)


@app.command("reopen")
def reopen(
    opportunity_id: str,
    stage: Annotated[str, typer.Option("--stage", help="The stage to reopen it in.")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Open a won or lost opportunity again (a new run of its workflow, same history)."""

    async def work() -> None:
        client = await OpportunitiesClient.connect()
        state = await client.reopen(opportunity_id, stage, by=by or actor())
        if as_json:
            print_json(state)
        else:
            console.print(
                f"{opportunity_id}: reopened in stage {state.current_stage!r}", highlight=False
            )

    run(work)


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
    """The calendar activity details given on the command line (a due without a zone is in
    this machine's time zone)."""
    given: dict[str, Any] = {
        "duration_minutes": duration, "subject": subject, "assignee": assignee, "notes": notes,
        "location": location,
    }  # fmt: skip
    if due is not None:
        try:
            when = datetime.fromisoformat(due)
        except ValueError:
            raise UserError(
                f"--due {due!r} is not a date and time; give it as 2027-01-05T10:00 "
                "(local time) or 2027-01-05T10:00+01:00"
            ) from None
        given["due"] = when if when.tzinfo else when.astimezone()
    return {field: value for field, value in given.items() if value is not None}


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
        run(lambda: _require_users([assignee]))
    overrides: dict[str, dict[str, Any]] = {}
    if details or letter_method:
        state = run(lambda: _state(opportunity_id))
        for action_id in action_ids:
            found = state.find_action(action_id)
            kind = found[1].type if found else None
            if kind == "calendar" and details:
                overrides[action_id] = details
            elif kind == "letter" and letter_method:
                overrides[action_id] = {"method": letter_method}
    command = _command(PerformActions, action_ids=action_ids, overrides=overrides, by=by)
    send(opportunity_id, command, as_json)


async def _state(opportunity_id: str) -> Opportunity:
    return await (await OpportunitiesClient.connect()).state(opportunity_id)


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
    """Mark actions completed (a calendar action's linked activity becomes done)."""
    command = _command(
        CompleteActions, action_ids=action_ids, outcome=outcome, notes=notes, stage=stage,
        cancel_open_activities=cancel, by=by,
    )  # fmt: skip
    send(opportunity_id, command, as_json)


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
    send(opportunity_id, _command(AddAction, stage=stage, action=document, by=by), as_json)


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
    command = _command(ModifyAction, action_id=action_id, changes=changes, by=by)
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
    opportunity_id = run(lambda: _opportunity_of(activity_id))
    if outcome is None and sys.stdin.isatty():
        outcome = run(lambda: _ask_outcome(opportunity_id, activity_id))
    command = _command(
        RecordOutcome, activity_id=activity_id, outcome=outcome, notes=notes, stage=stage,
        cancel_open_activities=cancel, by=by,
    )  # fmt: skip
    send(opportunity_id, command, as_json)


async def _ask_outcome(opportunity_id: str, activity_id: str) -> str | None:
    """The outcome of an activity that tracks outcomes, asked of the user: one of the
    process's list for its kind, or any text when it has none."""
    state = await (await OpportunitiesClient.connect()).state(opportunity_id)
    found = state.find_calendar_activity(activity_id)
    definition = found[1].definition if found else None
    if not isinstance(definition, CalendarAction) or not definition.activity.track_outcome:
        return None
    listed = state.process.outcomes_of(definition.activity.kind)
    if listed is None:
        return str(typer.prompt("Outcome"))
    for n, choice in enumerate(listed, start=1):
        console.print(f"  {n}. {choice}", highlight=False)
    while not 1 <= (answer := typer.prompt("Outcome (number)", type=int)) <= len(listed):
        console.print(f"choose a number from 1 to {len(listed)}")
    return listed[answer - 1]


@activity_app.command("delete")
def activity_delete(activity_id: str, by: ByOption = None, as_json: JsonFlag = False) -> None:
    """Delete a linked calendar activity, so that its action can create another."""
    command = DeleteActivity(activity_id=activity_id, by=by or actor())
    send(run(lambda: _opportunity_of(activity_id)), command, as_json)


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
    columns: ColumnsOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Calendar activities (the product's SmartCalendar), soonest first."""
    since = _details(due_from, None, None, None, None, None).get("due")
    until = _details(due_before, None, None, None, None, None).get("due")

    async def work() -> None:
        async with database() as pool:
            found = await calendar.list_for(
                pool, opportunity_id, assignee=assignee, due_from=since, due_before=until
            )
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
                f"{a.starts_at:%Y-%m-%d %H:%M}",
                a.assignee or "",
                a.status,
                a.outcome or "",
            )
        print_table(table, view="activity list", columns=columns)

    run(work)


@activity_app.command("show")
def activity_show(activity_id: str, as_json: JsonFlag = False) -> None:
    """One calendar activity, with everything entered for it."""

    async def work() -> None:
        async with database() as pool:
            found = await calendar.get(pool, activity_id)
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
            "Due": f"{found.starts_at:%Y-%m-%d %H:%M %Z} to {found.ends_at:%H:%M}",
            "Assignee": found.assignee or "-",
            "Location": found.location,
            "Status": found.status + (f", outcome {found.outcome}" if found.outcome else ""),
            "Notes": found.notes,
            "Created on": f"{found.created_on:%Y-%m-%d}",
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
        run(lambda: _require_users([assignee]))
    command = _command(ModifyActivity, activity_id=activity_id, **details, by=by)
    send(run(lambda: _opportunity_of(activity_id)), command, as_json)


async def _opportunity_of(activity_id: str) -> str:
    async with database() as pool:
        found = await calendar.get(pool, activity_id)
    if found is None:
        raise UserError(f"unknown calendar activity {activity_id!r}")
    return found.opportunity_id


def _command(model: type[C], *, by: str | None, **fields: Any) -> C:
    try:
        return model.model_validate({**fields, "by": by or actor()})
    except ValidationError as error:
        raise UserError(describe_validation_error(error, "command")) from None


CLI_HINTS = {
    "activity_active": "on the command line: `opportunities activity delete ACTIVITY`",
}
"""What a command line user types about a rejection, by its code."""


def send(opportunity_id: str, command: Command, as_json: bool) -> None:
    """Send a command as an update and print its result (one line per action)."""

    async def work() -> None:
        client = await OpportunitiesClient.connect()
        try:
            result = await client.execute(opportunity_id, command)
        except CommandRejected as rejected:
            if rejected.code in CLI_HINTS:
                raise UserError(f"{rejected} ({CLI_HINTS[rejected.code]})") from None
            raise
        if as_json:
            print_json(result)
        else:
            print_result(opportunity_id, result)
        failed = [a for a in result.actions if a.outcome == "failed"]
        if failed:
            raise Unsuccessful(
                f"{counted(len(failed), 'action')} failed: "
                + "; ".join(f"{a.action_id}: {a.message}" for a in failed)
            )

    run(work)


def print_result(opportunity_id: str, result: CommandResult) -> None:
    if result.duplicate:
        console.print(f"{opportunity_id}: already applied (request {result.request_id})")
        return
    if not result.actions:
        console.print(f"{opportunity_id}: {result.message}", highlight=False)
        return
    table = new_table("action", "outcome", "detail", title=f"{opportunity_id}: {result.command}")
    for action in result.actions:
        style = "red" if action.outcome == "failed" else None
        table.add_row(action.action_id, action.outcome, action.message, style=style)
    print_table(table)
    console.print(f"stage: {result.current_stage} ({result.status})", highlight=False)


@app.command("assign")
def assign(
    opportunity_id: str,
    role: Annotated[str, typer.Option("--role", help="A role the process's actions name.")],
    user: Annotated[str, typer.Option("--user", help="A user (`user list`).")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Give a role on the opportunity's team to a user: the calendar activities of the actions
    naming the role are theirs from now on."""
    run(lambda: _require_users([user]))
    send(opportunity_id, _command(Assign, role=role, user=user, by=by), as_json)


@app.command("move")
def move(
    opportunity_id: str,
    process: Annotated[str, typer.Option("--process", help="The process to follow now.")],
    stage: Annotated[str, typer.Option("--stage", help="Its stage to enter.")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Move an open opportunity to a stage of another process (its latest version): its
    actions become that process's, its active calendar activities are canceled, and what was
    done before stays in history."""

    async def check() -> None:
        async with database() as pool:
            found = await processes.get_process(pool, process)
            if found is None:
                raise UserError(
                    f"unknown process {process!r}; processes are "
                    f"{await processes.process_ids(pool)}"
                )
            if found.definition.stage(stage) is None:
                raise UserError(
                    f"unknown stage {stage!r} for process {process!r}; stages are "
                    f"{found.definition.stage_names()}"
                )

    run(check)
    send(opportunity_id, _command(MoveProcess, process_id=process, stage=stage, by=by), as_json)


@app.command("remark")
def remark(
    opportunity_id: str,
    text: Annotated[str, typer.Argument(help="The remark.")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a dated remark to the opportunity (`show` lists them)."""
    send(opportunity_id, _command(AddRemark, text=text, by=by), as_json)


@app.command("delete")
def delete(
    opportunity_id: str,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in history).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """End the opportunity as deleted: out of searches (unless --status deleted), kept in
    history, its active calendar activities canceled. It cannot be reopened."""
    command = _command(DeleteOpportunity, reason=reason, by=by)
    if not yes:
        question = f"Delete opportunity {opportunity_id!r}? It cannot be reopened."
        if not sys.stdin.isatty():
            raise UserError(f"{question} Answer with --yes")
        if not typer.confirm(question, default=False):
            raise typer.Exit(1)
    send(opportunity_id, command, as_json)


async def _require_users(user_ids: list[str]) -> None:
    """Refuse a user id that `user add` never added."""
    async with database() as pool:
        for user_id in user_ids:
            if await users.get_user(pool, user_id) is None:
                known = [u.user_id for u in await users.list_users(pool)][:20]
                raise UserError(f"unknown user {user_id!r}; users are {known}")


@app.command("search")
def search_command(
    process: Annotated[str | None, typer.Option("--process")] = None,
    stage: Annotated[str | None, typer.Option("--stage")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="open, won, lost or deleted (default: all but deleted)"),
    ] = None,
    contact: Annotated[str | None, typer.Option("--contact")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Part of the name, any case.")] = None,
    entered_before: EnteredBefore = None,
    entered_after: EnteredAfter = None,
    open_actions: OpenActionsFilter = None,
    sort: Annotated[str, typer.Option("--sort", help="Column to sort by.")] = "opportunity_id",
    desc: Annotated[bool, typer.Option("--desc", help="Sort descending.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Page size (1-1000).")] = 50,
    offset: Annotated[int, typer.Option("--offset", help="Rows to skip.")] = 0,
    columns: ColumnsOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Find opportunities in the read model (all filters must match)."""
    filters = search_filters(
        process=process,
        stage=stage,
        status=status,
        contact=contact,
        owner=owner,
        name=name,
        entered_before=entered_before,
        entered_after=entered_after,
        open_actions=open_actions,
    )

    async def work() -> None:
        async with database() as pool:
            try:
                page = await search.search(
                    pool,
                    filters,
                    sort=cast(SortKey, sort),
                    descending=desc,
                    limit=limit,
                    offset=offset,
                )
            except ValueError as error:  # sort key, limit or offset out of range
                raise UserError(str(error)) from None
        if as_json:
            print_json(page)
            return
        table = new_table(
            "opportunity", "name", "contact", "owner", "process", "stage", "since", "status",
            "open", title=counted(page.total, "opportunity"),
        )  # fmt: skip
        for o in page.items:
            table.add_row(
                o.opportunity_id,
                o.name or "",
                o.contact_id,
                o.owner or "",
                f"{o.process_id} v{o.process_version}",
                o.current_stage,
                f"{o.stage_entered_at:%Y-%m-%d}",
                o.status,
                str(o.open_actions),
            )
        print_table(table, view="search", columns=columns)
        if page.total > len(page.items):
            shown = f"{offset + 1}-{offset + len(page.items)}" if page.items else "none"
            console.print(f"showing {shown} of {page.total}; --offset/--limit for more")

    run(work)


def search_filters(**given: Any) -> SearchFilters:
    """The search options as filters, with a clear error for a bad value."""
    try:
        return SearchFilters(
            process_id=given["process"],
            stage=given["stage"],
            status=given["status"],
            contact_id=given["contact"],
            owner=given["owner"],
            name=given["name"],
            entered_before=given["entered_before"],
            entered_after=given["entered_after"],
            has_open_actions=given["open_actions"],
        )
    except ValidationError as error:
        raise UserError(describe_validation_error(error, "search filters")) from None
