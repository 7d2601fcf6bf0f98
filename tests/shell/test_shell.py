"""The workflow shell on a real Temporal dev server with in-memory activities (`fakes.py`): no
PostgreSQL, no SMTP. Opening, every command through the typed client, rejections, signals,
stage timers (a day lasts a second), continue-as-new and reopening, each in seconds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from sales.commands import AddRemark, ChangeStage
from sales.errors import CommandRejected
from sales.opportunity import Opportunity
from sales.process import ProcessDefinition, SalesProcess
from sales.registry import REGISTRY
from starter.client import OpportunitiesClient
from tests.shell.fakes import FakeActivities
from tests.support.helpers import example_definition, task_failures
from worker import workflow_worker
from workflows import command_queue

T = TypeVar("T")
PROCESS_ID = "life"


def _process(process_id: str, follow_up_after_days: int | None = None) -> SalesProcess:
    definition = example_definition(process_id)
    if follow_up_after_days:
        definition["stages"][0]["follow_up_after_days"] = follow_up_after_days
    return SalesProcess(version=1, definition=ProcessDefinition.model_validate(definition))


@pytest.fixture
async def fakes(client: Client) -> FakeActivities:
    processes = {PROCESS_ID: _process(PROCESS_ID), "timed": _process("timed", 2)}
    return FakeActivities(client, processes, day_seconds=1)


@pytest.fixture
async def shell(client: Client, fakes: FakeActivities) -> AsyncIterator[OpportunitiesClient]:
    queue = f"shell-{uuid.uuid4().hex[:10]}"
    worker: Worker = workflow_worker(client, queue, fakes.all())
    async with worker:
        yield OpportunitiesClient(client, queue)


async def eventually(check: Callable[[], Awaitable[T | None]], seconds: float = 15) -> T:
    deadline = asyncio.get_running_loop().time() + seconds
    while (value := await check()) is None or value is False:
        assert asyncio.get_running_loop().time() < deadline, "the condition did not hold"
        await asyncio.sleep(0.1)
    return value


async def _open(shell: OpportunitiesClient, process_id: str = PROCESS_ID) -> str:
    opportunity_id = f"s-{uuid.uuid4().hex[:8]}"
    await shell.create("c-1", opportunity_id=opportunity_id, process_id=process_id)
    return opportunity_id


async def test_every_command_is_applied_or_rejected_and_projected(
    shell: OpportunitiesClient, fakes: FakeActivities
) -> None:
    opp = await _open(shell)
    state = await shell.state(opp)
    intro = state.stages[0].actions[0].activity_id
    assert intro is not None and fakes.rows[opp].summary.current_stage == "Prospect"
    sent = {
        "perform_actions": await shell.perform_actions(opp, ["welcome-letter"]),
        "assign": await shell.assign(opp, "agent", "bob"),
        "add_remark": await shell.add_remark(opp, "called back", by="ann"),
        "change_owner": await shell.change_owner(opp, "ann"),
        "modify_activity": await shell.modify_activity(opp, intro, subject="First call"),
        "record_outcome": await shell.record_outcome(opp, intro, outcome="Interested"),
        "change_stage": await shell.change_stage(opp, "Proposal", request_id="r-1"),
    }
    assert {name: r.command for name, r in sent.items()} == {n: n for n in sent}
    assert set(sent) <= set(REGISTRY)
    again = await shell.change_stage(opp, "Proposal", request_id="r-1")
    assert again.duplicate
    with pytest.raises(CommandRejected) as refused:
        await shell.change_owner(opp, "zed")
    assert refused.value.code == "unknown_user"
    row = fakes.rows[opp]
    assert (row.summary.current_stage, row.summary.owner) == ("Proposal", "ann")
    assert [r.text for r in row.remarks] == ["called back"]
    assert [h.to_stage for h in row.history][-1] == "Proposal"


async def test_a_bad_signal_is_kept_and_the_next_one_applied(
    shell: OpportunitiesClient, fakes: FakeActivities
) -> None:
    opp = await _open(shell)
    handle = shell.handle(opp)
    await handle.signal("change_stage", {"stage": "Nowhere"})
    await handle.signal("add_remark", {"text": "still here"})

    async def kept() -> Opportunity | None:
        state = await shell.state(opp)
        return state if state.rejected and state.remarks else None

    state = await eventually(kept)
    assert state.rejected[-1].code == "unknown_stage"

    async def written() -> bool:
        return [r.text for r in fakes.rows[opp].remarks] == ["still here"]

    await eventually(written)


async def test_a_stage_timer_fires_a_follow_up(
    shell: OpportunitiesClient, fakes: FakeActivities
) -> None:
    opp = await _open(shell, "timed")

    async def followed_up() -> bool:
        return (await shell.state(opp)).follow_ups > 0

    await eventually(followed_up)


async def test_a_run_continues_as_new_and_a_closed_one_reopens(
    client: Client, shell: OpportunitiesClient, fakes: FakeActivities
) -> None:
    opp = f"s-{uuid.uuid4().hex[:8]}"
    start = {"opportunity_id": opp, "contact_id": "c-1", "process_id": PROCESS_ID,
             "continue_as_new_after_events": 20}  # fmt: skip
    handle = await client.start_workflow(
        "Opportunity", start, id=f"opportunity-{opp}", task_queue=shell.task_queue
    )
    first = (await handle.describe()).run_id
    for n in range(15):
        await shell.execute(opp, AddRemark(text=f"remark {n}"))
    assert (await shell.handle(opp).describe()).run_id != first, "it continued as new"
    closed = await shell.execute(opp, ChangeStage(stage="Closed lost"))
    assert closed.status == "lost"
    reopened = await shell.reopen(opp, "Prospect", by="ann")
    assert (reopened.status, reopened.current_stage) == ("open", "Prospect")
    assert len(fakes.rows[opp].remarks) == 15


async def test_the_workflow_describes_each_command_with_its_summary(
    shell: OpportunitiesClient,
) -> None:
    opp = await _open(shell)
    metadata = await shell.handle(opp).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    definition = metadata.definition
    for kind in (definition.signal_definitions, definition.update_definitions):
        described = {d.name: d.description for d in kind if d.name in REGISTRY}
        assert described == {name: d.summary for name, d in REGISTRY.items()}


async def test_a_storm_of_signals_past_a_full_queue_is_rejected_cheaply(
    shell: OpportunitiesClient, fakes: FakeActivities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the queue bounded to 5, 2,000 signals from 50 senders: those that find it full
    are rejected together (`limit_reached`), no workflow task fails, and the opportunity
    answers at once afterwards."""
    monkeypatch.setattr(command_queue, "MAX_QUEUED", 5)
    opp = await _open(shell)
    handle = shell.handle(opp)
    pending = iter(range(2000))

    async def sender() -> None:
        for n in pending:
            await handle.signal("change_owner", {"owner": "ann" if n % 2 else "bob"})

    await asyncio.gather(*(sender() for _ in range(50)))
    fakes.users.add("carol")
    answered = await shell.change_owner(opp, "carol", request_id="after-the-storm")
    assert answered.command == "change_owner"
    state = await shell.state(opp)
    assert "limit_reached" in {r.code for r in state.rejected}
    assert await task_failures(handle) == 0


async def test_a_full_queue_refuses_an_update_for_now_and_the_client_sends_it_again(
    shell: OpportunitiesClient, fakes: FakeActivities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue with no room refuses an update in its validator with `resend: true` (nothing
    written): the typed client sends it again until its deadline, then raises the refusal."""
    opp = await _open(shell)
    monkeypatch.setattr(command_queue, "MAX_QUEUED", 0)
    with pytest.raises(WorkflowUpdateFailedError) as raw:
        await shell.handle(opp).execute_update("add_remark", {"text": "now?"})
    assert isinstance(raw.value.cause, ApplicationError)
    assert raw.value.cause.details == ({"code": "limit_reached", "resend": True},)
    started = asyncio.get_running_loop().time()
    with pytest.raises(CommandRejected) as refused:
        await shell.execute(opp, AddRemark(text="now?"), busy_seconds=1.5)
    assert refused.value.code == "limit_reached"
    assert asyncio.get_running_loop().time() - started >= 1.5, "sent again until the deadline"
    monkeypatch.setattr(command_queue, "MAX_QUEUED", 2000)
    assert (await shell.execute(opp, AddRemark(text="now"))).command == "add_remark"
