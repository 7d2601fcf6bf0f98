"""`opportunities schema`: the published JSON Schemas, for services in any language."""

from __future__ import annotations

from typing import Annotated

import typer

from starter.cli.common import UserError, new_app
from starter.client import schemas

app = new_app("The JSON Schemas of every payload.")


@app.command("schema")
def schema(
    name: Annotated[
        str | None,
        typer.Argument(
            help="One schema: its file under contract/ without .json (commands/change_stage),"
            " or just its last part (change_stage). Default: all, keyed by file."
        ),
    ] = None,
    list_names: Annotated[bool, typer.Option("--list", help="Only list the names.")] = False,
) -> None:
    """Print the JSON Schemas (draft 2020-12) of the workflow inputs and results, every command
    (signal and update payload), the update result, every query result and the process
    definition: the same files as under `contract/`."""
    generated = {path.removesuffix(".json"): make for path, make in schemas.SCHEMAS.items()}
    if list_names:
        typer.echo("\n".join(generated))
        return
    if name is None:
        typer.echo(schemas.render({key: make() for key, make in generated.items()}), nl=False)
        return
    matches = [key for key in generated if key == name or key.rsplit("/", 1)[-1] == name]
    if len(matches) != 1:
        raise UserError(
            f"no schema {name!r}; schemas are: {', '.join(generated)}"
            if not matches
            else f"{name!r} names several schemas: {', '.join(matches)}; give the full name"
        )
    typer.echo(schemas.render(generated[matches[0]]()), nl=False)
