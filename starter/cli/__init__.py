"""`opportunities`: the command line for operators and scripts.

Every command that prints takes `--json` for machine output. Errors go to stderr as one
sentence that says what is wrong, with exit code 1 (2 for usage errors, from typer); what
they quote is shown escaped, as all output is (`starter.cli.common`).
"""

from __future__ import annotations

import os
import sys

import asyncpg
import typer
from pydantic import ValidationError
from temporalio.service import RPCError
from typer import TyperException, rich_utils

from activities import rendering
from runtime.escaping import neutralized
from sales.errors import CommandRejected, describe_validation_error, with_code
from starter.cli import actions, book, codec, mass, opportunities, reports, schema, setup, verify
from starter.cli import authz as authz_cli
from starter.cli import feed as feed_cli
from starter.cli import subscriptions as subscriptions_cli
from starter.cli import value as value_cli
from starter.cli.common import EXPECTED_ERRORS, errors, new_app, styled

app = new_app(
    "Sales opportunities on Temporal: setup, contacts, and the commands that advance a sale."
)
app.add_typer(setup.process_app, name="process")
app.add_typer(setup.contact_app, name="contact")
app.add_typer(setup.event_app, name="event")
app.add_typer(setup.template_app, name="template")
app.add_typer(setup.letter_app, name="letter")
app.add_typer(setup.user_app, name="user")
app.add_typer(mass.mass_app, name="mass-modify")
app.add_typer(reports.report_app, name="report")
app.add_typer(subscriptions_cli.app, name="subscription")
app.add_typer(authz_cli.keys_app, name="keys")
app.add_typer(authz_cli.permissions_app, name="permissions")
for command in [
    *opportunities.app.registered_commands,
    *actions.app.registered_commands,
    *schema.app.registered_commands,
    *codec.app.registered_commands,
    *verify.app.registered_commands,
    *value_cli.app.registered_commands,
    *feed_cli.app.registered_commands,
    *book.app.registered_commands,
    *authz_cli.audit_app.registered_commands,
]:
    app.registered_commands.append(command)
app.add_typer(actions.action_app, name="action")
app.add_typer(actions.activity_app, name="activity")
app.add_typer(opportunities.remark_app, name="remark")


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
        result = app(standalone_mode=False)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except typer.Abort:
        failed("aborted")
    except TyperException as error:  # a usage error: it may quote what was typed
        error.message = neutralized(error.message)
        rich_utils.rich_format_error(error)  # type: ignore[arg-type]
        return error.exit_code
    except CommandRejected as error:  # its code first, as every client shows a rejection
        failed(with_code(error.code, error.reason))
    except EXPECTED_ERRORS as error:
        failed(str(error))
    except ValidationError as error:  # input a command did not check itself
        failed(describe_validation_error(error))
    except asyncpg.UndefinedTableError:
        failed(
            "the database has no tables yet: start a worker "
            "(`make run` or `opportunities-worker`) once to apply the migrations"
        )
    except (OSError, asyncpg.PostgresError, RPCError) as error:
        failed(f"{type(error).__name__}: {error}")
    else:
        return result if isinstance(result, int) else 0
    return 1


def failed(message: str) -> None:
    """The one line on stderr of a command that failed: `error: ` and the message, shown as
    data (never as markup, its control characters escaped)."""
    errors.print(styled("error:", "red"), message, highlight=False)
