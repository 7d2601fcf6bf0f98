"""A worker in a process of its own, as production runs it, for the crash, fault and outage
tests and the benchmarks: started (and waited for), killed, stopped, its Prometheus metrics
read, its memory (VmRSS) read once it is idle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

from runtime import embedded

IDLE_SECONDS = 6.0
"""A worker is idle when its task counters have not moved for this long."""
TASK_COUNTERS = (
    "temporal_workflow_task_execution_latency_count",
    "temporal_activity_execution_latency_count",
)


def rss_kb(pid: int | str) -> int:
    """The resident set size (VmRSS) of a process (or "self"), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class WorkerProcess:
    """A worker in a child process, its log in a file, its metrics on a port of its own."""

    @classmethod
    def opportunities_worker(cls, env: dict[str, str], log: Path) -> WorkerProcess:
        """The service's own worker (`opportunities-worker`)."""
        return cls([str(Path(sys.executable).parent / "opportunities-worker")], env, log)

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command = command
        self.env = env
        self.log = log
        self.metrics_port = embedded.free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        env = {
            **self.env,
            "OPPORTUNITIES_METRICS_PORT": str(self.metrics_port),
            "OPPORTUNITIES_METRICS_HOST": "127.0.0.1",
        }
        started_at = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while b"worker polling task queue" not in self.log.read_bytes()[started_at:]:
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start: {self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.2)

    async def kill(self) -> None:
        """SIGKILL: a crash, nothing finished."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self, seconds: float = 60.0) -> None:
        """SIGTERM, and SIGKILL if it has not finished the tasks in hand within `seconds`
        (a worker whose server is gone cannot finish them)."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), seconds)
        except TimeoutError:
            await self.kill()

    async def metrics(self) -> dict[str, float]:
        """Prometheus samples, summed over labels, by metric name (histograms: `_count`)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"

        def fetch() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode())

        samples: dict[str, float] = {}
        for line in (await asyncio.to_thread(fetch)).splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.partition("{")[0]
            samples[name] = samples.get(name, 0.0) + float(value)
        return samples

    async def idle_rss_kb(self) -> int:
        """RSS once the worker has run no task for IDLE_SECONDS (and RSS has stopped moving)."""
        last: tuple[float, ...] = ()
        last_rss = 0
        quiet_since = time.monotonic()
        while True:
            samples = await self.metrics()
            counters = tuple(samples.get(name, 0.0) for name in TASK_COUNTERS)
            rss = rss_kb(self.pid)
            if counters != last or abs(rss - last_rss) > max(256, last_rss // 200):
                last, last_rss, quiet_since = counters, rss, time.monotonic()
            elif time.monotonic() - quiet_since >= IDLE_SECONDS:
                return rss
            await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def running(worker: WorkerProcess) -> AsyncIterator[WorkerProcess]:
    try:
        await worker.start()
        yield worker
    finally:
        await worker.stop()


def worker_env(
    address: str,
    database_url: str,
    queue: str,
    cache: int = 5000,
    sandbox: bool = False,
    smtp_url: str | None = None,
) -> dict[str, str]:
    """A worker's environment: this one without the service's own settings (nor a
    `make run`'s), then the given servers, queue, cache, runner and mail server."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPPORTUNITIES_", "TEMPORAL_", "SMTP_"))
    }
    env.update(
        TEMPORAL_ADDRESS=address,
        TEMPORAL_NAMESPACE="default",
        DATABASE_URL=database_url,
        OPPORTUNITIES_TASK_QUEUE=queue,
        OPPORTUNITIES_MAX_CACHED_WORKFLOWS=str(cache),
        OPPORTUNITIES_LOG_FORMAT="text",
        OPPORTUNITIES_LOCAL_ENV=os.devnull,  # never a `make run`'s servers
        OPPORTUNITIES_WORKFLOW_SANDBOX="on" if sandbox else "off",  # both sides alike
    )
    env.update(TEST_DELIVERY_ENV)
    if smtp_url:
        env["SMTP_URL"] = smtp_url
    return env


TEST_DELIVERY_ENV = {
    "OPPORTUNITIES_SECRETS_KEY": "test:MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=",
    "OPPORTUNITIES_WEBHOOK_ADDRESSES": "loopback",  # the tests' receivers listen on loopback
    "OPPORTUNITIES_DELIVERY_POLL": "0.05",
    "OPPORTUNITIES_DELIVERY_FIRST_BACKOFF": "0.2",
    "OPPORTUNITIES_DELIVERY_MAX_BACKOFF": "1",
}
"""The delivery settings of the tests' workers and clients: secrets sealed with a test key,
receivers on loopback allowed, short waits."""
