"""docs/integrate.md, run: the same command sent by the Python client, by
Temporal's CLI (signal and update), and by Temporal's HTTP API with curl, each recorded the
same way. (The fourth way, the Temporal UI's signal form, is in tests/system/test_ui.py.)"""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from temporalio.worker import Worker

import store.opportunities
from runtime import embedded
from starter.client import OpportunitiesClient
from tests.support.helpers import eventually, setup_contact, setup_process
from tests.support.servers import Servers

pytestmark = pytest.mark.usefixtures("verified")

COMMAND = {"stage": "Proposal", "reason": "asked for a quote", "by": "crm-sync"}


async def run(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    return out.decode()


async def test_one_command_four_ways_is_recorded_the_same(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    servers: Servers,
    uid: str,
) -> None:
    process_id = await setup_process(pool, uid, on_entry=False)
    contact_id = await setup_contact(pool, uid)
    ways = ["python", "cli-signal", "cli-update", "curl"]
    for way in ways:
        await opportunities.create(contact_id, opportunity_id=f"{way}-{uid}", process_id=process_id)

    # 1. The Python client (typed; raises CommandRejected when refused).
    result = await opportunities.change_stage(
        f"python-{uid}", "Proposal", reason="asked for a quote", by="crm-sync"
    )
    assert result.current_stage == "Proposal"

    # 2. Temporal's CLI: fire-and-forget signal, and update (waits, prints the result).
    temporal = embedded.temporal_binary()
    address = ["--address", servers.temporal_address]
    await run(temporal, "workflow", "signal", *address, "--workflow-id",
              f"opportunity-cli-signal-{uid}", "--name", "change_stage",
              "--input", json.dumps(COMMAND))  # fmt: skip
    out = await run(temporal, "workflow", "update", "execute", *address, "--workflow-id",
                    f"opportunity-cli-update-{uid}", "--name", "change_stage",
                    "--input", json.dumps(COMMAND), "--output", "json")  # fmt: skip
    assert json.loads(out)["result"]["current_stage"] == "Proposal"

    # 3. Temporal's HTTP API with curl.
    url = (
        f"http://127.0.0.1:{servers.http_port}/api/v1/namespaces/default/workflows/"
        f"opportunity-curl-{uid}/signal/change_stage"
    )
    await run("curl", "--fail-with-body", "-sS", "-X", "POST", url,
              "-H", "Content-Type: application/json",
              "-d", json.dumps({"input": [COMMAND]}))  # fmt: skip

    async def all_moved() -> list[tuple[str | None, str, str, str | None, str | None]] | None:
        entries = []
        for way in ways:
            history = await store.opportunities.get_history(pool, f"{way}-{uid}")
            if len(history) != 2:
                return None
            last = history[-1]
            entries.append((last.from_stage, last.to_stage, last.source, last.by, last.reason))
        return entries

    entries = await eventually(all_moved)
    assert entries == [("Prospect", "Proposal", "manual", "crm-sync", "asked for a quote")] * 4
