"""Worker Versioning: the deployment version a worker runs as, and who makes it current.

A worker polls as version `OPPORTUNITIES_DEPLOYMENT` (default `opportunities`) /
`OPPORTUNITIES_BUILD_ID` (default `src-` and a hash of the code its tasks run, so that new
code is a new version). Temporal gives a task to the deployment's current version (or its
ramping one): nothing runs until a current version is set. `OPPORTUNITIES_SET_CURRENT` says
whether this worker sets it once it polls: `if-none` (the default: on a namespace whose
deployment has no current version yet, the first version to poll becomes it), `always`
(`make run`: the code in front of you takes over) or `never` (a rollout: the operator ramps
and sets it, docs/versioning.md). `OPPORTUNITIES_WORKER_VERSIONING=off` runs unversioned.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Literal

from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig, WorkerDeploymentVersion

from runtime import settings

log = logging.getLogger("opportunities.deployment")

DEFAULT_DEPLOYMENT = "opportunities"
CODE_PACKAGES = ("sales", "workflows", "activities", "store", "runtime")
"""The packages whose code a workflow or activity task runs: what the default build id hashes."""
SetCurrent = Literal["if-none", "always", "never"]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
UNVERSIONED = "__unversioned__"


def source_build_id() -> str:
    """`src-` and the first 12 hex digits of a SHA-256 over the code packages' files, as
    they were when this module was imported (the code this process runs)."""
    return _SOURCE_BUILD_ID


def _hash_sources() -> str:
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes())
    return f"src-{digest.hexdigest()[:12]}"


_SOURCE_BUILD_ID = _hash_sources()


def version() -> WorkerDeploymentVersion | None:
    """This worker's version (None: `OPPORTUNITIES_WORKER_VERSIONING=off`)."""
    switch = (settings.setting("OPPORTUNITIES_WORKER_VERSIONING") or "on").lower()
    if switch not in ("on", "off"):
        raise settings.BadSetting(
            f"OPPORTUNITIES_WORKER_VERSIONING must be on or off, not {switch!r}"
        )
    if switch == "off":
        return None
    name = settings.setting("OPPORTUNITIES_DEPLOYMENT") or DEFAULT_DEPLOYMENT
    build_id = settings.setting("OPPORTUNITIES_BUILD_ID") or source_build_id()
    for variable, value in (
        ("OPPORTUNITIES_DEPLOYMENT", name),
        ("OPPORTUNITIES_BUILD_ID", build_id),
    ):
        if not NAME.match(value):
            raise settings.BadSetting(
                f"{variable} must be 1 to 100 letters, digits, '.', '_' or '-', not {value!r}"
            )
    return WorkerDeploymentVersion(deployment_name=name, build_id=build_id)


def config(
    running: WorkerDeploymentVersion | None,
) -> WorkerDeploymentConfig | None:
    """The worker's deployment settings: its workflows upgrade to the current version at their
    next task unless they declare otherwise (a batch is pinned)."""
    if running is None:
        return None
    return WorkerDeploymentConfig(
        version=running,
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.AUTO_UPGRADE,
    )


def set_current_setting() -> SetCurrent:
    raw = (settings.setting("OPPORTUNITIES_SET_CURRENT") or "if-none").lower()
    if raw not in ("if-none", "always", "never"):
        raise settings.BadSetting(
            f"OPPORTUNITIES_SET_CURRENT must be if-none, always or never, not {raw!r}"
        )
    return raw  # type: ignore[return-value]


async def current_build_id(client: Client, deployment_name: str) -> str | None:
    """The build id of the deployment's current version (None: none, or no such deployment)."""
    try:
        described = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(
                namespace=client.namespace, deployment_name=deployment_name
            )
        )
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    routing = described.worker_deployment_info.routing_config
    current = routing.current_deployment_version
    if current.build_id:
        return current.build_id
    if routing.current_version and routing.current_version != UNVERSIONED:
        return routing.current_version.rpartition(".")[2]
    return None


async def make_current(
    client: Client,
    running: WorkerDeploymentVersion,
    *,
    only_if_none: bool = False,
    within: float = 120.0,
) -> bool:
    """Make `running` its deployment's current version, once the server knows it (its workers
    poll); with `only_if_none`, only while the deployment has none. True when it set it."""
    deadline = time.monotonic() + within
    pause = 0.2
    while True:
        try:
            current = await current_build_id(client, running.deployment_name)
            if current == running.build_id or (only_if_none and current is not None):
                return False
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=running.deployment_name,
                    build_id=running.build_id,
                    identity=client.identity,
                )
            )
            log.info("version %s of deployment %s is current", running.build_id,
                     running.deployment_name)  # fmt: skip
            return True
        except RPCError as error:  # not polled yet, or the deployment is busy: again
            if time.monotonic() > deadline:
                raise
            log.debug("version %s not current yet: %s", running.build_id, error)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


async def settle(
    client: Client, running: WorkerDeploymentVersion | None, wanted: SetCurrent
) -> None:
    """What `OPPORTUNITIES_SET_CURRENT` (`wanted`) asks of a worker that has started polling;
    once per process and version (its other workers find it settled)."""
    if running is None or wanted == "never":
        return
    server = client.service_client.config.target_host
    key = (server, client.namespace, running.deployment_name, running.build_id)
    if key in _SETTLED:
        return
    await make_current(client, running, only_if_none=wanted == "if-none")
    _SETTLED.add(key)


_SETTLED: set[tuple[str, str, str, str]] = set()
"""(server, namespace, deployment, build id) this process has settled."""
