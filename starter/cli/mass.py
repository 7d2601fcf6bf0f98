"""`opportunities mass-modify`: change the stage or owner of many opportunities at once, or move
each to its next stage."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Annotated

import typer
from asyncpg import Pool
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import WorkflowAlreadyStartedError

from runtime.escaping import escaped
from sales.errors import CommandRejected
from starter.cli.common import (
    JsonFlag,
    Unsuccessful,
    UserError,
    actor,
    cli_signer,
    console,
    counted,
    database,
    new_table,
    print_json,
    print_table,
    run,
    validated,
)
from starter.cli.filters import with_search_filters
from starter.client import OpportunitiesClient, batch_refusal
from starter.client.read_model import ReadModel
from store import batches, processes, search, users
from store.search import SearchFilters
from workflows.mass_messages import MassModifyInput
from workflows.mass_messages import Progress as BatchProgress

mass_app = typer.Typer(
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
    help="Change the stage (or owner) of every opportunity matching the filters, or move each "
    "to its next stage.",
)


@mass_app.callback()
@with_search_filters(owner_option="--with-owner", owner_parameter="owner_filter")
def mass_modify(
    ctx: typer.Context,
    to_stage: Annotated[
        str | None, typer.Option("--to-stage", help="Move them to this stage.")
    ] = None,
    to_next_stage: Annotated[
        bool,
        typer.Option(
            "--to-next-stage",
            help="Move each to the stage after the one it is in now (never into a closing "
            "stage; one that moves meanwhile is left where it is).",
        ),
    ] = False,
    cancel: Annotated[
        bool,
        typer.Option("--cancel-open-activities", help="Cancel open activities of the stage left."),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why (kept in history); a won or lost reason if listed."),
    ] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Give them this owner.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Start it and return at once.")] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Changes unanswered.")] = 200,
    batch_id: Annotated[str | None, typer.Option("--batch-id", help="Default: generated.")] = None,
    as_json: JsonFlag = False,
    filters: SearchFilters | None = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    if sum((to_stage is not None, to_next_stage, owner is not None)) != 1:
        raise UserError("give exactly one of --to-stage, --to-next-stage and --owner")
    assert filters is not None
    batch = validated(MassModifyInput, "mass modification", {
        "batch_id": batch_id or f"mass-{uuid.uuid4().hex[:10]}", "filters": filters,
        "to_stage": to_stage, "to_next_stage": to_next_stage, "cancel_open_activities": cancel,
        "reason": reason,
        "owner": owner, "by": actor(), "concurrency": concurrency,
    })  # fmt: skip

    async def checked() -> int:
        async with database() as pool:
            await _check_batch(pool, batch)
            matching = (await ReadModel(pool).search(filters, limit=1)).total
            if matching and to_stage is not None:
                await _check_stage(pool, filters, to_stage)
        if matching == 0:
            raise UserError("no opportunity matches these filters")
        return matching

    matching = run(checked)
    if not yes:  # asked outside the event loop, where Ctrl-C interrupts the question
        question = _question(batch, matching)
        if not sys.stdin.isatty():
            raise UserError(f"{question} Answer with --yes")
        if not typer.confirm(escaped(question), default=False):
            raise typer.Exit(1)

    async def work() -> None:
        client = await OpportunitiesClient.connect(signer=cli_signer())
        try:
            handle = await client.start_mass_modify(batch)
        except WorkflowAlreadyStartedError:
            raise UserError(
                f"batch {batch.batch_id} is running: mass-modify status {batch.batch_id}"
            ) from None
        if detach:
            if as_json:
                print_json({"batch_id": batch.batch_id, "workflow_id": handle.id})
            else:
                console.print(
                    f"batch {batch.batch_id} started: mass-modify status {batch.batch_id}"
                )
            return
        description = TextColumn("{task.description}", markup=False)
        columns = (description, BarColumn(), MofNCompleteColumn())
        with Progress(
            *columns, TimeElapsedColumn(), console=console, transient=True, disable=as_json
        ) as bar:
            task = bar.add_task(f"batch {batch.batch_id}", total=matching)
            result = asyncio.ensure_future(handle.result())
            while not result.done():
                progress = await client.mass_progress(batch.batch_id)
                bar.update(task, completed=progress.done, total=progress.total or matching)
                await asyncio.wait({result}, timeout=0.5)
        try:
            done = result.result()
        except WorkflowFailureError as error:
            raise batch_refusal(error) from None
        report(done, as_json)

    run(work)


def _question(batch: MassModifyInput, matching: int) -> str:
    """The confirmation asked before the batch starts."""
    if batch.to_next_stage:
        return f"Move {counted(matching, 'opportunity')} each to its next stage?"
    change = f"to stage {batch.to_stage!r}" if batch.to_stage else f"to owner {batch.owner!r}"
    return f"Change {counted(matching, 'opportunity')} {change}?"


async def _check_batch(pool: Pool, batch: MassModifyInput) -> None:
    """Refuse at once what the batch's first activity would refuse anyway: an owner who is
    no user, a batch id used for another change."""
    if batch.owner is not None and not await users.existing(pool, [batch.owner]):
        raise CommandRejected(
            f"no user {batch.owner!r}; `opportunities user add` adds one",
            code="unknown_user",
        )
    if await batches.request_of(pool, batch.batch_id) not in (None, batch.request_hash()):
        raise CommandRejected(
            f"batch {batch.batch_id!r} was used for another change; give another --batch-id",
            code="batch_exists",
        )


async def _check_stage(pool: Pool, filters: search.SearchFilters, to_stage: str) -> None:
    """Refuse a target stage that no selected opportunity's process has."""
    stages: set[str] = set()
    for process_id, version in await ReadModel(pool).process_versions(filters):
        process = await processes.get_process(pool, process_id, version)
        if process is not None:
            stages.update(process.definition.stage_names())
    if to_stage not in stages:
        raise UserError(
            f"no selected opportunity's process has stage {to_stage!r}; "
            f"their stages are {sorted(stages)}"
        )


@mass_app.command("status")
def status_command(batch_id: str, as_json: JsonFlag = False) -> None:
    """Progress of a running or finished batch."""

    async def work() -> None:
        client = await OpportunitiesClient.connect(signer=cli_signer())
        report(await client.mass_progress(batch_id), as_json)

    run(work)


def report(progress: BatchProgress, as_json: bool) -> None:
    """The batch's report; a finished batch that rejected every opportunity fails (exit 1),
    with `--json` too."""
    if as_json:
        print_json(progress)
    else:
        _print_report(progress)
    if progress.finished and progress.total and progress.rejected == progress.total:
        raise Unsuccessful(f"every one of {counted(progress.total, 'opportunity')} was rejected")


def _print_report(progress: BatchProgress) -> None:
    state = "canceled" if progress.canceled else ("finished" if progress.finished else "running")
    console.print(
        f"batch {progress.batch_id} {state}: {progress.done} of {progress.total} done, "
        f"{progress.changed} changed, {progress.skipped} skipped, {progress.rejected} rejected",
        highlight=False,
    )
    if progress.outcomes:
        table = new_table("opportunity", "result", "reason")
        for outcome in progress.outcomes:
            table.add_row(outcome.opportunity_id, outcome.result, outcome.reason)
        print_table(table)
