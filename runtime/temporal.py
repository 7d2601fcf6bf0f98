"""Connecting to Temporal the same way everywhere: envconfig settings, the pydantic converter."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from runtime.codec import data_converter
from runtime.settings import setting


async def connect(address: str | None = None, **overrides: Any) -> Client:
    """A client configured from `TEMPORAL_*` variables (TLS, API key, namespace included),
    encrypting payloads when `OPPORTUNITIES_ENCRYPTION_KEY` is set."""
    config = connect_config(address, **overrides)
    converter = data_converter()
    try:
        return await Client.connect(**config, data_converter=converter)
    except RuntimeError as error:  # the SDK's bridge reports connection failures this way
        raise Unreachable(
            f"cannot reach Temporal at {config['target_host']}: is `make run` running, "
            "or is TEMPORAL_ADDRESS right?"
        ) from error


def connect_config(address: str | None = None, **overrides: Any) -> dict[str, Any]:
    """`Client.connect` arguments from Temporal's standard variables and profile file
    (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS_*`,
    `TEMPORAL_PROFILE`), as every Temporal tool reads them."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    target = address or setting("TEMPORAL_ADDRESS") or config.get("target_host")
    config["target_host"] = target or "localhost:7233"
    config.setdefault("namespace", "default")
    config.update(overrides)
    return config


async def connect_patiently(seconds: float = 60.0, runtime: Runtime | None = None) -> Client:
    """Connect, retrying while the server starts (a worker started beside its server)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            return await connect(runtime=runtime)
        except Unreachable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


class Unreachable(Exception):
    """Temporal did not answer at the configured address."""
