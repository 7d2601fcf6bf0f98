"""A batch trusts only its members: an answer counts only when it answers the change this batch
sent to an opportunity whose answer it waits for; a batch id names one request for good; the
owner a batch gives must be a user; a batch moving each to its next stage moves none that has
moved since it was selected, and carries no more than its budget with the stages. Real
servers; forged answers through a raw client.

Members that must stay unanswered for a while are "parked": opened on a task queue of their
own whose worker then stops, so the batch's change waits in their history until a worker
polls that queue again and they answer for real.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

import store.opportunities
from activities.mass import MAX_SELECTION, MAX_SELECTION_BYTES
from sales.commands import ChangeStage
from sales.validation import json_size
from starter.client import OpportunitiesClient
from store import batches, users
from store.search import SearchFilters
from tests.support.helpers import (
    eventually,
    open_one,
    setup_contact,
    setup_process,
    task_failures,
)
from tests.support.servers import Cli
from worker import build_worker
from workflows.mass_messages import MassModifyInput, Progress

pytestmark = pytest.mark.usefixtures("verified")

LATE_SECONDS = 60.0
"""How long parked opportunities may take to answer once their worker is back."""


async def a_user(pool: asyncpg.Pool, user_id: str) -> str:
    await users.put_user(pool, users.User(user_id=user_id, name="Mass Owner"))
    return user_id


async def park(client: Client, pool: asyncpg.Pool, uid: str, opportunity_ids: list[str]) -> str:
    """Open these opportunities on a task queue of their own and stop its worker: the queue."""
    queue = f"parked-{uid}"
    process_id = await setup_process(pool, f"p{uid}", on_entry=False)
    contact_id = await setup_contact(pool, f"p{uid}")
    parked = OpportunitiesClient(client, queue)
    async with build_worker(client, pool, queue):
        for opportunity_id in opportunity_ids:
            await parked.create(contact_id, opportunity_id=opportunity_id, process_id=process_id)
    return queue


@asynccontextmanager
async def worker_on(client: Client, pool: asyncpg.Pool, queue: str) -> AsyncIterator[None]:
    async with build_worker(client, pool, queue):
        yield


async def signal_names(handle: WorkflowHandle[Any, Any]) -> list[str]:
    return [
        event.workflow_execution_signaled_event_attributes.signal_name
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


async def signals_handled(handle: WorkflowHandle[Any, Any], count: int) -> bool:
    """Whether the workflow took `count` signals and completed a task after the last one."""
    events = [event.event_type async for event in handle.fetch_history_events()]
    signaled = [n for n, kind in enumerate(events)
                if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]  # fmt: skip
    completed = [n for n, kind in enumerate(events)
                 if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]  # fmt: skip
    return len(signaled) >= count and bool(completed) and completed[-1] > signaled[-1]


async def sent_changes(handle: WorkflowHandle[Any, Any]) -> int:
    """Signals the batch sent to opportunities."""
    kind = EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
    return sum([event.event_type == kind async for event in handle.fetch_history_events()])


def raw(data: bytes, encoding: bytes = b"json/plain") -> RawValue:
    return RawValue(Payload(metadata={"encoding": encoding}, data=data))


# --- defect 6: an answer from anyone ----------------------------------------------------


async def test_a_forged_answer_does_not_count(
    client: Client,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = await a_user(pool, f"bob-{uid}")
    noq = f"noq1-{uid}"
    queue = await park(client, pool, uid, [noq])
    batch = MassModifyInput(batch_id=f"B-{uid}", ids=[noq], owner=owner)
    handle = await opportunities.start_mass_modify(batch)

    async def sent() -> bool:
        return "change_owner" in await signal_names(opportunities.handle(noq))

    await eventually(sent, 30)
    raw_batch = client.get_workflow_handle(f"mass-modify-B-{uid}")  # a raw Temporal client
    forged = [
        # As reported: another request id, "applied".
        {"opportunity_id": noq, "command": "change_owner", "request_id": "some-other-batch",
         "result": "applied"},
        {"opportunity_id": noq, "command": "change_owner", "result": "applied"},
        # This batch's request id, but another command, or an opportunity it never sent to.
        {"opportunity_id": noq, "command": "change_stage", "request_id": f"B-{uid}",
         "result": "applied"},
        {"opportunity_id": f"other-{uid}", "command": "change_owner", "request_id": f"B-{uid}",
         "result": "applied"},
    ]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        for answer in forged:
            await raw_batch.signal("command_outcome", answer)

        async def handled() -> bool:
            return await signals_handled(handle, len(forged))

        await eventually(handled, 30)
    progress = await opportunities.mass_progress(f"B-{uid}")
    assert (progress.total, progress.done, progress.changed) == (1, 0, 0), progress
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    ignored = [w for w in warnings if "ignored a command_outcome" in w]
    assert len(ignored) == len(forged), warnings
    assert not any("some-other-batch" in w or f"other-{uid}" in w for w in warnings)
    row = await store.opportunities.get_opportunity(pool, noq)  # its worker is away
    assert row is not None and row.owner != owner

    async with worker_on(client, pool, queue):  # now it answers for real
        report = await asyncio.wait_for(handle.result(), LATE_SECONDS)
        assert (report.total, report.done, report.changed) == (1, 1, 1)
        assert (await opportunities.state(noq)).owner == owner
    assert await task_failures(handle) == 0


# --- defect 7: a batch id used again ----------------------------------------------------


async def test_a_batch_id_used_for_another_change_is_refused(
    cli: Cli,
    client: Client,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    owner = await a_user(pool, f"bob-{uid}")
    process_id = await open_one(pool, opportunities, uid, on_entry=False)
    bxx = f"bxx-{uid}"
    first = await cli("mass-modify", "--process", process_id, "--owner", owner, "--yes",
                      "--batch-id", bxx)  # fmt: skip
    assert first.code == 0 and "1 changed" in first.stdout, first.stderr

    # As reported: the same batch id, another change.
    again = await cli("mass-modify", "--process", process_id, "--to-stage", "Proposal",
                      "--yes", "--batch-id", bxx)  # fmt: skip
    assert again.code == 1, again.stdout
    assert again.stderr.strip() == (
        f"error: batch_exists: batch '{bxx}' was used for another change; give another --batch-id"
    )
    # Past the command line's own check, the batch refuses itself, before sending anything.
    handle = await opportunities.start_mass_modify(
        MassModifyInput(
            batch_id=bxx, filters=SearchFilters(process_id=process_id), to_stage="Proposal"
        )
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), 30)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "BatchRefused"
    assert cause.non_retryable and cause.details == ({"code": "batch_exists"},)
    assert cause.message.startswith("batch_exists: ")
    assert await sent_changes(handle) == 0
    assert await task_failures(handle) == 0
    state = await opportunities.state(f"o-{uid}")
    assert (state.current_stage, state.owner) == ("Prospect", owner)
    status = await cli("mass-modify", "status", bxx)
    assert status.code == 1 and status.stderr.startswith("error: batch_exists: "), status

    # The same request again goes on: each member already has this batch's change.
    same = await cli("mass-modify", "--process", process_id, "--owner", owner, "--yes",
                     "--batch-id", bxx, "--json")  # fmt: skip
    assert same.code == 0, same.stderr
    report = Progress.model_validate(same.json())
    assert (report.total, report.changed, report.skipped) == (1, 0, 1)
    assert report.outcomes[0].reason == "already applied by this batch"
    state = await opportunities.state(f"o-{uid}")
    assert (state.current_stage, state.owner) == ("Prospect", owner)
    assert await pool.fetchval("SELECT count(*) FROM batches WHERE batch_id = $1", bxx) == 1


async def test_a_start_cannot_skip_the_check_with_a_made_up_selection(
    client: Client,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    """`remaining` and `progress` would skip the freezing activity and its checks: only a run
    that continues as new takes them."""
    owner = await a_user(pool, f"bob-{uid}")
    await open_one(pool, opportunities, uid, on_entry=False)
    first = MassModifyInput(batch_id=f"r-{uid}", ids=[f"o-{uid}"], owner=owner)
    await (await opportunities.start_mass_modify(first)).result()
    for carried in ({"remaining": [f"o-{uid}"]}, {"progress": {"batch_id": f"r-{uid}"}}):
        handle = await client.start_workflow(
            "MassModify",
            {"batch_id": f"r-{uid}", "ids": [f"o-{uid}"], "to_stage": "Proposal", **carried},
            id=f"mass-modify-r-{uid}",
            task_queue=opportunities.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), 30)
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput"
        assert "carried across continue-as-new only" in cause.message
        assert await sent_changes(handle) == 0
    assert (await opportunities.state(f"o-{uid}")).current_stage == "Prospect"


# --- a batch's owner --------------------------------------------------------------------


async def test_an_owner_who_is_no_user_is_refused(
    cli: Cli,
    client: Client,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    uid: str,
) -> None:
    process_id = await open_one(pool, opportunities, uid, on_entry=False)
    refused = await cli("mass-modify", "--process", process_id, "--owner", f"zed-{uid}",
                        "--yes", "--batch-id", f"u-{uid}")  # fmt: skip
    assert refused.code == 1
    assert refused.stderr.strip() == (
        f"error: unknown_user: no user 'zed-{uid}'; `opportunities user add` adds one"
    )
    handle = await client.start_workflow(  # a raw start, past the command line
        "MassModify",
        {"batch_id": f"u-{uid}", "ids": [f"o-{uid}"], "owner": f"zed-{uid}"},
        id=f"mass-modify-u-{uid}",
        task_queue=opportunities.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), 30)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.details == ({"code": "unknown_user"},)
    assert cause.message.startswith("unknown_user: ") and cause.non_retryable
    assert await sent_changes(handle) == 0
    assert (await opportunities.state(f"o-{uid}")).owner != f"zed-{uid}"
    assert await batches.request_of(pool, f"u-{uid}") is None, "a refused batch uses no id"

    owner = await a_user(pool, f"zed-{uid}")  # the user exists now: the same id is free
    done = await cli("mass-modify", "--process", process_id, "--owner", owner, "--yes",
                     "--batch-id", f"u-{uid}")  # fmt: skip
    assert done.code == 0 and "1 changed" in done.stdout, done.stderr


# --- forged and hostile answers, generated ----------------------------------------------


HUGE = b"1" + b"0" * 4400
"""An integer longer than Python converts from text by default."""

texts = st.text(max_size=30) | st.sampled_from(
    ["", "\x00", "\ud800", "a\r\nb", "\u202eevil", "x" * 70_000, "r" * 5_000, "applied"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def forged_answers(batch_id: str, waiting: list[str], answered: list[str]) -> Any:
    """`command_outcome` payloads that are no real answer to this batch: any request id,
    opportunity id, result, code and reason (of any size), extra fields, huge integers,
    and payloads that are no answer at all; never this batch's request id and command from
    an opportunity it waits for (that would be an answer)."""
    answer = st.fixed_dictionaries(
        {
            "opportunity_id": st.sampled_from([*waiting, *answered, "nobody"]) | texts,
            "command": st.sampled_from(["change_owner", "change_stage"]) | texts,
            "result": st.sampled_from(["applied", "duplicate", "rejected"]) | texts,
        },
        optional={
            "request_id": st.sampled_from([batch_id, "some-other-batch", batch_id.upper(),
                                           f"{batch_id} "]) | json_values,
            "reason": texts | json_values,
            "code": st.sampled_from(["already_owned", "closed"]) | texts | json_values,
            "extra": json_values,
        },
    ).filter(
        lambda a: not (
            a.get("request_id") == batch_id
            and a["command"] == "change_owner"
            and a["opportunity_id"] in waiting
        )
    )  # fmt: skip

    def encode(value: Any, huge: bool) -> tuple[bytes, bytes]:
        data = json.dumps(value, ensure_ascii=True).encode()
        if huge and data.endswith(b"}"):
            data = data[:-1] + (b',"n":' if len(data) > 2 else b'"n":') + HUGE + b"}"
        return b"json/plain", data

    return (
        st.builds(encode, answer | json_values, st.booleans())
        | st.tuples(st.sampled_from([b"json/plain", b"binary/plain", b""]), st.binary(max_size=100))
        | st.builds(lambda n: (b"json/plain", b"[" * n + b"]" * n), st.integers(100, 2000))
    )


async def test_forged_answers_to_a_waiting_batch_count_for_nothing(
    client: Client, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    owner = await a_user(pool, f"own-{uid}")
    await open_one(pool, opportunities, uid, on_entry=False)
    answered = [f"o-{uid}", f"o2-{uid}"]
    await opportunities.create(f"c-{uid}", opportunity_id=answered[1], process_id=f"life-{uid}")
    waiting = [f"w1-{uid}", f"w2-{uid}"]
    queue = await park(client, pool, uid, waiting)
    batch_id = f"h-{uid}"
    handle = await opportunities.start_mass_modify(
        MassModifyInput(batch_id=batch_id, ids=[*answered, *waiting], owner=owner)
    )

    async def real_ones_answered() -> bool:
        return (await opportunities.mass_progress(batch_id)).changed == len(answered)

    await eventually(real_ones_answered, 30)
    loop = asyncio.get_running_loop()
    sent: list[int] = []

    async def send(encoded: tuple[bytes, bytes], twice: bool) -> None:
        payload = raw(encoded[1], encoded[0])
        await handle.signal("command_outcome", args=[payload, payload] if twice else [payload])
        sent.append(1)

    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(forged_answers(batch_id, waiting, answered), st.booleans())
    def forge(encoded: tuple[bytes, bytes], twice: bool) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(send(encoded, twice), loop)
        future.result(timeout=30)

    await asyncio.to_thread(forge)
    assert len(sent) >= 60

    async def all_handled() -> bool:
        return await signals_handled(handle, len(answered) + len(sent))

    await eventually(all_handled, 30)
    progress = await opportunities.mass_progress(batch_id)
    assert (progress.done, progress.changed, progress.skipped, progress.rejected) == (
        len(answered), len(answered), 0, 0,
    ), progress  # fmt: skip
    assert progress.outcomes == []

    async with worker_on(client, pool, queue):  # the waiting ones answer for real
        report = await asyncio.wait_for(handle.result(), LATE_SECONDS)
        for opportunity_id in [*answered, *waiting]:
            assert (await opportunities.state(opportunity_id)).owner == owner
    total = len(answered) + len(waiting)
    assert (report.total, report.done, report.changed) == (total, total, total), report
    assert await task_failures(handle) == 0


# --- a batch moving each to its next stage ----------------------------------------------


async def test_a_member_that_moved_after_the_selection_is_not_moved_again(
    client: Client, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    """Two parked members, selected in Prospect; the batch sends one change at a time. While
    it waits for the first, the second is moved by hand: the batch's change then finds it in
    another stage, is rejected (`stage_changed`), and leaves it where it was moved."""
    first, second = f"ns1-{uid}", f"ns2-{uid}"
    queue = await park(client, pool, uid, [first, second])
    rows = await pool.fetch(
        "SELECT current_stage FROM opportunities WHERE opportunity_id = ANY($1::text[])",
        [first, second],
    )
    assert [row["current_stage"] for row in rows] == ["Prospect", "Prospect"]
    batch_id = f"ns-{uid}"
    handle = await opportunities.start_mass_modify(
        MassModifyInput(batch_id=batch_id, ids=[first, second], to_next_stage=True, concurrency=1)
    )

    async def first_sent() -> bool:
        return "change_stage" in await signal_names(opportunities.handle(first))

    await eventually(first_sent, 30)
    assert (await opportunities.mass_progress(batch_id)).total == 2, "frozen"
    await opportunities.signal(second, ChangeStage(stage="Proposal", by="ann"))
    assert await signal_names(opportunities.handle(second)) == ["change_stage"], "by hand only"

    async with worker_on(client, pool, queue):
        report = await asyncio.wait_for(handle.result(), LATE_SECONDS)
        assert (await opportunities.state(first)).current_stage == "Needs analysis"
        moved = await opportunities.state(second)
    assert (report.total, report.changed, report.skipped, report.rejected) == (2, 1, 0, 1)
    [outcome] = report.outcomes
    assert (outcome.opportunity_id, outcome.result, outcome.code) == (
        second, "rejected", "stage_changed",
    )  # fmt: skip
    assert "it has moved meanwhile" in outcome.reason
    assert moved.current_stage == "Proposal"
    assert [(h.to_stage, h.source) for h in moved.history][-1] == ("Proposal", "manual")
    assert await task_failures(handle) == 0


def ids_filling(size: int, count: int) -> list[str]:
    """`count` distinct ids taking exactly `size` bytes as JSON."""
    width = (size - 2) // count - 3
    ids = [f"f{n:06d}".rjust(width, "x") for n in range(count)]
    short = size - json_size(ids)
    return [f"x{i}" if n < short else i for n, i in enumerate(ids)]


async def test_a_selection_that_fits_only_without_its_stages_is_refused(
    client: Client, worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    """The ids given fit the input's budget; with the stage of the one the read model has,
    the frozen selection would not: refused (`limit_reached`) before anything is sent."""
    process_id = await setup_process(pool, uid, on_entry=False)
    contact_id = await setup_contact(pool, uid)
    long_id = f"o-{uid}-{'l' * 150}"
    await opportunities.create(contact_id, opportunity_id=long_id, process_id=process_id)
    filler = ids_filling(MAX_SELECTION_BYTES - 60 - (len(long_id) + 3), MAX_SELECTION - 1)
    ids = [long_id, *filler]
    assert json_size(ids) == MAX_SELECTION_BYTES - 60
    batch_id = f"L-{uid}"
    handle = await opportunities.start_mass_modify(
        MassModifyInput(batch_id=batch_id, ids=ids, to_next_stage=True)
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), 60)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "BatchRefused"
    assert cause.details == ({"code": "limit_reached"},) and cause.non_retryable
    assert cause.message.startswith(f"limit_reached: the selection holds {MAX_SELECTION:,} ")
    assert "bytes of ids and their stages" in cause.message
    assert await sent_changes(handle) == 0
    assert await batches.request_of(pool, batch_id) is None, "a refused batch uses no id"
    assert (await opportunities.state(long_id)).current_stage == "Prospect"
