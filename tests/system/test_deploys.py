"""A deploy that does not stop sales: an old and a new worker version poll side by side, the
current version is switched, and an opportunity opened on the old one takes its next command
on the new one (it upgrades automatically); a batch stays pinned to the version it started on.

The workers run with a deployment name of this test's own, so the session's deployment and
its current version are untouched (and, its workers gone, its opportunity is checked here
against the read model rather than by the module's `verify`).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import WorkerDeploymentVersion

from runtime import deployment
from starter.client import OpportunitiesClient
from tests.support.helpers import eventually, open_one
from worker import build_worker
from workflows.mass_messages import MassModifyInput


async def build_ids(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The build id of each completed workflow task of the run, in order."""
    found = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            attributes = event.workflow_task_completed_event_attributes
            found.append(attributes.deployment_version.build_id)
    return found


async def test_an_opportunity_takes_its_next_command_on_the_new_current_version(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    opportunities: OpportunitiesClient,
    uid: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"deploy-{uid}"
    monkeypatch.setenv("OPPORTUNITIES_WORKER_VERSIONING", "on")
    monkeypatch.setenv("OPPORTUNITIES_DEPLOYMENT", name)
    monkeypatch.setenv("OPPORTUNITIES_BUILD_ID", "v1")
    monkeypatch.setenv("OPPORTUNITIES_SET_CURRENT", "if-none")  # a fresh deployment: v1
    old = build_worker(client, pool, task_queue)
    monkeypatch.setenv("OPPORTUNITIES_BUILD_ID", "v2")
    monkeypatch.setenv("OPPORTUNITIES_SET_CURRENT", "never")  # a rollout: the operator decides
    new = build_worker(client, pool, task_queue)
    opp = f"o-{uid}"
    async with old:
        await open_one(pool, opportunities, uid, owner=f"ann-{uid}")
        async with new:
            await opportunities.perform_actions(opp, ["welcome-letter"])
            handle = opportunities.handle(opp)
            assert set(await build_ids(handle)) == {"v1"}, "v1 is current: v2 takes nothing"
            assert await deployment.current_build_id(client, name) == "v1"

            batch = await opportunities.start_mass_modify(
                MassModifyInput(
                    batch_id=f"b-{uid}", ids=[opp], to_stage="Needs analysis",
                    by=f"ann-{uid}",
                )
            )  # fmt: skip
            await batch.result()

            v2 = WorkerDeploymentVersion(deployment_name=name, build_id="v2")
            assert await deployment.make_current(client, v2, within=30)
            assert await deployment.current_build_id(client, name) == "v2"

            result = await opportunities.change_stage(opp, "Proposal")
            assert result.current_stage == "Proposal"
            tasks = await build_ids(handle)
            assert tasks[0] == "v1" and tasks[-1] == "v2", tasks
            assert tasks.index("v2") > tasks.index("v1")
            described = await handle.describe()
            info = described.raw_description.workflow_execution_info.versioning_info
            assert info.deployment_version.build_id == "v2"

            pinned = await batch.describe()
            batch_info = pinned.raw_description.workflow_execution_info.versioning_info
            assert batch_info.deployment_version.build_id == "v1", "a batch stays pinned"

    async def read_model_agrees() -> bool:
        row = await pool.fetchrow(
            "SELECT current_stage FROM opportunities WHERE opportunity_id = $1", opp
        )
        return row is not None and row["current_stage"] == "Proposal"

    await eventually(read_model_agrees)
