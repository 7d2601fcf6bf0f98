"""Configuration from the environment, with the contract's defaults.

Temporal's own variables (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
`TEMPORAL_TLS_*`) are read by `temporalio.envconfig`; the database is `DATABASE_URL`. When
`make run` starts the embedded servers it writes their addresses to `.data/local.env`, which
is read when the variables are unset, so a second terminal needs no setup.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_TASK_QUEUE = "opportunities"
LOCAL_ENV_FILE = Path(".data") / "local.env"


def task_queue() -> str:
    return os.environ.get("OPPORTUNITIES_TASK_QUEUE") or DEFAULT_TASK_QUEUE


def _local_env() -> dict[str, str]:
    path = Path(os.environ.get("OPPORTUNITIES_LOCAL_ENV", LOCAL_ENV_FILE))
    if not path.is_file():
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
            "DATABASE_URL is not set and no local server is running: start one with "
            "`make run` (it writes .data/local.env), or set DATABASE_URL=postgresql://..."
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
