"""`opportunities`: the command line for operators and scripts.

Every command that prints takes `--json` for machine output. Errors go to stderr as one
sentence that says what is wrong, with exit code 1 (2 for usage errors, from typer).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from activities import store
from runtime import settings
from runtime.temporal import Unreachable
from sales.contact import Contact
from sales.errors import CommandRejected, describe_validation_error
from sales.opportunity import HistoryEntry, Opportunity
from sales.process import Action, ProcessDefinition
from starter.client import OpportunitiesClient, OpportunityNotFound, StartFailed

app = typer.Typer(
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=__doc__
)
process_app = typer.Typer(no_args_is_help=True, help="Opportunity Setup: sales processes.")
contact_app = typer.Typer(no_args_is_help=True, help="Contacts.")
app.add_typer(process_app, name="process")
app.add_typer(contact_app, name="contact")

console = Console()
errors = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
T = TypeVar("T")


class UserError(Exception):
    """Bad input or a refused command: printed as one line, exit code 1."""


def run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(work())


EXPECTED_ERRORS = (
    UserError,
    CommandRejected,
    StartFailed,
    OpportunityNotFound,
    store.StoreError,
    settings.NotConfigured,
    Unreachable,
    WorkflowQueryFailedError,
)
"""Errors that are the user's to fix: one line on stderr, no traceback."""


@asynccontextmanager
async def database() -> AsyncIterator[asyncpg.Pool]:
    pool = await store.create_pool(settings.database_url(), max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def actor() -> str:
    """Who is issuing commands from this terminal: `OPPORTUNITIES_USER`, else the login name."""
    return os.environ.get("OPPORTUNITIES_USER") or getpass.getuser()


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        text = value.model_dump_json(indent=2)
    elif isinstance(value, list) and all(isinstance(item, BaseModel) for item in value):
        text = json.dumps([item.model_dump(mode="json") for item in value], indent=2)
    else:
        text = json.dumps(value, indent=2, default=str)
    sys.stdout.write(text + "\n")


def load_document(path: Path) -> Any:
    """A JSON or YAML file (YAML is a superset of JSON, but JSON errors read better)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise UserError(f"{path} is not valid {path.suffix.lstrip('.').upper()}: {error}") from None


# --- processes --------------------------------------------------------------------------------


@process_app.command("apply")
def process_apply(file: Path, as_json: JsonFlag = False) -> None:
    """Store a process definition (JSON or YAML); a changed one becomes a new version."""
    document = load_document(file)
    try:
        definition = ProcessDefinition.model_validate(document)
    except ValidationError as error:
        raise UserError(describe_validation_error(error, f"process definition {file}")) from None

    async def work() -> None:
        async with database() as pool:
            process, created = await store.apply_process(pool, definition)
        result = {
            "process_id": definition.process_id,
            "version": process.version,
            "created": created,
        }
        if as_json:
            print_json(result)
        else:
            what = "new version" if created else "unchanged, still version"
            console.print(f"{definition.process_id}: {what} {process.version}", highlight=False)

    run(work)


@process_app.command("list")
def process_list(as_json: JsonFlag = False) -> None:
    """The processes, each in its latest version."""

    async def work() -> None:
        async with database() as pool:
            processes = await store.list_processes(pool)
        if as_json:
            print_json(processes)
            return
        table = Table("process", "name", "version", "default", "stages")
        for p in processes:
            table.add_row(
                p.process_id,
                p.name,
                str(p.version),
                "yes" if p.is_default else "",
                " → ".join(p.stages),
            )
        console.print(table)

    run(work)


@process_app.command("show")
def process_show(
    process_id: str,
    version: Annotated[
        int | None, typer.Option(help="A stored version; default the latest.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """One process definition with its stages and actions."""

    async def work() -> None:
        async with database() as pool:
            process = await store.get_process(pool, process_id, version)
            known = await store.process_ids(pool)
        if process is None:
            raise UserError(f"unknown process {process_id!r}; processes are {known}")
        if as_json:
            print_json({"version": process.version, **process.definition.model_dump(mode="json")})
            return
        d = process.definition
        console.print(f"[bold]{d.name}[/bold] ({d.process_id} v{process.version})")
        flags = [
            f"default: {d.default}",
            f"change stage automatically: {d.change_stage_automatically}",
            f"allow cancel activities: {d.allow_cancel_activities}",
        ]
        console.print(", ".join(flags), highlight=False)
        table = Table("stage", "probability", "closes as", "action", "type", "title")
        for stage in d.stages:
            actions: list[Action | None] = [*stage.actions] or [None]
            for index, action in enumerate(actions):
                first = index == 0
                table.add_row(
                    stage.name if first else "",
                    f"{stage.probability}%" if first else "",
                    (stage.closes_as or "") if first else "",
                    action.action_id if action else "",
                    action.type if action else "",
                    action.title if action else "",
                )
        console.print(table)
        if d.outcome_stages:
            mapping = ", ".join(f"{o!r} → {s}" for o, s in d.outcome_stages.items())
            console.print(f"outcome stages: {mapping}", highlight=False)

    run(work)


# --- contacts ---------------------------------------------------------------------------------


@contact_app.command("add")
def contact_add(
    contact_id: Annotated[str, typer.Option("--id", help="The contact's id.")],
    first_name: Annotated[str, typer.Option("--first-name")],
    last_name: Annotated[str, typer.Option("--last-name")],
    email: Annotated[str | None, typer.Option("--email")] = None,
    street: Annotated[str | None, typer.Option("--street")] = None,
    city: Annotated[str | None, typer.Option("--city")] = None,
    postal_code: Annotated[str | None, typer.Option("--postal-code")] = None,
    country: Annotated[str | None, typer.Option("--country")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a contact (adding the same contact again changes nothing)."""
    try:
        contact = Contact(
            contact_id=contact_id,
            first_name=first_name,
            last_name=last_name,
            email=email,
            street=street,
            city=city,
            postal_code=postal_code,
            country=country,
        )
    except ValidationError as error:
        raise UserError(describe_validation_error(error, "contact")) from None

    async def work() -> None:
        async with database() as pool:
            added = await store.add_contact(pool, contact)
        if as_json:
            print_json({"contact_id": contact_id, "added": added})
        else:
            console.print(f"{contact_id}: {'added' if added else 'unchanged'}", highlight=False)

    run(work)


@contact_app.command("list")
def contact_list(as_json: JsonFlag = False) -> None:
    """The contacts."""

    async def work() -> None:
        async with database() as pool:
            contacts = await store.list_contacts(pool)
        if as_json:
            print_json(contacts)
            return
        table = Table("contact", "name", "email", "address")
        for c in contacts:
            address = ", ".join(x for x in (c.street, c.postal_code, c.city, c.country) if x)
            table.add_row(c.contact_id, c.full_name, c.email or "", address)
        console.print(table)

    run(work)


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
        try:
            opportunity = await client.create(
                contact,
                opportunity_id=opportunity_id,
                process_id=process,
                name=name,
                owner=owner,
                stage=stage,
                by=actor(),
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


@app.command("show")
def show(
    opportunity_id: str,
    stage: Annotated[str | None, typer.Option("--stage", help="Show one stage's actions.")] = None,
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
        if as_json:
            print_json(opportunity)
        else:
            print_opportunity(opportunity, stage)

    run(work)


def print_opportunity(o: Opportunity, stage: str | None) -> None:
    console.print(f"[bold]{o.opportunity_id}[/bold] {o.name or ''}", highlight=False)
    fields = Table.grid(padding=(0, 2))
    fields.add_row(
        "Contact", f"{o.contact_name} ({o.contact_id})" if o.contact_name else o.contact_id
    )
    fields.add_row("Owner", o.owner or "")
    fields.add_row("Process", f"{o.process_id} v{o.process_version}")
    fields.add_row(
        "Current stage", f"{o.current_stage} (since {o.stage_entered_at:%Y-%m-%d %H:%M})"
    )
    fields.add_row("Status", o.status + (f" ({o.closed_at:%Y-%m-%d})" if o.closed_at else ""))
    console.print(fields)
    visited = {entry.to_stage for entry in o.history}
    shown = [stage] if stage else [s.name for s in o.stages if s.name in visited]
    table = Table(
        "stage", "action", "type", "title", "completed", "activity", title="Stage actions"
    )
    for state in o.stages:
        if state.name not in shown:
            continue
        for a in state.actions:
            table.add_row(
                state.name,
                a.action_id,
                a.type,
                a.title,
                "yes" if a.completed else "no",
                f"{a.activity_id} ({a.activity_status})" if a.activity_id else "",
            )
    console.print(table)
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
    table = Table("#", "at", "from", "to", "source", "by", "reason")
    for e in entries:
        table.add_row(
            str(e.seq),
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.from_stage or "",
            e.to_stage,
            e.source,
            e.by or "",
            e.reason or "",
        )
    console.print(table)


@app.command("stage")
def change_stage(
    opportunity_id: str,
    stage: str,
    cancel: Annotated[
        bool,
        typer.Option(
            "--cancel-open-activities/--keep-open-activities",
            help="Cancel the open activities of the stage being left (if the process allows).",
        ),
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who changes it (kept in history).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Move the opportunity to any stage of its process."""

    async def work() -> None:
        client = await OpportunitiesClient.connect()
        result = await client.change_stage(
            opportunity_id, stage, cancel_open_activities=cancel, reason=reason, by=by or actor()
        )
        if as_json:
            print_json(result)
        else:
            console.print(f"{opportunity_id}: {result.message}", highlight=False)

    run(work)


def main() -> None:
    try:
        app()
    except EXPECTED_ERRORS as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(1)
    except asyncpg.UndefinedTableError:
        errors.print(
            "[red]error:[/red] the database has no tables yet: start a worker "
            "(`make run` or `opportunities-worker`) once to apply the migrations",
            highlight=False,
        )
        sys.exit(1)
    except (OSError, asyncpg.PostgresError, RPCError) as error:
        errors.print(f"[red]error:[/red] {type(error).__name__}: {error}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
