"""What the commands of the command line share: sending a command to an opportunity and
printing its result, the options every command takes, and the checks made before sending."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import typer

from sales.commands import (
    Command,
)
from sales.errors import CommandRejected
from sales.opportunity import Opportunity
from sales.results import CommandResult
from starter.cli.common import (
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
from starter.client import OpportunitiesClient
from starter.client.read_model import ReadModel
from store import users

ByOption = Annotated[
    str | None, typer.Option("--by", help="Who issues it (kept in history); default: you.")
]
C = TypeVar("C", bound=Command)


async def opportunity_of(activity_id: str) -> str:
    async with database() as pool:
        found = await ReadModel(pool).calendar_activity(activity_id)
    if found is None:
        raise UserError(f"unknown calendar activity {activity_id!r}")
    return found.opportunity_id


def command_of(model: type[C], *, by: str | None, **fields: Any) -> C:
    return validated(model, "command", {**fields, "by": by or actor()})


CLI_HINTS = {
    "activity_active": "on the command line: `opportunities activity delete ACTIVITY`",
}
"""What a command line user types about a rejection, by its code."""


def send(opportunity_id: str, command: Command, as_json: bool) -> None:
    """Send a command as an update and print its result (one line per action)."""

    async def work() -> None:
        client = await OpportunitiesClient.connect(signer=cli_signer(command.by))
        try:
            result = await client.execute(opportunity_id, command)
        except CommandRejected as rejected:
            if rejected.code in CLI_HINTS:
                hinted = f"{rejected.reason} ({CLI_HINTS[rejected.code]})"
                raise CommandRejected(hinted, code=rejected.code) from None
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
    for action in result.actions:
        if action.code == "activity_canceled":
            console.print(
                f"{action.action_id}: to create another activity: opportunities activity delete "
                f"{action.activity_id}, then opportunities perform {opportunity_id} "
                f"{action.action_id}",
                highlight=False,
            )
    console.print(f"stage: {result.current_stage} ({result.status})", highlight=False)


async def state_of(opportunity_id: str) -> Opportunity:
    return await (await OpportunitiesClient.connect(signer=cli_signer())).state(opportunity_id)


async def require_users(user_ids: list[str]) -> None:
    """Refuse a user id that `user add` never added."""
    async with database() as pool:
        for user_id in user_ids:
            if await users.get_user(pool, user_id) is None:
                known = [u.user_id for u in await users.list_users(pool)][:20]
                raise UserError(f"unknown user {user_id!r}; users are {known}")
