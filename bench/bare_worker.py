"""A worker process running only the bare workflows (`bench.bare`), configured like the
service's worker: `TEMPORAL_ADDRESS`, `DATABASE_URL` (the bare opportunity's rows, over a
pool like the service's), `OPPORTUNITIES_TASK_QUEUE`, `OPPORTUNITIES_MAX_CACHED_WORKFLOWS`
(same default), `OPPORTUNITIES_WORKFLOW_SANDBOX` and `OPPORTUNITIES_METRICS_PORT`.
`bench.memory` measures its memory against the real `opportunities-worker`.

    .venv/bin/python -m bench.bare_worker
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from temporalio.worker import Worker

import store
from bench.bare import BareCommands, BareOpportunity, FleetRows, bare_effect
from runtime import settings
from runtime.observability import configure_logging, metrics_runtime
from runtime.temporal import connect_patiently
from worker import cached_workflows, workflow_runner

log = logging.getLogger("opportunities.bench.bare_worker")


async def serve() -> None:
    """Poll until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    client = await connect_patiently(runtime=metrics_runtime())
    pool = await store.create_pool(settings.database_url())
    try:
        worker = Worker(
            client,
            task_queue=settings.task_queue(),
            workflows=[BareCommands, BareOpportunity],
            activities=[bare_effect, FleetRows(pool).write],
            max_cached_workflows=cached_workflows(),
            workflow_runner=workflow_runner(),  # OPPORTUNITIES_WORKFLOW_SANDBOX, as ours
        )
        async with worker:
            log.info("worker polling task queue %r", settings.task_queue())
            await stop.wait()
    finally:
        await pool.close()


def main() -> None:
    configure_logging()
    asyncio.run(serve())


if __name__ == "__main__":
    main()
