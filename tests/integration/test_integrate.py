"""docs/integrate.md, run: the same command sent by the Python client, by Temporal's CLI
(signal and update) and by Temporal's HTTP API with curl (signal and update), each recorded
the same way; the page's Python example; and what a raw client sees of a rejection, of a
closed opportunity and of a start over its id. (The Temporal UI's signal form is in
tests/system/test_ui.py.)"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from temporalio.worker import Worker

import store.opportunities
from runtime import embedded
from sales.errors import CommandRejected
from starter.client import OpportunitiesClient
from tests.support.helpers import eventually, setup_contact, setup_process, setup_references
from tests.support.servers import Servers

pytestmark = pytest.mark.usefixtures("verified")

COMMAND = {"stage": "Proposal", "reason": "asked for a quote", "by": "crm-sync"}
WAIT_FOR_RESULT = {"lifecycleStage": "UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED"}


async def completed(*args: str) -> tuple[int, str]:
    """The exit code and output (stdout and stderr) of a command."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def run(*args: str) -> str:
    code, out = await completed(*args)
    assert code == 0, out
    return out


def http_update(
    servers: Servers, workflow_id: str, name: str, command: dict[str, Any]
) -> list[str]:
    """curl's arguments for the HTTP API's update call, as docs/integrate.md shows it."""
    url = (
        f"http://127.0.0.1:{servers.http_port}/api/v1/namespaces/default/workflows/"
        f"{workflow_id}/update/{name}"
    )
    body = {
        "request": {"meta": {"updateId": uuid.uuid4().hex}, "input": {"args": [command]}},
        "waitPolicy": WAIT_FOR_RESULT,
    }
    return ["curl", "--fail-with-body", "-sS", "-X", "POST", url,
            "-H", "Content-Type: application/json", "-d", json.dumps(body)]  # fmt: skip


async def test_one_command_four_ways_is_recorded_the_same(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    servers: Servers,
    uid: str,
) -> None:
    process_id = await setup_process(pool, uid, on_entry=False)
    contact_id = await setup_contact(pool, uid)
    ways = ["python", "cli-signal", "cli-update", "curl", "curl-update"]
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

    # 3. Temporal's HTTP API with curl: a signal, and an update (answers with the result).
    url = (
        f"http://127.0.0.1:{servers.http_port}/api/v1/namespaces/default/workflows/"
        f"opportunity-curl-{uid}/signal/change_stage"
    )
    await run("curl", "--fail-with-body", "-sS", "-X", "POST", url,
              "-H", "Content-Type: application/json",
              "-d", json.dumps({"input": [COMMAND]}))  # fmt: skip
    out = await run(
        *http_update(servers, f"opportunity-curl-update-{uid}", "change_stage", COMMAND)
    )
    (answer,) = json.loads(out)["outcome"]["success"]
    assert (answer["current_stage"], answer["command"]) == ("Proposal", "change_stage")

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
    assert entries == [("Prospect", "Proposal", "manual", "crm-sync", "asked for a quote")] * 5


async def test_the_python_example_runs_as_shown(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    """The page's Python example, on the example process (its own copy)."""
    process_id = await setup_process(pool, uid)
    await setup_references(pool, uid)
    contact_id = await setup_contact(
        pool, uid, street="12 St James's Square", city="London", postal_code="SW1Y 4JH"
    )
    client, opportunity_id = opportunities, f"opp-{uid}"
    await client.create(contact_id, opportunity_id=opportunity_id, owner="ann",
                        process_id=process_id)  # fmt: skip
    result = await client.change_stage(opportunity_id, "Proposal", by="crm-sync",
                                       request_id=f"crm-{uid}")  # fmt: skip
    result = await client.perform_actions(opportunity_id, ["proposal-letter"])
    assert [(a.action_id, a.outcome) for a in result.actions] == [
        ("proposal-letter", "letter_filed")
    ]
    await client.complete_actions(opportunity_id, ["proposal-review"], outcome="Accepted")
    with pytest.raises(CommandRejected) as rejected:
        await client.change_stage(opportunity_id, "Negotiation")
    assert rejected.value.code == "unknown_stage"
    assert str(rejected.value).startswith("unknown stage 'Negotiation'")


async def test_raw_clients_see_codes_closed_opportunities_and_refused_starts(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    servers: Servers,
    uid: str,
    task_queue: str,
) -> None:
    process_id = await setup_process(pool, uid, on_entry=False)
    contact_id = await setup_contact(pool, uid)
    opportunity_id = f"raw-{uid}"
    workflow_id = f"opportunity-{opportunity_id}"
    temporal = embedded.temporal_binary()
    address = ["--address", servers.temporal_address]

    # The raw start the page shows (the id reuse policy `create` uses).
    start = ["workflow", "start", *address, "--type", "Opportunity", "--task-queue", task_queue,
             "--workflow-id", workflow_id, "--id-reuse-policy", "AllowDuplicateFailedOnly",
             "--fail-existing", "--input", json.dumps(
                 {"opportunity_id": opportunity_id, "contact_id": contact_id,
                  "process_id": process_id, "owner": "ann"})]  # fmt: skip
    await run(temporal, *start)
    state = await eventually(lambda: _state_when_open(opportunities, opportunity_id))
    assert state.owner == "ann"

    # A rejection: its code starts the message every client shows; no stack trace.
    code, out = await completed(temporal, "workflow", "update", "execute", *address,
                                "-w", workflow_id, "--name", "change_stage",
                                "--input", json.dumps({"stage": "Negotiation"}))  # fmt: skip
    assert code != 0 and "unknown_stage: unknown stage 'Negotiation'" in out, out
    out = await run(*http_update(servers, workflow_id, "change_stage", {"stage": "Negotiation"}))
    failure = json.loads(out)["outcome"]["failure"]
    assert failure["message"].startswith("unknown_stage: unknown stage 'Negotiation'")
    assert failure["applicationFailureInfo"]["type"] == "CommandRejected"
    assert failure["applicationFailureInfo"]["details"] == [{"code": "unknown_stage"}]
    assert "stackTrace" not in failure and "Traceback" not in out

    # The current details, from the command line.
    out = await run(temporal, "workflow", "metadata", *address, "-w", workflow_id)
    assert "Current Details" in out and "**Stage:** Prospect" in out, out

    # Closed: Temporal answers every command itself; the state query still answers.
    await opportunities.change_stage(opportunity_id, "Closed lost")
    closed_run = await eventually(lambda: _closed_run(opportunities, opportunity_id))
    code, out = await completed(temporal, "workflow", "signal", *address, "-w", workflow_id,
                                "--name", "change_stage",
                                "--input", json.dumps({"stage": "Proposal"}))  # fmt: skip
    assert code != 0 and "workflow execution already completed" in out, out
    url = (
        f"http://127.0.0.1:{servers.http_port}/api/v1/namespaces/default/workflows/"
        f"{workflow_id}/signal/change_stage"
    )
    code, out = await completed("curl", "--fail-with-body", "-sS", "-X", "POST", url,
                                "-d", json.dumps({"input": [{"stage": "Proposal"}]}))  # fmt: skip
    assert code != 0 and "workflow execution already completed" in out, out
    out = await run(temporal, "workflow", "query", *address, "-w", workflow_id, "--name",
                    "state", "--output", "json")  # fmt: skip
    assert json.loads(out)["queryResult"][0]["status"] == "lost"
    with pytest.raises(CommandRejected) as rejected:
        await opportunities.change_stage(opportunity_id, "Proposal")
    assert rejected.value.code == "closed"

    # The same raw start again: Temporal refuses it, and nothing starts.
    code, out = await completed(temporal, *start)
    assert code != 0 and "already finished successfully" in out, out
    assert (await opportunities.handle(opportunity_id).describe()).run_id == closed_run


async def _state_when_open(client: OpportunitiesClient, opportunity_id: str) -> object:
    try:
        return await client.state(opportunity_id)
    except Exception:
        return None


async def _closed_run(client: OpportunitiesClient, opportunity_id: str) -> str | None:
    description = await client.handle(opportunity_id).describe()
    return description.run_id if description.close_time is not None else None
