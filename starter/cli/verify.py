"""`opportunities verify`: does the read model say what the workflows say?"""

from __future__ import annotations

import asyncio
from typing import Annotated

import asyncpg
import typer

from runtime.workflow_ids import opportunity_id_of
from starter.cli.common import (
    JsonFlag,
    UserError,
    cli_signer,
    console,
    database,
    new_app,
    print_json,
    run,
)
from starter.client import OpportunitiesClient
from starter.client.read_model import ReadModel
from starter.client.verify import UNCHECKED, Verdict, verify

app = new_app("Checks.")

AT_ONCE = 20
"""Opportunities compared at the same time."""


@app.command("verify")
def verify_command(
    opportunity_ids: Annotated[
        list[str] | None, typer.Argument(help="The opportunities to check.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every opportunity: read model and running workflows.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Compare each opportunity's workflow state with its rows in the read model and print
    every difference, and every opportunity that could not be checked with the reason (its
    workflow cannot be queried, a row cannot be read, ...); exit code 1 when there is any.
    Each is checked on its own: one that cannot be does not stop the others."""
    if bool(opportunity_ids) == every:
        raise UserError("give opportunity ids or --all (not both)")

    async def work() -> int:
        client = await OpportunitiesClient.connect(signer=cli_signer())
        async with database() as pool:
            ids = list(opportunity_ids or [])
            if every:
                ids = await _every_id(client, pool)
            limit = asyncio.Semaphore(AT_ONCE)

            async def one(opportunity_id: str) -> Verdict:
                async with limit:
                    return await verify(client, pool, opportunity_id)

            verdicts = await asyncio.gather(*(one(i) for i in ids))
        unchecked = [v for v in verdicts if _unchecked(v)]
        different = [v for v in verdicts if v.differences and not _unchecked(v)]
        if as_json:
            print_json([v.__dict__ for v in verdicts])
        else:
            for verdict in verdicts:
                for difference in verdict.differences:
                    console.print(f"{verdict.opportunity_id}: {difference}", highlight=False)
            skipped = [v for v in verdicts if not v.compared and not v.differences]
            for verdict in skipped:
                console.print(f"{verdict.opportunity_id}: not compared ({verdict.note})")
            compared = sum(v.compared for v in verdicts)
            console.print(
                f"{compared} compared, {len(different)} with differences, "
                f"{len(unchecked)} could not be checked",
                highlight=False,
            )
        return 1 if different or unchecked else 0

    code = run(work)
    if code:
        raise typer.Exit(code)


def _unchecked(verdict: Verdict) -> bool:
    return bool(verdict.differences) and verdict.differences[0].startswith(UNCHECKED)


async def _every_id(client: OpportunitiesClient, pool: asyncpg.Pool) -> list[str]:
    ids = set(await ReadModel(pool).matching_ids())
    query = 'WorkflowType = "Opportunity" AND ExecutionStatus = "Running"'
    async for execution in client.temporal.list_workflows(query):
        ids.add(opportunity_id_of(execution.id) or execution.id)
    return sorted(ids)
