"""Record real workflow histories, one per feature path, for the replay test.

    .venv/bin/python -m tests.histories.record [PATH...]   (or `make histories`: all)

Starts its own PostgreSQL and Temporal dev server, runs each path with a worker of the
current code, and writes `tests/histories/<path>.json`. `tests/unit/test_replay.py` replays
every file against the code of the day, so a change that would break running opportunities (a
non-deterministic one) fails the build. Before the first release, record them again in a
commit of its own whenever the workflow changes; after it, see docs/versioning.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from bench.servers import local_servers
from runtime.signer import Signer
from sales.authorization import Dated, Directory, PermissionRule, Permissions, SigningKey
from sales.commands import ActionOverrides, ActivityDetails, AddRemark, ChangeOwner, ChangeStage
from sales.errors import CommandRejected
from sales.opportunity import Opportunity
from starter.client import OpportunitiesClient
from starter.client.subscriptions import Subscriptions, new_secret
from store import authorization, users
from store.search import SearchFilters
from store.users import User, put_user
from tests.support.helpers import (
    example_definition,
    setup_contact,
    setup_process,
    setup_references,
    start_continuing_early,
)
from tests.support.receiver import Receiver
from tests.support.worker_process import TEST_DELIVERY_ENV
from worker import build_worker, delivery_worker
from workflows.authorization import DirectoryHolder
from workflows.mass_messages import MassModifyInput

HERE = Path(__file__).resolve().parent
QUEUE = "record-histories"
DELIVERY_QUEUE = f"{QUEUE}-delivery"


async def until(check: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while not (value := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the path did not reach its end")
        await asyncio.sleep(0.1)
    return value


async def save(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    name: str,
    run_id: str | None = None,
    directory: Directory | None = None,
) -> None:
    """The history of the handle's latest run (or of `run_id`), as JSON, with the directory
    of keys and permissions its worker judged signed commands by (if any)."""
    history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
    recorded: dict[str, Any] = {"workflow_id": handle.id, "history": json.loads(history.to_json())}
    if directory is not None:
        recorded["directory"] = directory.model_dump(mode="json")
    (HERE / f"{name}.json").write_text(json.dumps(recorded, indent=1) + "\n")
    print(f"recorded {name}: {len(history.events)} events")


async def actions(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    await setup_process(pool, "actions")
    await setup_references(pool, "actions")
    contact = await setup_contact(
        pool, "actions", street="1 Main St", postal_code="10001", city="Springfield"
    )
    await opportunities.create(contact, opportunity_id="actions", process_id="life-actions")
    await opportunities.perform_actions("actions", ["welcome-letter", "seminar"])
    await opportunities.complete_actions("actions", ["intro-call"], outcome="Call back")
    await opportunities.add_action(
        "actions",
        "Prospect",
        {"action_id": "extra", "type": "calendar", "title": "Extra call",
         "activity": {"kind": "call"}},
    )  # fmt: skip
    await opportunities.perform_actions("actions", ["extra"])
    state = await opportunities.state("actions")
    extra = state.find_action("extra")
    assert extra is not None and extra[1].activity_id
    await opportunities.delete_activity("actions", extra[1].activity_id)
    await opportunities.modify_action("actions", "extra", {"title": "Extra call (moved)"})
    await opportunities.delete_action("actions", "extra")
    await opportunities.signal("actions", ChangeStage(stage="Nowhere"))  # rejected, kept
    await opportunities.change_owner("actions", "bob", request_id="owner-1")
    await opportunities.change_owner("actions", "bob", request_id="owner-1")  # duplicate
    await until(lambda: _rejected(opportunities, "actions"))
    await save(client, opportunities.handle("actions"), "actions")


async def reference_product(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """The reference product's commands: details entered on perform and changed, a team,
    a remark, outcome lists, Mark Complete with a stage, a move to another process, a
    deletion."""
    document = example_definition("refprod", activity_outcomes={"call": ["Interested", "No"]},
                                   cancel_on_advance=True)  # fmt: skip
    document["stages"][0]["actions"][0]["role"] = "adviser"
    await setup_process(pool, "refprod", on_entry=False, **{
        k: document[k] for k in ("stages", "activity_outcomes", "cancel_on_advance")})  # fmt: skip
    await setup_process(pool, "refprod-2", on_entry=False)
    await setup_references(pool, "refprod")
    contact = await setup_contact(
        pool, "refprod", street="1 Main St", postal_code="10001", city="Springfield"
    )
    await users.put_user(pool, users.User(user_id="bob", name="Bob Stone", roles=["adviser"]))
    opportunity = "refprod"
    await opportunities.create(contact, opportunity_id=opportunity, process_id="life-refprod")
    await opportunities.assign(opportunity, "adviser", "bob")
    due = datetime(2027, 1, 5, 10, 0, tzinfo=UTC)
    await opportunities.perform_actions(
        opportunity, ["intro-call", "welcome-letter"],
        overrides={"intro-call": ActionOverrides(due=due, notes="bring forms"),
                   "welcome-letter": ActionOverrides(method="document")},
    )  # fmt: skip
    activity_id = f"{opportunity}/intro-call/1"
    await opportunities.modify_activity(opportunity, activity_id, location="Her office")
    await opportunities.add_remark(opportunity, "prefers calls after six")
    await opportunities.record_outcome(opportunity, activity_id, outcome="Interested")
    await opportunities.complete_actions(opportunity, ["seminar"], stage="Proposal")
    await opportunities.move_process(opportunity, "life-refprod-2", "Needs analysis")
    await opportunities.delete_opportunity(opportunity, "duplicate")
    handle = opportunities.handle(opportunity)
    await handle.result()
    await save(client, handle, "reference-product")


async def _rejected(opportunities: OpportunitiesClient, opportunity_id: str) -> bool:
    return bool((await opportunities.state(opportunity_id)).rejected)


async def outcomes(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    await setup_process(pool, "outcomes")
    contact = await setup_contact(pool, "outcomes")
    await opportunities.create(contact, opportunity_id="outcomes", process_id="life-outcomes")
    state = await opportunities.state("outcomes")
    found = state.find_action("intro-call")
    assert found is not None and found[1].activity_id
    await opportunities.record_outcome("outcomes", found[1].activity_id, outcome="Sale Made")
    handle = opportunities.handle("outcomes")
    closed = Opportunity.model_validate(await handle.result())
    assert closed.status == "won"
    await save(client, handle, "outcomes-won")
    await opportunities.reopen("outcomes", "Proposal", by="ops")
    await opportunities.change_stage("outcomes", "Closed lost")
    await handle.result()
    await save(client, opportunities.handle("outcomes"), "reopened-then-lost")


async def timers(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    document = example_definition("timers")
    document["stages"][0]["follow_up_after_days"] = 1
    document["stages"][1]["advance_after_days"] = 1
    await setup_process(pool, "timers", on_entry=False, stages=document["stages"])
    contact = await setup_contact(pool, "timers")
    await opportunities.create(contact, opportunity_id="timers", process_id="life-timers")

    async def followed_up() -> bool:
        return (await opportunities.state("timers")).find_action("follow-up-1") is not None

    await until(followed_up)
    await opportunities.change_stage("timers", "Needs analysis")

    async def advanced() -> bool:
        return (await opportunities.state("timers")).current_stage == "Proposal"

    await until(advanced)
    await save(client, opportunities.handle("timers"), "timers")


async def continue_as_new(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    handle = await start_continuing_early(client, pool, "can", "can", QUEUE, 40)
    first_run = handle.result_run_id
    stages = ["Needs analysis", "Proposal", "Prospect"]
    for n in range(12):
        await opportunities.change_stage("can", stages[n % 3])
    description = await opportunities.handle("can").describe()
    assert description.run_id != first_run, "continued as new"
    await save(client, handle, "continue-as-new", run_id=first_run)


async def mass(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    await setup_process(pool, "mass", on_entry=False)
    contact = await setup_contact(pool, "mass")
    for n in range(3):
        await opportunities.create(contact, opportunity_id=f"mass-{n}", process_id="life-mass")
    await opportunities.change_stage("mass-0", "Closed lost")  # reported as rejected
    batch = MassModifyInput(
        batch_id="record", filters=SearchFilters(process_id="life-mass"), to_stage="Proposal"
    )
    handle = await opportunities.start_mass_modify(batch)
    report = await handle.result()
    assert (report.changed, report.rejected) == (2, 1), report
    await save(client, handle, "mass-modify")
    await save(client, opportunities.handle("mass-1"), "mass-modified-opportunity")


async def batched(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """Commands arriving while others run: applied back to back, one projection write."""
    await setup_process(pool, "batched", on_entry=False)
    contact = await setup_contact(pool, "batched")
    await opportunities.create(contact, opportunity_id="batched", process_id="life-batched")
    await asyncio.gather(
        *(opportunities.signal("batched", ChangeOwner(owner=f"o{n}")) for n in range(10)),
        *(opportunities.change_owner("batched", f"u{n}") for n in range(5)),
        opportunities.change_stage("batched", "Proposal"),
    )

    async def settled() -> bool:
        return len((await opportunities.state("batched")).applied_request_ids) >= 6

    await until(settled)
    await save(client, opportunities.handle("batched"), "batched")


async def under_load(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """Continue-as-new due while signals keep arriving: the run stops applying, answers its
    updates and carries the queued signals into the next run."""
    handle = await start_continuing_early(client, pool, "load", "load", QUEUE, 100)
    first_run = handle.result_run_id

    async def sender(k: int) -> None:
        for n in range(30):
            command = ChangeOwner(owner=f"o{k}-{n}", request_id=f"load-{k}-{n}")
            if n % 10 == 9:
                await opportunities.execute("load", command)
            else:
                await opportunities.signal("load", command)

    await asyncio.gather(*(sender(k) for k in range(8)))
    await opportunities.change_owner("load", "final", request_id="load-final")
    await save(client, handle, "continue-as-new-under-load", run_id=first_run)


async def updates_queried(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """Updates from several senders and a burst of signals while the opportunity is queried
    all along: every write and lookup goes by activity task; search attributes changed within
    a second wait for a timer."""
    await setup_process(pool, "queried", on_entry=False)
    contact = await setup_contact(pool, "queried")
    await opportunities.create(contact, opportunity_id="queried", process_id="life-queried")
    handle = opportunities.handle("queried")
    asking = True

    async def ask() -> None:
        while asking:
            await opportunities.state("queried")
            await asyncio.sleep(0.01)

    async def sender(k: int) -> None:
        for n in range(10):
            await opportunities.change_owner("queried", f"o{k}-{n}", request_id=f"q-{k}-{n}")

    asker = asyncio.ensure_future(ask())
    await asyncio.gather(*(sender(k) for k in range(4)), *(
        handle.signal("change_owner", {"owner": f"o{n}", "request_id": f"burst-{n}"})
        for n in range(60)
    ))  # fmt: skip

    async def burst_applied() -> bool:
        return len((await opportunities.state("queried")).applied_request_ids) >= 100

    await until(burst_applied)
    await opportunities.change_stage("queried", "Proposal", request_id="queried-2")
    asking = False
    await asker
    state = await opportunities.state("queried")
    assert len(state.applied_request_ids) == 101, state.applied_request_ids
    await save(client, handle, "updates-queried")


async def update_stream(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """Continue-as-new due while updates keep arriving: the run answers the updates it has
    accepted, refuses those that arrive meanwhile (the client sends them again, and the next
    run takes them) and continues."""
    handle = await start_continuing_early(client, pool, "stream", "stream", QUEUE, 100)
    first_run = handle.result_run_id

    async def sender(k: int) -> None:
        for n in range(15):
            await opportunities.execute(
                "stream", ChangeOwner(owner=f"o{k}-{n}", request_id=f"stream-{k}-{n}")
            )

    await asyncio.gather(*(sender(k) for k in range(8)))
    description = await opportunities.handle("stream").describe()
    assert description.run_id != first_run, "continued as new"
    await save(client, handle, "continue-as-new-under-updates", run_id=first_run)


async def stage_choices(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """A person's choices as the stage changes: the next stage guarded by the stage expected,
    the process's default for cancelling, the new stage's activity details, an outcome's stage
    with details, and an action whose activity was canceled."""
    await setup_process(pool, "choices", cancel_on_advance=True,
                        outcome_stages={"Interested": "Proposal"})  # fmt: skip
    contact = await setup_contact(pool, "choices")
    await opportunities.create(contact, opportunity_id="choices", process_id="life-choices")
    visit = ActivityDetails(subject="Home visit", duration_minutes=90, assignee="bob")
    await opportunities.change_stage(
        "choices", next_stage=True, expected_stage="Prospect", overrides={"fact-finder": visit}
    )
    performed = await opportunities.perform_actions("choices", ["intro-call"])
    assert performed.actions[0].code == "activity_canceled", performed
    await opportunities.change_stage("choices", "Prospect", cancel_open_activities=False)
    await opportunities.delete_activity("choices", "choices/intro-call/1")
    await opportunities.perform_actions("choices", ["intro-call"])
    await opportunities.complete_actions(
        "choices", ["intro-call"], outcome="Interested", stage="Needs analysis",
        overrides={}, cancel_open_activities=False,
    )  # fmt: skip
    await save(client, opportunities.handle("choices"), "stage-choices")


async def mass_next(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """A batch moving each to its next stage: two move on, one in its last open stage is
    skipped."""
    await setup_process(pool, "next", on_entry=False)
    contact = await setup_contact(pool, "next")
    for n in range(3):
        await opportunities.create(contact, opportunity_id=f"next-{n}", process_id="life-next")
    await opportunities.change_stage("next-1", "Needs analysis")
    await opportunities.change_stage("next-2", "Proposal")
    batch = MassModifyInput(
        batch_id="record-next", filters=SearchFilters(process_id="life-next"), to_next_stage=True
    )
    handle = await opportunities.start_mass_modify(batch)
    report = await handle.result()
    assert (report.changed, report.skipped) == (2, 1), report
    await save(client, handle, "mass-next-stage")


async def value(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """What an opportunity is worth: opened with a value, its details changed and cleared,
    the probability following the stage, lost with one of the process's reasons."""
    await setup_process(pool, "value", lost_reasons=["Price", "Timing"],
                        default_lost_reason="Timing")  # fmt: skip
    contact = await setup_contact(pool, "value")
    await opportunities.create(
        contact, opportunity_id="value", process_id="life-value", amount="1250.50",
        currency="EUR", expected_close_date=datetime(2027, 3, 31, tzinfo=UTC).date(),
    )  # fmt: skip
    await opportunities.update_details("value", amount=2000, probability=75, by="ann")
    await opportunities.change_stage("value", "Proposal", cancel_open_activities=False)
    await opportunities.update_details("value", probability=None, forecast_category="commit")
    await opportunities.change_stage("value", "Closed lost", reason="Price")
    await save(client, opportunities.handle("value"), "value")


async def external(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """Another system's statuses: one kept in history, one moving the opportunity, one
    winning it."""
    await setup_process(pool, "external", external_status_stages={
        "in underwriting": "Proposal", "issued": "Closed won"})  # fmt: skip
    contact = await setup_contact(pool, "external")
    await opportunities.create(contact, opportunity_id="external", process_id="life-external")
    for status in ("received", "in underwriting", "issued"):
        await opportunities.record_external_status("external", "policy", "P-1", status)
    await save(client, opportunities.handle("external"), "external-status")


async def subscription(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """A webhook subscription's workflow: events delivered, paused, resumed, deleted."""
    receiver = Receiver(new_secret())
    await receiver.start()
    try:
        subs = Subscriptions(pool, client, task_queue=QUEUE, delivery_task_queue=DELIVERY_QUEUE)
        process_id = await setup_process(pool, "subscribed", on_entry=False)
        added, _ = await subs.add(url=receiver.url, workflow_id=None, events=["stage_changed"],
                                  process_id=process_id, secret=receiver.secret,
                                  subscription_id="recorded")  # fmt: skip
        contact = await setup_contact(pool, "subscribed")
        await opportunities.create(contact, opportunity_id="subscribed", process_id=process_id)
        await opportunities.change_stage("subscribed", "Proposal")
        await until(lambda: _arrived(receiver, 1))
        handle = client.get_workflow_handle(f"subscription-{added.subscription_id}")
        await subs.pause(added.subscription_id)
        await until(lambda: _status(handle, "paused"))
        await opportunities.change_stage("subscribed", "Needs analysis")
        await subs.resume(added.subscription_id)
        await until(lambda: _arrived(receiver, 2))
        await subs.delete(added.subscription_id)
        await handle.result()
        await save(client, handle, "subscription")
    finally:
        await receiver.stop()


async def signed(client: Client, opportunities: OpportunitiesClient, pool: Any) -> None:
    """Authorization enforced: a signed start, signed updates and a signal, a key registered
    between commands, and a key revoked after it signed commands: they replay as applied,
    and a signal it signed after its revocation is refused again on replay."""
    queue = f"{QUEUE}-signed"
    now = datetime.now(UTC)
    holder = DirectoryHolder()

    async def key(kid: str, user: str) -> Signer:
        signer = Signer.generate(kid, user)
        await authorization.add_key(pool, SigningKey(kid=kid, user_id=user, usable_from=now,
                                                     public_jwk=signer.public_jwk),
                                    by="recorder", delay=timedelta(0))  # fmt: skip
        return signer

    async def reload() -> None:
        loaded = await authorization.load_directory(pool, modes=False)
        holder.current = loaded.model_copy(
            update={"modes": [Dated(value="enforce", effective_from=now - timedelta(hours=1))]}
        )

    await put_user(pool, User(user_id="signer", name="Signer", roles=["recorder"]),
                   roles_delay=timedelta(0))  # fmt: skip
    everything = Permissions(rules=[PermissionRule(role="recorder", commands=["*"], scope="all")])
    await authorization.apply_permissions(pool, everything, by="recorder", delay=timedelta(0))
    first = await key("recorded-1", "signer")
    await reload()
    process_id = await setup_process(pool, "signed", on_entry=False)
    contact = await setup_contact(pool, "signed")
    async with build_worker(client, pool, queue, directory=holder):
        as_first = OpportunitiesClient(client, queue, signer=first)
        await as_first.create(contact, opportunity_id="signed", process_id=process_id)
        await as_first.change_stage("signed", "Proposal")
        second = await key("recorded-2", "signer")
        await reload()
        as_second = OpportunitiesClient(client, queue, signer=second)
        await as_second.signal("signed", AddRemark(text="signed by the second key"))
        await as_second.change_stage("signed", "Needs analysis")
        await authorization.revoke_key(pool, "recorded-1", by="recorder", delay=timedelta(0))
        await reload()
        await as_first.signal("signed", AddRemark(text="after its revocation"))  # refused
        try:
            await as_first.add_remark("signed", "after its revocation")
        except CommandRejected as refused:
            assert refused.code == "key_revoked"
        state = await as_second.state("signed")
        assert [r.code for r in state.rejected] == ["key_revoked"], state.rejected
        await as_second.change_stage("signed", "Closed won")
        await save(client, opportunities.handle("signed"), "signed", directory=holder.current)


async def _arrived(receiver: Receiver, count: int) -> bool:
    return len(receiver.unique()) >= count


async def _status(handle: WorkflowHandle[Any, Any], wanted: str) -> bool:
    return bool(await handle.query("status") == wanted)


PATHS = [
    actions, outcomes, timers, continue_as_new, mass, batched, under_load, updates_queried,
    update_stream, reference_product, stage_choices, mass_next, value, external, subscription,
    signed,
]  # fmt: skip


async def main(names: list[str]) -> None:
    chosen = [p for p in PATHS if not names or p.__name__ in names]
    if names and len(chosen) != len(names):
        raise SystemExit(f"paths are {[p.__name__ for p in PATHS]}")
    os.environ["OPPORTUNITIES_DAY_SECONDS"] = "1"
    os.environ.update(TEST_DELIVERY_ENV)
    async with (
        local_servers() as (pool, env),
        build_worker(env.client, pool, QUEUE),
        delivery_worker(env.client, pool, DELIVERY_QUEUE),
    ):
        owners = ["ann", "bob", "final", *(f"u{n}" for n in range(5)),
                  *(f"o{n}" for n in range(100)),
                  *(f"o{k}-{n}" for k in range(8) for n in range(30))]  # fmt: skip
        await pool.executemany(  # the owners the paths name (an owner must be a user)
            "INSERT INTO users (user_id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING",
            [(owner,) for owner in owners],
        )
        opportunities = OpportunitiesClient(env.client, QUEUE)
        for path in chosen:
            await path(env.client, opportunities, pool)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
