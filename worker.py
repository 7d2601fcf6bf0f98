"""The worker: runs Opportunity workflows and their activities on the `opportunities` queue.

`opportunities-worker` (or `python worker.py`) connects to `TEMPORAL_ADDRESS` and
`DATABASE_URL`, checks that the database has every migration (`opportunities migrate`, the
setup step, applies them), and polls until SIGINT or SIGTERM, then finishes the tasks in hand
before exiting. Run as many as you like on one queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

import asyncpg
import jwt
from temporalio.client import Client
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    Worker,
    WorkerDeploymentVersion,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import store
from activities import rendering
from activities.calendar import CalendarActivities
from activities.event_delivery import DeliverySettings, EventDeliveryActivities
from activities.events import EventActivities
from activities.letters import LetterActivities, Mailer
from activities.mass import MassActivities
from activities.opportunity_activities import OpportunityActivities
from runtime import deployment, settings
from runtime.codec import tolerant
from runtime.observability import configure_logging, metrics_address, metrics_runtime
from runtime.signer import Signer
from runtime.temporal import connect_patiently
from sales.authorization import Directory
from sales.registry import COMMANDS
from store import authorization
from store.schema import pending
from workflows import outbox_retention
from workflows.authorization import DIRECTORIES, Authorization, DirectoryHolder
from workflows.mass_modify import MassModifyWorkflow, PinnedMassModifyWorkflow
from workflows.opportunity import OpportunityWorkflow
from workflows.outbox_retention import OutboxRetentionWorkflow
from workflows.payloads import OneArgument
from workflows.subscription import SubscriptionWorkflow

log = logging.getLogger("opportunities.worker")

SIGNED_STARTS = ("Opportunity", "MassModify")
"""The workflow types whose starts carry a signed actor (checked when the first run begins)."""


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str | None = None,
    mailer: Mailer | None = None,
    opportunity_activities: OpportunityActivities | None = None,
    directory: DirectoryHolder | None = None,
    service_key: Signer | None = None,
) -> Worker:
    """A worker with every workflow and activity; tests may swap the projection activities.
    It decodes with `client`'s converter made tolerant of undecodable extra arguments, and
    hands every start and command exactly one raw argument (`OneArgument`). Its workflows
    judge signed actors by `directory` (default: none, authorization off); a batch signs its
    members' commands with `service_key`."""
    queue = task_queue or settings.task_queue()
    if directory is not None or queue not in DIRECTORIES:  # another worker of the queue
        DIRECTORIES[queue] = directory or DirectoryHolder()  # in this process keeps its own
    activities = [
        *(opportunity_activities or OpportunityActivities(pool, client)).all(),
        *MassActivities(pool, client, service_key).all(),
        *CalendarActivities(pool).all(),
        *LetterActivities(pool, mailer).all(),
        *EventActivities(pool).all(),
        *EventDeliveryActivities(pool, client, DeliverySettings()).maintenance(),
    ]
    return workflow_worker(client, queue, activities)


def delivery_worker(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str | None = None,
    delivery: DeliverySettings | None = None,
) -> Worker:
    """The worker of the delivery task queue: only the long-running delivery activities
    (one per subscription), so HTTP waits never take the opportunities' activity slots."""
    running = deployment.version()
    return VersionedWorker(
        client,
        running,
        task_queue=task_queue or settings.delivery_task_queue(),
        activities=EventDeliveryActivities(pool, client, delivery).delivery(),
        max_concurrent_activities=1000,
        deployment_config=deployment.config(running),
    )


def workflow_worker(client: Client, task_queue: str, activities: list[Any]) -> Worker:
    """A worker of both workflows with these activities (the real ones, or the shell tier's
    fakes), set up as every worker is."""
    running = deployment.version()
    return VersionedWorker(
        _decoding_tolerantly(client),
        running,
        task_queue=task_queue,
        workflows=[
            OpportunityWorkflow,
            PinnedMassModifyWorkflow if running is not None else MassModifyWorkflow,
            SubscriptionWorkflow,
            OutboxRetentionWorkflow,
        ],
        activities=activities,
        interceptors=[OneArgument(COMMANDS), Authorization(COMMANDS, SIGNED_STARTS)],
        max_cached_workflows=cached_workflows(),
        max_concurrent_workflow_tasks=concurrency("OPPORTUNITIES_MAX_CONCURRENT_WORKFLOW_TASKS", 2),
        max_concurrent_activities=concurrency("OPPORTUNITIES_MAX_CONCURRENT_ACTIVITIES", 1),
        workflow_runner=workflow_runner(),
        deployment_config=deployment.config(running),
    )


class VersionedWorker(Worker):
    """A worker that, once polling, makes its deployment version current as
    `OPPORTUNITIES_SET_CURRENT` says (runtime/deployment.py)."""

    def __init__(
        self, client: Client, running: WorkerDeploymentVersion | None, **options: Any
    ) -> None:
        super().__init__(client, **options)
        self._client, self._running = client, running
        self._set_current = deployment.set_current_setting()
        self._settling: asyncio.Task[None] | None = None

    async def __aenter__(self) -> VersionedWorker:
        await super().__aenter__()
        self._settling = asyncio.create_task(self._settle())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._settling is not None:
            self._settling.cancel()
        await super().__aexit__(*exc)

    async def _settle(self) -> None:
        try:
            await deployment.settle(self._client, self._running, self._set_current)
        except Exception:
            log.exception("the deployment's current version could not be set")


def concurrency(variable: str, least: int) -> int | None:
    """A worker's limit of tasks at once (None: the SDK's default, 100)."""
    raw = settings.setting(variable)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{variable} must be a whole number, not {raw!r}") from None
    if not least <= value <= 10_000:
        raise SystemExit(f"{variable} must be {least} to 10000, not {value}")
    return value


def _decoding_tolerantly(client: Client) -> Client:
    config = client.config()
    config["data_converter"] = tolerant(client.data_converter)
    return Client(**config)


def workflow_runner() -> WorkflowRunner:
    """`OPPORTUNITIES_WORKFLOW_SANDBOX`: `off` (the default) runs workflow code directly, `on`
    inside the SDK's sandbox, which re-imports the workflow's modules for every run and goes
    through its import and builtins guards on every activation and payload
    (docs/decisions/workflow-code-outside-the-sandbox.md). The workflow code
    keeps to what the sandbox allows (the rules are a pure core, time is `workflow.now()`),
    and the suite replays every recorded history inside the sandbox, so a forbidden call
    still fails the build."""
    raw = (settings.setting("OPPORTUNITIES_WORKFLOW_SANDBOX") or "off").lower()
    if raw not in ("on", "off"):
        raise SystemExit(f"OPPORTUNITIES_WORKFLOW_SANDBOX must be on or off, not {raw!r}")
    return sandboxed_runner() if raw == "on" else UnsandboxedWorkflowRunner()


def sandboxed_runner() -> SandboxedWorkflowRunner:
    """The SDK's sandbox, passing through the libraries that verify signed actors: they are
    deterministic, and the OpenSSL bindings they load on first use cannot be re-imported."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(
        "cryptography", "jwt", "rfc8785", "_cffi_backend"
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)


def cached_workflows() -> int:
    """`OPPORTUNITIES_MAX_CACHED_WORKFLOWS`: opportunities kept in memory between their tasks
    (default 5,000). A task for one that is not cached replays its whole history first; with
    the SDK's default of 1,000, moving 2,000 opportunities replayed on almost every task."""
    raw = settings.setting("OPPORTUNITIES_MAX_CACHED_WORKFLOWS") or "5000"
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(
            f"OPPORTUNITIES_MAX_CACHED_WORKFLOWS must be a whole number, not {raw!r}"
        ) from None
    if value < 0:
        raise SystemExit(f"OPPORTUNITIES_MAX_CACHED_WORKFLOWS must be 0 or more, not {value}")
    return value


def reload_seconds() -> float:
    """`OPPORTUNITIES_AUTHZ_RELOAD`: how often the worker loads keys, roles, permissions and
    the mode again (default 30 s; at most 50, so that everything written is loaded before it
    takes effect, `store.authorization.EFFECTIVE_AFTER` later)."""
    raw = settings.setting("OPPORTUNITIES_AUTHZ_RELOAD") or "30"
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"OPPORTUNITIES_AUTHZ_RELOAD must be seconds, not {raw!r}") from None
    if not 1 <= value <= 50:
        raise SystemExit(f"OPPORTUNITIES_AUTHZ_RELOAD must be 1 to 50 seconds, not {raw!r}")
    return value


async def load_directory_or_exit(pool: asyncpg.Pool) -> Directory:
    """The directory, with `SALES_AUTH` recorded if it changed; exit naming a key that cannot
    be read."""
    mode = settings.setting("SALES_AUTH")
    if mode:
        if mode not in ("off", "record", "enforce"):
            raise SystemExit(f"SALES_AUTH must be off, record or enforce, not {mode!r}")
        latest = await authorization.latest_mode(pool)
        try:
            if latest != mode and await authorization.record_mode(pool, mode):  # type: ignore[arg-type]
                log.info("authorization mode %s recorded; in effect in %s", mode,
                         authorization.EFFECTIVE_AFTER)  # fmt: skip
        except asyncpg.InsufficientPrivilegeError:
            raise SystemExit(
                f"worker not started: SALES_AUTH={mode}, but the database records {latest} and "
                f"this worker's login may not change it: run `opportunities migrate` with "
                f"SALES_AUTH={mode} (the setup step)"
            ) from None
    try:
        directory = await authorization.load_directory(pool)
    except ValueError as error:
        raise SystemExit(f"worker not started: the keys cannot be read: {error}") from None
    for kid, key in directory.keys.items():
        try:
            key.public_key  # noqa: B018 (made now: a broken key stops the start, named)
        except (jwt.PyJWTError, ValueError) as error:
            raise SystemExit(f"worker not started: signing key {kid!r} cannot be read: "
                             f"{error}") from None  # fmt: skip
    return directory


async def keep_loading(pool: asyncpg.Pool, holder: DirectoryHolder) -> None:
    """Load the directory again every `reload_seconds`; a failure keeps the last one (and is
    logged), since records take effect only later."""
    every = reload_seconds()
    while True:
        await asyncio.sleep(every)
        try:
            holder.current = await authorization.load_directory(pool)
        except Exception:
            log.exception("loading keys and permissions failed; keeping the last ones")


def service_key_from_environment() -> Signer | None:
    """`OPPORTUNITIES_SERVICE_KEY_FILE`: the worker's service key (`"service": true`), with
    which a batch signs each member's command for its starter; the worker refuses to start
    with a key file it cannot read, and names it."""
    path = settings.setting("OPPORTUNITIES_SERVICE_KEY_FILE")
    if not path:
        return None
    try:
        return Signer.from_file(Path(path))
    except ValueError as error:
        raise SystemExit(f"worker not started: {error}") from None


def mailer_from_environment() -> Mailer | None:
    """`SMTP_URL` (and `SMTP_FROM`) configure e-mail; without them letters are filed."""
    url = settings.setting("SMTP_URL")
    if not url:
        return None
    return Mailer(url, settings.setting("SMTP_FROM") or "opportunities@localhost")


async def serve(stop: asyncio.Event) -> None:
    """Run one worker until `stop` is set."""
    rendering.check_settings()
    runtime = metrics_runtime()
    client = await connect_patiently(runtime=runtime)
    if runtime is not None:
        log.info("Prometheus metrics on http://%s/metrics", metrics_address())
    pool = await store.create_pool(settings.database_url())
    try:
        lacking = await pending(pool)
        if lacking:
            raise SystemExit(
                f"worker not started: the database lacks migrations {lacking}; run "
                "`opportunities migrate` (the setup step) first"
            )
        directory = DirectoryHolder(await load_directory_or_exit(pool))
        worker = build_worker(client, pool, mailer=mailer_from_environment(), directory=directory)
        deliveries = delivery_worker(client, pool)
        await outbox_retention.ensure_schedule(client, settings.task_queue())
        reloading = asyncio.create_task(keep_loading(pool, directory))
        async with worker, deliveries:
            log.info(
                "worker polling task queues %r and %r",
                settings.task_queue(),
                settings.delivery_task_queue(),
            )
            await stop.wait()
            log.info("stopping: finishing the tasks in hand")
            reloading.cancel()
    finally:
        await pool.close()


async def serve_until_signalled() -> None:
    """Run one worker until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await serve(stop)


def main() -> None:
    configure_logging()
    try:
        asyncio.run(serve_until_signalled())
    except settings.BadSetting as error:
        raise SystemExit(f"worker not started: {error}") from None


if __name__ == "__main__":
    main()
