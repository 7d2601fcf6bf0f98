"""The Opportunity workflow against the real Temporal dev server and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import asyncpg
import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

import store.opportunities
from activities.opportunity_activities import OpportunityActivities, Projected, ProjectionWrite
from runtime.workflow_ids import opportunity_workflow_id
from sales.errors import CommandRejected
from sales.opportunity import Opportunity
from sales.process import ProcessDefinition
from starter.client import OpportunitiesClient, StartFailed
from store import processes
from tests.support.helpers import (
    add_users,
    eventually,
    example_definition,
    open_one,
    quiet_history_length,
    setup_contact,
    setup_process,
)
from tests.support.servers import Servers
from worker import build_worker
from workflows.opportunity import OpportunityWorkflow

pytestmark = pytest.mark.usefixtures("verified")


async def test_create_projects_the_opportunity(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await setup_process(pool, uid)
    contact_id = await setup_contact(pool, uid)
    state = await opportunities.create(
        contact_id, opportunity_id=f"o-{uid}", process_id=process_id, name="Term life", owner="ann"
    )
    assert state.current_stage == "Prospect" and state.process_version == 1
    row = await eventually(lambda: store.opportunities.get_opportunity(pool, f"o-{uid}"))
    assert (row.current_stage, row.status, row.owner, row.open_actions) == (
        "Prospect",
        "open",
        "ann",
        3,
    )
    history = await store.opportunities.get_history(pool, f"o-{uid}")
    assert [(h.from_stage, h.to_stage, h.source) for h in history] == [(None, "Prospect", "start")]


async def test_raw_client_with_json_input_and_change_stage_by_update(
    worker: Worker,
    pool: asyncpg.Pool,
    client: Client,
    task_queue: str,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    """Any Temporal client can start it with a plain JSON object (no Python types involved)."""
    process_id = await setup_process(pool, uid)
    contact_id = await setup_contact(pool, uid)
    handle = await client.start_workflow(
        "Opportunity",
        {
            "opportunity_id": f"o-{uid}",
            "contact_id": contact_id,
            "process_id": process_id,
            "stage": "Needs analysis",
        },
        id=f"opportunity-o-{uid}",
        task_queue=task_queue,
    )
    result = await handle.execute_update(
        "change_stage", {"stage": "Proposal", "by": "bob", "reason": "ready"}
    )
    assert result["current_stage"] == "Proposal"
    assert "moved from 'Needs analysis' to 'Proposal'" in result["message"]
    history = await handle.query("history")
    assert [(h["from_stage"], h["to_stage"], h["source"]) for h in history] == [
        (None, "Needs analysis", "start"),
        ("Needs analysis", "Proposal", "manual"),
    ]
    rows = await store.opportunities.get_history(pool, f"o-{uid}")
    assert [(r.to_stage, r.by, r.reason) for r in rows][-1] == ("Proposal", "bob", "ready")
    assert (await store.opportunities.get_opportunity(pool, f"o-{uid}")).current_stage == "Proposal"


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ({"contact_id": "nobody"}, "unknown contact 'nobody'"),
        ({"process_id": "no-such-process"}, "unknown process 'no-such-process'"),
        ({"stage": "Negotiation"}, "unknown stage 'Negotiation'"),
    ],
)
async def test_start_with_unknown_ids_fails_and_writes_nothing(
    worker: Worker,
    pool: asyncpg.Pool,
    client: Client,
    task_queue: str,
    opportunities: OpportunitiesClient,
    uid: str,
    start: dict[str, str],
    message: str,
) -> None:
    payload = {
        "opportunity_id": f"o-{uid}",
        "contact_id": await setup_contact(pool, uid),
        "process_id": await setup_process(pool, uid),
        **start,
    }
    handle = await client.start_workflow(
        "Opportunity", payload, id=opportunity_workflow_id(f"o-{uid}"), task_queue=task_queue
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, ApplicationError)
    assert message in caught.value.cause.message
    assert await store.opportunities.get_opportunity(pool, f"o-{uid}") is None
    # The typed client reports the same reason.
    with pytest.raises(StartFailed, match=message):
        await opportunities.create(
            payload["contact_id"],
            opportunity_id=f"o2-{uid}",
            process_id=payload["process_id"],
            stage=payload.get("stage"),
        )


async def test_an_opportunity_queried_as_it_opens_replays_as_it_ran(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    """Queries that reach the server before the first workflow task (as `create`'s do, on a
    busy worker) are answered with that task. The run must still replay to the state it wrote:
    a local activity in that task makes the replay fail as nondeterministic, or see another
    time than the read model holds."""
    process_id = await setup_process(pool, uid)
    contact_id = await setup_contact(pool, uid)
    # Started as `create` starts it, but before any worker polls (`create` itself refuses
    # to start without one).
    await client.start_workflow(
        "Opportunity",
        {"opportunity_id": f"o-{uid}", "contact_id": contact_id, "process_id": process_id},
        id=f"opportunity-o-{uid}",
        task_queue=task_queue,
    )
    handle = opportunities.handle(f"o-{uid}")
    asking = [asyncio.create_task(handle.query("state", result_type=Opportunity)) for _ in range(3)]
    # No worker polls yet: the queries wait at the server for the first workflow task.
    done, _ = await asyncio.wait(asking, timeout=0.5)
    assert not done
    async with build_worker(client, pool, task_queue):
        answers = await asyncio.gather(*asking, return_exceptions=True)
        opened = await eventually(lambda: opportunities.state(f"o-{uid}"))
    assert opened.current_stage == "Prospect"
    assert any(isinstance(answer, Opportunity) for answer in answers)
    history = await handle.fetch_history()
    replayer = Replayer(workflows=[OpportunityWorkflow], data_converter=client.data_converter)
    await replayer.replay_workflow(history)  # raises on nondeterminism
    async with build_worker(client, pool, task_queue):  # a new worker replays the run
        replayed = await handle.query("state", result_type=Opportunity)
    row = await eventually(lambda: store.opportunities.get_opportunity(pool, f"o-{uid}"))
    assert replayed.stage_entered_at == opened.stage_entered_at == row.stage_entered_at


async def test_workflow_id_must_match_the_opportunity(
    worker: Worker, pool: asyncpg.Pool, client: Client, task_queue: str, uid: str
) -> None:
    handle = await client.start_workflow(
        "Opportunity",
        {"opportunity_id": f"o-{uid}", "contact_id": await setup_contact(pool, uid)},
        id=f"something-{uid}",
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert f"start it as 'opportunity-o-{uid}'" in str(caught.value.cause)


async def test_bad_update_is_rejected_with_valid_stages_and_leaves_no_trace(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    handle = opportunities.handle(f"o-{uid}")
    events_before = await quiet_history_length(handle)
    with pytest.raises(CommandRejected) as caught:
        await opportunities.change_stage(f"o-{uid}", "Negotiation")
    reason = str(caught.value)
    assert "unknown stage 'Negotiation'" in reason
    assert "'Prospect', 'Needs analysis', 'Proposal', 'Closed won', 'Closed lost'" in reason
    events = [e async for e in handle.fetch_history_events()]
    assert len(events) == events_before, "a rejected update writes nothing to history"
    with pytest.raises(WorkflowUpdateFailedError) as raw:
        await handle.execute_update("change_stage", {"stgae": "Proposal"})
    assert isinstance(raw.value.cause, ApplicationError)
    assert "stgae: Extra inputs are not permitted" in raw.value.cause.message
    state = await opportunities.state(f"o-{uid}")
    assert state.current_stage == "Prospect" and len(state.history) == 1


async def test_bad_signal_lands_in_rejected_and_the_workflow_keeps_running(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await open_one(pool, opportunities, uid)
    handle = opportunities.handle(f"o-{uid}")
    await handle.signal("change_stage", {"stage": "Negotiation", "by": "eve"})
    await handle.signal("change_stage", "not an object")
    await handle.signal("change_stage", {"stage": "Proposal"})

    async def rejected() -> Opportunity | None:
        state = await opportunities.state(f"o-{uid}")
        return state if state.current_stage == "Proposal" else None

    state = await eventually(rejected)
    assert [r.reason.split(";")[0] for r in state.rejected] == [
        "unknown stage 'Negotiation' for process " + repr(process_id),
        "invalid change_stage payload: expected a JSON object, got a string",
    ]
    assert state.rejected[0].payload == '{"stage":"Negotiation","by":"eve"}'
    assert [r.code for r in state.rejected] == ["unknown_stage", "invalid_payload"]
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_change_stage_by_signal_and_by_http_api(
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    servers: Servers,
    uid: str,
) -> None:
    await open_one(pool, opportunities, uid)
    await opportunities.handle(f"o-{uid}").signal("change_stage", {"stage": "Needs analysis"})

    url = (
        f"http://127.0.0.1:{servers.http_port}/api/v1/namespaces/default/workflows/"
        f"opportunity-o-{uid}/signal/change_stage"
    )
    body = json.dumps({"input": [{"stage": "Proposal", "by": "http"}]}).encode()

    def post() -> int:
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)

    assert await asyncio.to_thread(post) == 200

    async def moved() -> list[tuple[str | None, str, str | None]] | None:
        rows = await store.opportunities.get_history(pool, f"o-{uid}")
        return [(r.from_stage, r.to_stage, r.by) for r in rows] if len(rows) == 3 else None

    assert await eventually(moved) == [
        (None, "Prospect", None),
        ("Prospect", "Needs analysis", None),
        ("Needs analysis", "Proposal", "http"),
    ]


async def test_request_id_is_applied_once(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    first = await opportunities.change_stage(f"o-{uid}", "Proposal", request_id="batch-7")
    await opportunities.change_stage(f"o-{uid}", "Prospect")
    again = await opportunities.change_stage(f"o-{uid}", "Proposal", request_id="batch-7")
    assert not first.duplicate and again.duplicate
    assert again.current_stage == "Prospect"
    await opportunities.handle(f"o-{uid}").signal(
        "change_stage", {"stage": "Proposal", "request_id": "batch-7"}
    )
    await opportunities.change_stage(f"o-{uid}", "Needs analysis")  # queued after the signal
    history = await opportunities.history(f"o-{uid}")
    assert [h.to_stage for h in history] == ["Prospect", "Proposal", "Prospect", "Needs analysis"]
    assert len(await store.opportunities.get_history(pool, f"o-{uid}")) == 4


async def test_commands_apply_in_arrival_order(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid)
    handle = opportunities.handle(f"o-{uid}")
    route = ["Needs analysis", "Proposal", "Prospect", "Proposal", "Prospect"] * 4
    for stage in route:
        await handle.signal("change_stage", {"stage": stage})
    final = await opportunities.change_stage(f"o-{uid}", "Closed lost")
    assert final.current_stage == "Closed lost" and final.status == "lost"
    history = await opportunities.history(f"o-{uid}")
    assert [h.to_stage for h in history] == ["Prospect", *route, "Closed lost"]
    rows = await store.opportunities.get_history(pool, f"o-{uid}")
    assert [r.to_stage for r in rows] == ["Prospect", *route, "Closed lost"]
    row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
    assert row is not None and row.status == "lost" and row.closed_at is not None


async def test_continue_as_new_carries_everything(
    worker: Worker,
    pool: asyncpg.Pool,
    client: Client,
    task_queue: str,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    process_id = await setup_process(pool, uid)
    contact_id = await setup_contact(pool, uid)
    handle = await client.start_workflow(
        "Opportunity",
        {
            "opportunity_id": f"o-{uid}",
            "contact_id": contact_id,
            "process_id": process_id,
            "owner": "ann",
            "continue_as_new_after_events": 40,
        },
        id=opportunity_workflow_id(f"o-{uid}"),
        task_queue=task_queue,
    )
    first_run = (await handle.describe()).run_id
    route = ["Needs analysis", "Proposal", "Prospect"] * 10
    for index, stage in enumerate(route):
        if index % 3 == 0:
            await handle.signal("change_stage", {"stage": stage, "request_id": f"r-{index}"})
        else:
            await opportunities.change_stage(f"o-{uid}", stage, request_id=f"r-{index}")
    await handle.signal("change_stage", {"stage": "Nowhere"})
    await opportunities.change_stage(f"o-{uid}", "Proposal", request_id="last")

    state = await opportunities.state(f"o-{uid}")
    runs = {
        w.run_id
        async for w in client.list_workflows(
            f"WorkflowId = '{opportunity_workflow_id(f'o-{uid}')}'"
        )
    }
    assert len(runs) >= 3, "the low threshold made it continue-as-new several times"
    assert first_run in runs
    assert [h.to_stage for h in state.history] == ["Prospect", *route, "Proposal"]
    assert [r.reason.split(";")[0] for r in state.rejected] == [
        f"unknown stage 'Nowhere' for process {process_id!r}"
    ]
    assert state.owner == "ann" and state.applied_request_ids[-1] == "last"
    # A request id applied in an earlier run is still known after continue-as-new.
    again = await opportunities.change_stage(f"o-{uid}", "Prospect", request_id="r-0")
    assert again.duplicate
    rows = await store.opportunities.get_history(pool, f"o-{uid}")
    assert len(rows) == len(route) + 2


async def test_running_opportunity_keeps_its_process_version(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    process_id = await setup_process(pool, uid)
    contact_id = await setup_contact(pool, uid)
    await opportunities.create(contact_id, opportunity_id=f"o1-{uid}", process_id=process_id)
    document = example_definition(process_id)
    document["stages"].insert(3, {"name": "Underwriting", "probability": 80})
    process, created = await processes.apply_process(
        pool, ProcessDefinition.model_validate(document)
    )
    assert created and process.version == 2
    await opportunities.create(contact_id, opportunity_id=f"o2-{uid}", process_id=process_id)
    with pytest.raises(CommandRejected, match="unknown stage 'Underwriting'"):
        await opportunities.change_stage(f"o1-{uid}", "Underwriting")
    result = await opportunities.change_stage(f"o2-{uid}", "Underwriting")
    assert result.current_stage == "Underwriting"
    assert (await opportunities.state(f"o1-{uid}")).process_version == 1
    assert (await opportunities.state(f"o2-{uid}")).process_version == 2


async def test_search_attributes_follow_the_stage(
    worker: Worker,
    pool: asyncpg.Pool,
    client: Client,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    process_id = await setup_process(pool, uid)
    await add_users(pool, f"owner-{uid}")
    await opportunities.create(
        await setup_contact(pool, uid),
        opportunity_id=f"o-{uid}",
        process_id=process_id,
        owner=f"owner-{uid}",
    )
    await opportunities.change_stage(f"o-{uid}", "Proposal")

    async def indexed() -> int:
        query = f"SalesProcess = '{process_id}' AND OpportunityStage = 'Proposal'"
        return (await client.count_workflows(query)).count

    assert await eventually(indexed) == 1
    description = await opportunities.handle(f"o-{uid}").describe()
    attributes = description.typed_search_attributes
    from runtime import search_attributes as sa

    assert attributes.get(sa.OPPORTUNITY_OWNER) == f"owner-{uid}"
    assert attributes.get(sa.OPEN_ACTIONS) == 2
    assert attributes.get(sa.OPPORTUNITY_STATUS) == "open"


async def test_search_attributes_settle_after_a_stream_of_commands(
    worker: Worker,
    pool: asyncpg.Pool,
    client: Client,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    """Under a stream of commands the owner is indexed at most about once a second, not
    after every batch (`search-attributes-under-load`), and once the stream stops the
    search attributes hold the final state."""
    from runtime import search_attributes as sa

    await open_one(pool, opportunities, uid)
    await add_users(pool, f"final-{uid}")
    handle = opportunities.handle(f"o-{uid}")
    await asyncio.gather(*(handle.signal("change_owner", {"owner": f"o{n}"}) for n in range(150)))
    await opportunities.change_owner(f"o-{uid}", f"final-{uid}")

    async def indexed() -> int:
        query = f"OpportunityOwner = 'final-{uid}'"
        return (await client.count_workflows(query)).count

    assert await eventually(indexed) == 1
    description = await handle.describe()
    assert description.typed_search_attributes.get(sa.OPPORTUNITY_OWNER) == f"final-{uid}"
    assert description.typed_search_attributes.get(sa.OPPORTUNITY_STAGE) == "Prospect"

    owner_upserts = projections = 0
    async for event in handle.fetch_history_events():
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes
            owner_upserts += sa.OPPORTUNITY_OWNER.name in fields.search_attributes.indexed_fields
        projections += (
            event.HasField("activity_task_scheduled_event_attributes")
            and event.activity_task_scheduled_event_attributes.activity_type.name
            == "project_opportunity"
        )
    assert 2 <= owner_upserts < projections, (owner_upserts, projections)


class LosesFirstAnswers(OpportunityActivities):
    """The real projection activity, but the first attempt of each write 'loses' its answer
    after committing (as when a worker dies or the network drops right after COMMIT)."""

    @activity.defn(name="project_opportunity")
    async def project_opportunity(self, write: ProjectionWrite) -> Projected:
        projected = await super().project_opportunity(write)
        if activity.info().attempt == 1:
            raise RuntimeError("connection lost after commit")
        return projected


def _attempt(event: Any) -> int:
    """The attempt that completed an activity (from its started event); 0 for other events."""
    if event.HasField("activity_task_started_event_attributes"):
        return int(event.activity_task_started_event_attributes.attempt)
    return 0


async def test_retried_projection_writes_never_duplicate_history(
    client: Client, pool: asyncpg.Pool, task_queue: str, uid: str
) -> None:
    async with build_worker(
        client, pool, task_queue, opportunity_activities=LosesFirstAnswers(pool)
    ):
        opportunities = OpportunitiesClient(client, task_queue)
        await open_one(pool, opportunities, uid)
        for stage in ("Needs analysis", "Proposal", "Closed won"):
            await opportunities.change_stage(f"o-{uid}", stage)
        handle = opportunities.handle(f"o-{uid}")
        retried = [n async for e in handle.fetch_history_events() if (n := _attempt(e)) > 1]
    projections = 4  # open, then three stage changes, each by an activity task
    assert retried == [2] * projections, "every projection write was retried once"
    rows = await store.opportunities.get_history(pool, f"o-{uid}")
    assert [r.to_stage for r in rows] == ["Prospect", "Needs analysis", "Proposal", "Closed won"]
    row = await store.opportunities.get_opportunity(pool, f"o-{uid}")
    assert row is not None and (row.status, row.revision) == ("won", 3)
