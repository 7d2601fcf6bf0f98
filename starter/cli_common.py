"""What every `opportunities` command shares: output, errors, connections."""

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
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from temporalio.client import WorkflowQueryFailedError

import store
from runtime import settings
from runtime.codec import KeySettingError
from runtime.temporal import Unreachable
from sales.errors import CommandRejected
from starter.client import OpportunityNotFound, StartFailed

console = Console()
errors = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
T = TypeVar("T")


class UserError(Exception):
    """Bad input or a refused command: printed as one line, exit code 1."""


def new_table(*headers: str, **options: Any) -> Table:
    """A table whose cells wrap rather than end in an ellipsis: ids must stay copyable."""
    result = Table(*headers, **options)
    for column in result.columns:
        column.overflow = "fold"
    return result


def new_app(help: str) -> typer.Typer:
    return typer.Typer(
        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=help
    )


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
    KeySettingError,
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
