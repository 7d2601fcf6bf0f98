"""Connecting to Temporal the same way everywhere: envconfig settings, the pydantic converter."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from runtime.settings import setting


async def connect(address: str | None = None, **overrides: Any) -> Client:
    """A client configured from `TEMPORAL_*` variables (TLS, API key, namespace included)."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    target = address or setting("TEMPORAL_ADDRESS") or config.get("target_host")
    config["target_host"] = target or "localhost:7233"
    config.setdefault("namespace", "default")
    config.update(overrides)
    return await Client.connect(**config, data_converter=pydantic_data_converter)
