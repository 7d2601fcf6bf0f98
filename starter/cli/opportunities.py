"""Opportunities: create, show, history, stage changes, the team, remarks, moving, deleting
and searching."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import typer
from asyncpg import Pool
from pydantic import ValidationError
from rich.text import Text

from runtime.escaping import escaped
from sales.commands import (
    AddRemark,
    Assign,
    ChangeOwner,
    ChangeStage,
    DeleteOpportunity,
    MoveProcess,
    RecordExternalStatus,
)
from sales.errors import describe_validation_error
from sales.opportunity import HistoryEntry, Opportunity
from sales.process import FoundProcess, SalesProcess
from sales.stage_rules import next_open_stage
from starter.cli.common import (
    ColumnsOption,
    JsonFlag,
    UserError,
    actor,
    cli_signer,
    console,
    counted,
    database,
    new_app,
    new_table,
    print_fields,
    print_json,
    print_table,
    run,
    styled,
)
from starter.cli.filters import with_search_filters
from starter.cli.send import (
    ByOption,
    command_of,
    require_users,
    send,
    state_of,
)
from starter.cli.stage_choices import (
    OptionsInOrder,
    ask_the_rest,
    cancel_choice,
    detail_groups,
    entry_overrides,
)
from starter.cli.value import (
    AmountOption,
    CloseDateOption,
    CurrencyOption,
    ForecastOption,
    ProbabilityOption,
    close_date,
    duration,
    forecast_category,
    value_fields,
)
from starter.client import OpportunitiesClient
from starter.client.read_model import ReadModel
from store import processes
from store.search import SearchFilters, SortKey

app = new_app("Opportunities.")


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
    amount: AmountOption = None,
    currency: CurrencyOption = None,
    close: CloseDateOption = None,
    probability: ProbabilityOption = None,
    forecast: ForecastOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Open an opportunity for a contact: starts its workflow and waits until it is open."""
    value: dict[str, Any] = {
        "amount": amount, "currency": currency, "expected_close_date": close_date(close),
        "probability": probability, "forecast_category": forecast_category(forecast),
    }  # fmt: skip
    value = {field: given for field, given in value.items() if given is not None}

    async def work() -> None:
        client = await OpportunitiesClient.connect(signer=cli_signer())
        async with database() as pool:
            contact_name = await ReadModel(pool).contact_name(contact)
            found = await _check_start(pool, contact, contact_name, process, stage)
            if opportunity_id is not None and await ReadModel(pool).run_of(opportunity_id):
                raise UserError(
                    f"opportunity {opportunity_id!r} already exists; an opportunity id is used "
                    "once: give another --id, or reopen it"
                )
        if owner is not None:
            await require_users([owner])
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
                process_label=f"{found.definition.process_id} v{found.version}",
                **value,
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
            print_created(opportunity)

    run(work)


def print_created(opportunity: Opportunity) -> None:
    """The calendar activities the first stage created, as a stage change shows them."""
    start = next((e for e in opportunity.history if e.source == "start"), None)
    created = set(start.created_activities) if start else set()
    rows = [a for s in opportunity.stages for a in s.actions if a.activity_id in created]
    if not rows:
        return
    table = new_table("action", "outcome", "detail", title=f"{opportunity.opportunity_id}: start")
    for action in rows:
        due = action.activity_starts_at
        when = f", due {due.astimezone():%Y-%m-%d %H:%M}" if due else ""
        table.add_row(
            action.action_id, "activity_created", f"calendar activity {action.activity_id}{when}"
        )
    print_table(table)


async def _check_start(
    pool: Pool, contact: str, contact_name: str | None, process_id: str | None, stage: str | None
) -> SalesProcess:
    """What the workflow would refuse, refused before anything starts (the id stays free);
    the process version it would start on."""
    if contact_name is None:
        raise UserError(f"unknown contact {contact!r}; `contact add` adds one")
    if process_id is None:
        looked_up = FoundProcess(process=await processes.default_process(pool))
    else:
        looked_up = await processes.find(pool, process_id)
    found = looked_up.process
    if found is None:
        known = await processes.process_ids(pool)
        what = "no default process is set up" if process_id is None else (
            f"unknown process {process_id!r}")  # fmt: skip
        raise UserError(f"{what}; processes are {known}")
    if looked_up.retired:
        raise UserError(f"process {process_id!r} is retired: it takes no new opportunities")
    if stage is not None and found.definition.stage(stage) is None:
        raise UserError(
            f"unknown stage {stage!r} for process {found.definition.process_id!r}; "
            f"stages are {found.definition.stage_names()}"
        )
    return found


@app.command("show")
def show(
    opportunity_id: str,
    stage: Annotated[str | None, typer.Option("--stage", help="Show one stage's actions.")] = None,
    columns: ColumnsOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The opportunity's detail: current stage, status and stage actions."""

    async def work() -> None:
        client = await OpportunitiesClient.connect(signer=cli_signer())
        async with database() as pool:
            run_id = await ReadModel(pool).closed_run(opportunity_id)
            opportunity = await client.state(opportunity_id, run_id=run_id)
            if stage is not None and opportunity.process.stage(stage) is None:
                raise UserError(
                    f"unknown stage {stage!r}; stages are {opportunity.process.stage_names()}"
                )
            # the contact as it is now, not as it was when opened
            current = await ReadModel(pool).contact_name(opportunity.contact_id)
        if current is not None:
            opportunity = opportunity.model_copy(update={"contact_name": current})
        if as_json:
            print_json(opportunity)
        else:
            print_opportunity(opportunity, stage, columns)

    run(work)


def print_opportunity(o: Opportunity, stage: str | None, columns: str | None = None) -> None:
    console.print(styled(o.opportunity_id, "bold"), o.name or "", highlight=False)
    print_fields({
        "Contact": f"{o.contact_name} ({o.contact_id})" if o.contact_name else o.contact_id,
        "Owner": o.owner or "-",
        "Process": f"{o.process_id} v{o.process_version}",
        "Current stage": f"{o.current_stage} (since {o.stage_entered_at:%Y-%m-%d %H:%M})",
        "Status": o.status + (f" ({o.closed_at:%Y-%m-%d})" if o.closed_at else ""),
        **value_fields(o, datetime.now(UTC)),
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
    """The opportunity's stage changes and the changes noted beside them, oldest first."""

    async def work() -> None:
        client = await OpportunitiesClient.connect(signer=cli_signer())
        async with database() as pool:
            read_model = ReadModel(pool)
            run_id = await read_model.closed_run(opportunity_id)
            entries = await client.history(opportunity_id, run_id=run_id)
            if entries and entries[0].seq > 1:  # the workflow keeps the newest: the rest
                entries = [*await read_model.history_before(opportunity_id, entries[0].seq),
                           *entries]  # fmt: skip
        if as_json:
            print_json(entries)
        else:
            print_history(entries)

    run(work)


def print_history(entries: list[HistoryEntry]) -> None:
    table = new_table("#", "at", "from", "to", "source", "by", "reason", "stayed", "activities")
    for e in entries:
        activities = [f"created {a}" for a in e.created_activities]
        activities += [f"canceled {a}" for a in e.canceled_activities]
        lines = Text("\n").join(Text(escaped(line)) for line in activities)  # one a line
        table.add_row(
            str(e.seq),
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.from_stage or "",
            e.to_stage,
            e.source,
            e.by or "",
            e.reason or "",
            duration(e.duration_seconds) if e.duration_seconds is not None else "",
            lines,
        )
    print_table(table)


ForOption = Annotated[
    list[str] | None,
    typer.Option("--for", help="An action whose activity the new stage creates: the details "
                 "after it are its own.", show_default=False),
]  # fmt: skip
DetailOption = Annotated[list[str] | None, typer.Option(show_default=False)]


@app.command("stage", cls=OptionsInOrder)
def change_stage(
    ctx: typer.Context,
    opportunity_id: str,
    stage: Annotated[
        str | None, typer.Argument(help="The stage to move to (or --next).", show_default=False)
    ] = None,
    next_stage: Annotated[
        bool, typer.Option("--next", help="Move to the stage after the current one.")
    ] = False,
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
    for_: ForOption = None,
    due: Annotated[list[str] | None, typer.Option("--due", help="When it starts: "
                   "2027-01-05T10:00 (local time) or with a zone.", show_default=False)] = None,
    duration: Annotated[list[int] | None, typer.Option("--duration", min=1, max=10080,
                        help="Its length in minutes.", show_default=False)] = None,
    subject: DetailOption = None,
    assignee: Annotated[list[str] | None, typer.Option("--assignee", show_default=False,
                        help="Who does it (a user).")] = None,
    notes: DetailOption = None,
    location: DetailOption = None,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:  # fmt: skip
    """Move the opportunity to any stage of its process (or the next one), at any time. The
    activities the new stage creates take the details given after --for ACTION (--for may
    be left out when it creates one), and are asked for in a terminal."""
    if (stage is None) == (not next_stage):
        raise UserError("give a stage or --next")
    groups = detail_groups(ctx.meta.get("in_order", []), {
        "for_": for_, "due": due, "duration": duration, "subject": subject,
        "assignee": assignee, "notes": notes, "location": location,
    })  # fmt: skip
    named = [a for _, given in groups if (a := given.get("assignee"))]
    if named:
        run(lambda: require_users(named))

    def prepare() -> ChangeStage:
        # Asked outside the event loop, where Ctrl-C interrupts a question.
        state = run(lambda: state_of(opportunity_id))
        target = _stage_to_enter(opportunity_id, state, stage)
        given = entry_overrides(state, target, groups)
        choice = cancel_choice(state, target, cancel, yes=yes)
        overrides = ask_the_rest(state, target, given)
        return command_of(
            ChangeStage, stage=stage, next_stage=next_stage, cancel_open_activities=choice,
            overrides=overrides, reason=reason, by=by,
        )  # fmt: skip

    command = prepare()
    asked = [d.assignee for d in command.overrides.values() if d.assignee]
    if asked and asked != named:
        run(lambda: require_users(asked))
    send(opportunity_id, command, as_json)


def _stage_to_enter(opportunity_id: str, state: Opportunity, stage: str | None) -> str:
    """The stage the change would enter, refused here as the workflow would refuse it (so
    nothing is asked of a change that cannot be made)."""
    if state.status != "open":
        raise UserError(f"opportunity {opportunity_id!r} is closed; reopen it to change it")
    if stage is None:
        return next_open_stage(state)  # refused `no_next_stage` as the workflow would
    if state.process.stage(stage) is None:
        raise UserError(f"unknown stage {stage!r}; stages are {state.process.stage_names()}")
    if stage == state.current_stage:
        raise UserError(f"opportunity {opportunity_id!r} is already in stage {stage!r}")
    return stage


@app.command("reopen")
def reopen(
    opportunity_id: str,
    stage: Annotated[str, typer.Option("--stage", help="The stage to reopen it in.")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Open a won or lost opportunity again (a new run of its workflow, same history)."""

    async def work() -> None:
        client = await OpportunitiesClient.connect(signer=cli_signer())
        state = await client.reopen(opportunity_id, stage, by=by or actor())
        if as_json:
            print_json(state)
        else:
            console.print(
                f"{opportunity_id}: reopened in stage {state.current_stage!r}", highlight=False
            )

    run(work)


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
    run(lambda: require_users([user]))
    send(opportunity_id, command_of(Assign, role=role, user=user, by=by), as_json)


@app.command("owner")
def owner(
    opportunity_id: str,
    user: Annotated[str, typer.Argument(help="The new owner (a user: `user list`).")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Hand the opportunity to another owner (no stage change)."""
    run(lambda: require_users([user]))
    send(opportunity_id, command_of(ChangeOwner, owner=user, by=by), as_json)


@app.command("external-status")
def external_status(
    opportunity_id: str,
    source: Annotated[str, typer.Option("--source", help="The system it comes from.")],
    reference: Annotated[str, typer.Option("--reference", help="Its case or policy number.")],
    status: Annotated[str, typer.Option("--status", help="The status it reports.")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Record another system's status (a case or policy): the opportunity moves as its
    process's external_status_stages maps it; another status stays in history."""
    command = command_of(
        RecordExternalStatus, source=source, reference=reference, status=status, by=by
    )
    send(opportunity_id, command, as_json)


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
    send(opportunity_id, command_of(MoveProcess, process_id=process, stage=stage, by=by), as_json)


remark_app = new_app("Dated remarks on an opportunity.")


@remark_app.command("add")
def remark_add(
    opportunity_id: str,
    text: Annotated[str, typer.Argument(help="The remark.")],
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a dated remark to the opportunity (`show` lists the newest, `remark list` all)."""
    send(opportunity_id, command_of(AddRemark, text=text, by=by), as_json)


@remark_app.command("list")
def remark_list(
    opportunity_id: str,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The opportunity's remarks, newest first (from the read model)."""

    async def work() -> None:
        async with database() as pool:
            remarks = await ReadModel(pool).remarks(opportunity_id, limit)
        if as_json:
            print_json(remarks)
            return
        table = new_table("#", "at", "by", "remark")
        for r in remarks:
            table.add_row(str(r.seq), f"{r.at:%Y-%m-%d %H:%M}", r.by or "", r.text)
        print_table(table)

    run(work)


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
    command = command_of(DeleteOpportunity, reason=reason, by=by)
    if not yes:
        question = f"Delete opportunity {opportunity_id!r}? It cannot be reopened."
        if not sys.stdin.isatty():
            raise UserError(f"{question} Answer with --yes")
        if not typer.confirm(escaped(question), default=False):
            raise typer.Exit(1)
    send(opportunity_id, command, as_json)


@app.command("search")
@with_search_filters()
def search_command(
    sort: Annotated[str, typer.Option("--sort", help="Column to sort by.")] = "opportunity_id",
    desc: Annotated[bool, typer.Option("--desc", help="Sort descending.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Page size (1-1000).")] = 50,
    offset: Annotated[int, typer.Option("--offset", help="Rows to skip.")] = 0,
    columns: ColumnsOption = None,
    as_json: JsonFlag = False,
    filters: SearchFilters | None = None,
) -> None:
    """Find opportunities in the read model (all filters must match)."""
    assert filters is not None

    async def work() -> None:
        async with database() as pool:
            try:
                page = await ReadModel(pool).search(
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
        headers = ["opportunity", "name", "contact", "owner", "process", "stage", "since",
                   "status", "open", "amount", "close"]  # fmt: skip
        failures = filters.has_failed_actions or any(o.failed_actions for o in page.items)
        if failures:  # shown when there is something to fix
            headers.append("failed")
        table = new_table(*headers, title=counted(page.total, "opportunity"))
        for o in page.items:
            row = [
                o.opportunity_id,
                o.name or "",
                o.contact_id,
                o.owner or "",
                f"{o.process_id} v{o.process_version}",
                o.current_stage,
                f"{o.stage_entered_at:%Y-%m-%d}",
                o.status,
                str(o.open_actions),
                f"{format(o.amount, ',f')} {o.currency}" if o.amount is not None else "",
                f"{o.expected_close_date:%Y-%m-%d}" if o.expected_close_date else "",
            ]
            table.add_row(*row, *([str(o.failed_actions or "")] if failures else []))
        print_table(table, view="search", columns=columns)
        if page.total > len(page.items):
            shown = f"{offset + 1}-{offset + len(page.items)}" if page.items else "none"
            console.print(f"showing {shown} of {page.total}; --offset/--limit for more")

    run(work)
