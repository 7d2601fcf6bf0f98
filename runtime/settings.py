"""Configuration from the environment, with the contract's defaults.

Temporal's own variables (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
`TEMPORAL_TLS_*`) are read by `temporalio.envconfig`; the database is `DATABASE_URL`. When
`make run` starts the embedded servers it writes their addresses to `local.env` in its data
folder and records that folder in the user's state directory, so a terminal in any folder
needs no setup while it runs (`local_env_file` says which file is read).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TASK_QUEUE = "opportunities"
DATA_FOLDER = Path(".data")
"""`make run`'s data folder, in the repository it runs from."""
LOCAL_ENV = "local.env"


def state_directory() -> Path:
    """Where `make run` records its data folder: `$XDG_STATE_HOME/opportunities`."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "opportunities"


def data_folder_record() -> Path:
    return state_directory() / "data-folder"


def local_env_file() -> Path | None:
    """The servers `make run` started: `OPPORTUNITIES_LOCAL_ENV` (a file), else
    `OPPORTUNITIES_HOME` (a data folder), else `.data` here, else the data folder the
    running `make run` recorded."""
    if explicit := os.environ.get("OPPORTUNITIES_LOCAL_ENV"):
        return Path(explicit)
    if home := os.environ.get("OPPORTUNITIES_HOME"):
        return Path(home) / LOCAL_ENV
    if (here := DATA_FOLDER / LOCAL_ENV).is_file():
        return here
    record = data_folder_record()
    if record.is_file():
        return Path(record.read_text().strip()) / LOCAL_ENV
    return None


def task_queue() -> str:
    return os.environ.get("OPPORTUNITIES_TASK_QUEUE") or DEFAULT_TASK_QUEUE


def delivery_task_queue(opportunities_queue: str | None = None) -> str:
    """Where the delivery activities run: `OPPORTUNITIES_DELIVERY_TASK_QUEUE`, else the
    opportunities' task queue's name with `-delivery`."""
    return (
        os.environ.get("OPPORTUNITIES_DELIVERY_TASK_QUEUE")
        or f"{opportunities_queue or task_queue()}-delivery"
    )


def _local_env() -> dict[str, str]:
    path = local_env_file()
    if path is None or not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def setting(name: str) -> str | None:
    """An environment variable, else the value `make run` wrote for the local servers."""
    return os.environ.get(name) or _local_env().get(name)


class NotConfigured(Exception):
    pass


class BadSetting(ValueError):
    """A setting that cannot be used; the message names it and says why (never a secret)."""


def database_url() -> str:
    url = setting("DATABASE_URL")
    if not url:
        raise NotConfigured(
            "no database: `make run` is not running (it records its data folder in "
            f"{data_folder_record()}); start it, or set OPPORTUNITIES_HOME=<repository>/.data, "
            "or set DATABASE_URL=postgresql://... and TEMPORAL_ADDRESS=host:port"
        )
    return url


def redact(url: str) -> str:
    """A URL fit for logs: any password replaced by `***`."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
