"""`opportunities`: the command line for operators and scripts.

Every command that prints takes `--json` for machine output. Errors go to stderr as one
sentence that says what is wrong, with exit code 1 (2 for usage errors, from typer).
"""

from __future__ import annotations

import os
import sys

import asyncpg
from pydantic import ValidationError
from temporalio.service import RPCError

from activities import rendering
from sales.errors import describe_validation_error
from starter import (
    cli_actions,
    cli_codec,
    cli_mass,
    cli_opportunities,
    cli_schema,
    cli_setup,
    cli_verify,
)
from starter.cli_common import EXPECTED_ERRORS, errors, new_app

app = new_app(
    "Sales opportunities on Temporal: setup, contacts, and the commands that advance a sale."
)
app.add_typer(cli_setup.process_app, name="process")
app.add_typer(cli_setup.contact_app, name="contact")
app.add_typer(cli_setup.event_app, name="event")
app.add_typer(cli_setup.template_app, name="template")
app.add_typer(cli_setup.letter_app, name="letter")
app.add_typer(cli_setup.user_app, name="user")
app.add_typer(cli_mass.mass_app, name="mass-modify")
for command in [
    *cli_opportunities.app.registered_commands,
    *cli_actions.app.registered_commands,
    *cli_schema.app.registered_commands,
    *cli_codec.app.registered_commands,
    *cli_verify.app.registered_commands,
]:
    app.registered_commands.append(command)
app.add_typer(cli_actions.action_app, name="action")
app.add_typer(cli_actions.activity_app, name="activity")
app.add_typer(cli_opportunities.remark_app, name="remark")


def main() -> None:
    code = _run_app()
    # Leave without interpreter finalization: the Temporal client's native runtime threads can
    # abort a finalizing interpreter (PyGILState_Release) after the command has already
    # succeeded or failed cleanly. Everything was flushed; the letter renderers that `template
    # add` started are stopped here, since no exit handler runs.
    rendering.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_app() -> int:
    try:
        app()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except EXPECTED_ERRORS as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
    except ValidationError as error:  # input a command did not check itself
        errors.print(f"[red]error:[/red] {describe_validation_error(error)}", highlight=False)
    except asyncpg.UndefinedTableError:
        errors.print(
            "[red]error:[/red] the database has no tables yet: start a worker "
            "(`make run` or `opportunities-worker`) once to apply the migrations",
            highlight=False,
        )
    except (OSError, asyncpg.PostgresError, RPCError) as error:
        errors.print(f"[red]error:[/red] {type(error).__name__}: {error}", highlight=False)
    return 1
