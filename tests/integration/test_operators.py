"""What operators see: the UI's summary and current details, Prometheus metrics, JSON logs."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from runtime import embedded
from runtime.observability import JsonFormatter
from sales.commands import ChangeStage
from starter.client import OpportunitiesClient
from tests.support.helpers import eventually, open_one
from tests.support.servers import Servers
from worker import build_worker

pytestmark = pytest.mark.usefixtures("verified")


async def current_details(client: Client, opportunity_id: str) -> str:
    metadata = await client.get_workflow_handle(f"opportunity-{opportunity_id}").query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return metadata.current_details


async def test_the_ui_shows_a_summary_and_what_the_opportunity_is_doing(
    worker: Worker,
    client: Client,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    process_id = await open_one(pool, opportunities, uid, name="Term life")
    description = await client.get_workflow_handle(f"opportunity-o-{uid}").describe()
    assert await description.static_summary() == f"Ada Lovelace · {process_id} · Term life"

    details = await current_details(client, f"o-{uid}")
    assert "**Term life · Ada Lovelace (c-" in details
    assert "**Stage:** Prospect" in details and "**Open actions (3):**" in details
    assert "- Introductory call (`intro-call`, calendar)" in details
    assert "**Linked activities (1):**" in details and "Introductory call: active" in details

    await opportunities.signal(f"o-{uid}", ChangeStage(stage="Nowhere"))

    async def rejection_shown() -> bool:
        return "**Last rejection:** `change_stage`" in await current_details(client, f"o-{uid}")

    await eventually(rejection_shown)
    await opportunities.change_stage(f"o-{uid}", "Proposal", cancel_open_activities=True)
    details = await current_details(client, f"o-{uid}")
    assert "**Stage:** Proposal" in details and "Introductory call: canceled" in details


@pytest.fixture
async def metrics() -> AsyncIterator[tuple[Runtime, str]]:
    port = embedded.free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )
    yield runtime, f"http://127.0.0.1:{port}/metrics"


async def test_the_worker_exports_sdk_and_service_metrics(
    metrics: tuple[Runtime, str],
    servers: Servers,
    pool: asyncpg.Pool,
    task_queue: str,
    uid: str,
) -> None:
    runtime, url = metrics
    client = await Client.connect(
        servers.temporal_address, runtime=runtime, data_converter=pydantic_data_converter
    )
    opportunities = OpportunitiesClient(client, task_queue)
    async with build_worker(client, pool, task_queue):
        await open_one(pool, opportunities, uid)
        await opportunities.change_stage(f"o-{uid}", "Proposal", request_id=f"r-{uid}")
        await opportunities.change_stage(f"o-{uid}", "Proposal", request_id=f"r-{uid}")
        await opportunities.signal(f"o-{uid}", ChangeStage(stage="Nowhere"))

        async def scraped() -> str | None:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                text = await response.text()
            return text if 'result="rejected"' in text else None

        text = await eventually(scraped)
    samples = _samples(text)
    assert samples[("opportunities_commands", "change_stage", "applied")] == 1
    assert samples[("opportunities_commands", "change_stage", "duplicate")] == 1
    assert samples[("opportunities_commands", "change_stage", "rejected")] == 1
    assert samples[("opportunities_effects", "create_calendar_activity")] == 1
    assert samples[("opportunities_effects", "project_opportunity")] == 2  # open, change
    assert "temporal_workflow_task_execution_latency" in text
    assert "temporal_activity_execution_latency" in text


def _samples(text: str) -> dict[tuple[str, ...], float]:
    """Our counters from Prometheus text, keyed by name and label values of interest."""
    samples: dict[tuple[str, ...], float] = {}
    for line in text.splitlines():
        if not line.startswith(("opportunities_commands", "opportunities_effects")):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        pairs = dict(part.split("=", 1) for part in labels.rstrip("}").split(",") if "=" in part)
        values = {k: v.strip('"') for k, v in pairs.items()}
        if name == "opportunities_commands":
            key: tuple[str, ...] = (name, values["command"], values["result"])
        else:
            key = (name, values["effect"])
        samples[key] = samples.get(key, 0) + float(value)
    return samples


def test_json_logs_carry_the_workflow_and_the_opportunity() -> None:
    record = logging.LogRecord("temporalio.workflow", logging.INFO, "f", 1, "moved", (), None)
    record.temporal_workflow = {
        "workflow_id": "opportunity-opp-7",
        "run_id": "r-1",
        "workflow_type": "Opportunity",
    }
    entry = json.loads(JsonFormatter().format(record))
    assert entry["opportunity_id"] == "opp-7" and entry["workflow_id"] == "opportunity-opp-7"
    assert entry["message"] == "moved" and entry["level"] == "info"


async def test_an_expected_failure_is_one_log_line_and_shows_its_fix(
    worker: Worker,
    client: Client,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A letter to a contact with no address is the user's to fix: one INFO line naming the
    code, the opportunity and the action, no traceback, and the fix in the UI's details."""
    await open_one(pool, opportunities, uid)
    caplog.set_level(logging.INFO)
    caplog.clear()
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    assert [(a.outcome, a.code) for a in result.actions] == [("failed", "no_address")]
    logged = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r for r in logged if r.exc_info] == []
    lines = [r.getMessage() for r in logged if "no_address" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("perform_actions applied: action welcome-letter failed (no_address)")
    assert f"'workflow_id': 'opportunity-o-{uid}'" in lines[0]
    details = await current_details(client, f"o-{uid}")
    assert "**Failed actions (1):**" in details
    assert "- Letter `welcome-letter` failed: contact" in details
    assert "fix the contact (`contact modify`) and perform it again" in details
