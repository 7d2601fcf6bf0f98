"""Hostile payloads of any shape, generated: sent as signals, updates and start inputs through a
raw Temporal client to a handful of opportunities and to `MassModify`. Whatever arrives, no
workflow task fails, every update is answered within seconds, every opportunity keeps
running, its `state` query works, and its read model agrees (`verify`).
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Future
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.common import RawValue, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from sales.commands import COMMANDS
from starter.client import OpportunitiesClient
from starter.verify import verify
from store import users
from tests.support.helpers import open_one, task_failures

pytestmark = pytest.mark.usefixtures("verified")

EXAMPLES = 120
FEW = settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
"""Examples are sent to real servers: a few dozen, no deadline, nothing remembered."""
UPDATE_SECONDS = 5.0

hostile_text = st.text(
    st.characters(codec=None, categories=None, exclude_categories=()), max_size=40
) | st.sampled_from(["\x00", "\ud800", "a\r\nb", "\u202e", "x" * 70_000, "Proposal"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
command_like = st.fixed_dictionaries(
    {},
    optional={
        "stage": json_values,
        "owner": json_values,
        "action_ids": json_values,
        "action_id": json_values,
        "activity_id": json_values,
        "outcome": json_values,
        "request_id": json_values,
        "reply_to": json_values,
        "by": json_values,
        "changes": json_values,
        "action": json_values,
    },
)


def as_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()  # lone surrogates as \\udxxx


payload_bytes = (
    (json_values | command_like).map(lambda v: (b"json/plain", as_json(v)))
    | st.tuples(
        st.sampled_from([b"json/plain", b"binary/plain", b"json/protobuf", b"", b"x\x00y"]),
        st.binary(max_size=200),
    )
    | st.builds(lambda n: (b"json/plain", b"[" * n + b"]" * n), st.integers(200, 2000))
)
names = st.sampled_from(sorted(COMMANDS)) | st.text(min_size=1, max_size=20)
"""Command names, and others (surrogates excluded: the client cannot encode them)."""
sends = st.tuples(st.sampled_from(["signal", "update"]), st.integers(0, 2), names, payload_bytes)


def raw(encoded: tuple[bytes, bytes]) -> RawValue:
    encoding, data = encoded
    return RawValue(Payload(metadata={"encoding": encoding}, data=data))


async def test_no_payload_leaves_a_workflow_stuck(
    client: Client,
    worker: Worker,
    pool: asyncpg.Pool,
    opportunities: OpportunitiesClient,
    task_queue: str,
    uid: str,
) -> None:
    process_id = await open_one(pool, opportunities, uid)
    targets = [f"o-{uid}"]
    for n in (1, 2):
        await opportunities.create(f"c-{uid}", opportunity_id=f"o{n}-{uid}", process_id=process_id)
        targets.append(f"o{n}-{uid}")
    silent = await client.start_workflow(  # a batch that keeps waiting for an answer
        "Opportunity", {}, id=f"opportunity-q-{uid}", task_queue=f"nobody-{uid}"
    )
    await users.put_user(pool, users.User(user_id="x", name="X"))  # the batch's owner
    batch = await client.start_workflow(
        "MassModify",
        {"batch_id": f"hb-{uid}", "ids": [f"q-{uid}"], "owner": "x",
         "answer_timeout_seconds": 3600},
        id=f"mass-modify-hb-{uid}", task_queue=task_queue,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    slow: list[str] = []
    starts: list[str] = []

    sent: list[str] = []

    async def send(kind: str, target: int, name: str, encoded: tuple[bytes, bytes]) -> None:
        sent.append(kind)
        handle = client.get_workflow_handle(f"opportunity-{targets[target]}")
        try:
            if kind == "signal":
                await handle.signal(name, raw(encoded))
            else:
                await asyncio.wait_for(handle.execute_update(name, raw(encoded)), UPDATE_SECONDS)
        except WorkflowUpdateFailedError as error:
            assert isinstance(error.cause, ApplicationError), error.cause
        except RPCError as error:  # the server refused the call itself (a name it rejects)
            assert error.status == RPCStatusCode.INVALID_ARGUMENT, error
        except TimeoutError:
            slow.append(name)

    async def start(workflow: str, encoded: tuple[bytes, bytes]) -> None:
        workflow_id = (
            f"{'opportunity' if workflow == 'Opportunity' else 'mass-modify'}-h{len(starts)}-{uid}"
        )
        starts.append(workflow_id)
        await client.start_workflow(
            workflow, raw(encoded), id=workflow_id, task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )  # fmt: skip

    def on_loop(work: Any) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(work, loop)
        future.result(timeout=30)

    @settings(FEW, max_examples=EXAMPLES)
    @given(sends)
    def commands(sent: tuple[str, int, str, tuple[bytes, bytes]]) -> None:
        on_loop(send(*sent))

    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.sampled_from(["Opportunity", "MassModify"]), payload_bytes)
    def start_inputs(workflow: str, encoded: tuple[bytes, bytes]) -> None:
        on_loop(start(workflow, encoded))

    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.text(min_size=1, max_size=20), payload_bytes)
    def batch_signals(name: str, encoded: tuple[bytes, bytes]) -> None:
        on_loop(batch.signal(name, raw(encoded)))

    await asyncio.to_thread(commands)
    await asyncio.to_thread(start_inputs)
    await asyncio.to_thread(batch_signals)

    assert len(sent) >= EXAMPLES * 0.9 and "update" in sent and "signal" in sent
    assert len(starts) >= 20
    assert slow == [], "every update is answered within seconds"
    for target in targets:
        handle = client.get_workflow_handle(f"opportunity-{target}")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert await task_failures(handle) == 0
        await opportunities.state(target)  # the query works
        await opportunities.change_owner(target, f"after-{uid}")  # and so do commands
        verdict = await verify(opportunities, pool, target)
        assert verdict.differences == [], verdict
    for workflow_id in starts:
        handle = client.get_workflow_handle(workflow_id)
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), 15)
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput"
        assert await task_failures(handle) == 0
    assert (await batch.describe()).status == WorkflowExecutionStatus.RUNNING
    assert await task_failures(batch) == 0
    await batch.terminate()
    await silent.terminate()
