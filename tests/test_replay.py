"""Replay every recorded history (tests/histories/*.json) against today's workflow code: a
change that running opportunities could not survive (non-deterministic) fails here.

Each history replays twice: with the runner workers use by default (no sandbox) and inside
the SDK's sandbox, whose guards fail a workflow that reads the clock, does I/O or imports
something non-deterministic, so the guard stays in the build while workers run without it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from sales.opportunity import Opportunity
from workflows.mass_modify import MassModifyWorkflow
from workflows.opportunity import OpportunityWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
RECORDED = {path.stem: json.loads(path.read_text()) for path in HISTORIES}


PATHS = {"actions", "outcomes-won", "reopened-then-lost", "timers", "continue-as-new",
         "mass-modified-opportunity", "batched", "continue-as-new-under-load"}  # fmt: skip
"""The Opportunity's feature paths, each recorded on today's code and, as
`<path>-before-local-projection`, before the two load patches."""
LOAD_PATCHES = ["search-attributes-under-load", "local-projection-for-small-batches"]


def test_every_feature_path_has_a_recorded_history() -> None:
    names = set(RECORDED)
    assert PATHS <= names
    assert {f"{path}-before-local-projection" for path in PATHS} <= names
    assert {"mass-modify", "mass-modified-opportunity-before-answer-patch",
            "local-projection", "continue-as-new-under-updates"} <= names  # fmt: skip


@pytest.mark.parametrize(
    "runner",
    [UnsandboxedWorkflowRunner(), SandboxedWorkflowRunner()],
    ids=["as-workers-run", "in-sandbox"],
)
@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_history_replays_on_current_code(name: str, runner: WorkflowRunner) -> None:
    recorded = RECORDED[name]
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])
    replayer = Replayer(
        workflows=[OpportunityWorkflow, MassModifyWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=runner,
    )
    await replayer.replay_workflow(history)


def test_the_answer_patch_is_recorded_both_ways() -> None:
    """The history from before `answer-before-projection` has no marker and answers after the
    projection; the one after has the marker and answers before it. Both replay above."""
    assert _patches(RECORDED["mass-modified-opportunity-before-answer-patch"]) == []
    assert _patches(RECORDED["mass-modified-opportunity-before-local-projection"]) == [
        "answer-before-projection"
    ]
    assert "answer-before-projection" in _patches(RECORDED["mass-modified-opportunity"])


def test_the_batch_patch_is_recorded() -> None:
    """`batched` was recorded with `batch-projection`; the older files without it."""
    assert "batch-projection" in _patches(RECORDED["batched"])
    assert "batch-projection" not in _patches(RECORDED["actions-before-local-projection"])


@pytest.mark.parametrize("path", sorted(PATHS))
def test_the_load_patches_are_recorded_both_ways(path: str) -> None:
    """Each path replays (above) both with the load patches' markers and from before them."""
    assert set(LOAD_PATCHES) <= set(_patches(RECORDED[path]))
    assert not set(LOAD_PATCHES) & set(_patches(RECORDED[f"{path}-before-local-projection"]))


def test_updates_project_by_local_activity_and_a_burst_of_signals_by_activity_task() -> None:
    """`local-projection`: the opening and each update wrote the projection by local
    activity (a marker), the burst of 60 signals by an activity task; so replay covers both
    branches."""
    events = RECORDED["local-projection"]["history"]["events"]
    markers = [e["markerRecordedEventAttributes"]["markerName"]
               for e in events if "markerRecordedEventAttributes" in e]  # fmt: skip
    activities = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                  for e in events if "activityTaskScheduledEventAttributes" in e]  # fmt: skip
    assert markers.count("core_local_activity") == 3  # the opening, the two updates
    assert "project_opportunity" in activities


def _patches(recorded: dict[str, Any]) -> list[str]:
    """The patch ids of a history's `core_patch` markers."""
    found = []
    for event in recorded["history"]["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker["markerName"] == "core_patch":
            found.append(_patch_id(marker))
    return found


def _patch_id(marker: dict[str, Any]) -> str:
    """The patch id a `core_patch` marker records."""
    payload = marker["details"]["patch-data"]["payloads"][0]
    return str(json.loads(base64.b64decode(payload["data"]))["id"])


def test_a_run_under_a_stream_of_updates_closes_in_one_task() -> None:
    """`continue-as-new-under-updates`: once continuing was due, the last workflow task
    accepted updates, wrote their projection by local activity, answered them and continued
    as new, with the `close-run-in-one-task` marker before that write."""
    events = RECORDED["continue-as-new-under-updates"]["history"]["events"]
    last_task = max(n for n, e in enumerate(events) if e["eventType"].endswith("TASK_COMPLETED"))
    closing = [_event_name(e) for e in events[last_task + 1 :]]
    assert closing[0] == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED"
    assert closing[-1] == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    assert "close-run-in-one-task" in closing
    assert closing.index("close-run-in-one-task") < closing.index("core_local_activity")
    assert closing.count("WORKFLOW_EXECUTION_UPDATE_ACCEPTED") == closing.count(
        "WORKFLOW_EXECUTION_UPDATE_COMPLETED"
    )


@workflow.defn(name="Opportunity", sandboxed=False)
class _OpportunityWithoutCloseInOneTask(OpportunityWorkflow):
    """Today's workflow with `close-run-in-one-task` off, as before it."""

    @workflow.run
    async def run(self, input: Any) -> Opportunity:
        return await super().run(input)

    def _closes_in_one_task(self) -> bool:
        return False


async def test_the_stream_history_fails_to_replay_without_its_patch() -> None:
    """The replay test can fail: without the patch, the closing batch schedules an activity
    task where the history has a local-activity marker."""
    recorded = RECORDED["continue-as-new-under-updates"]
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])
    replayer = Replayer(
        workflows=[_OpportunityWithoutCloseInOneTask], data_converter=pydantic_data_converter
    )
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)


def _event_name(event: dict[str, Any]) -> str:
    """The event's type, or for a marker its patch id or marker name."""
    marker = event.get("markerRecordedEventAttributes")
    if marker is None:
        return str(event["eventType"]).removeprefix("EVENT_TYPE_")
    if marker["markerName"] == "core_patch":
        return _patch_id(marker)
    return str(marker["markerName"])
