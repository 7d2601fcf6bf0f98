"""Authorization enforced, on real servers: commands and starts signed with real keys (the
typed client, the `temporal` CLI with `--headers`, a raw client), each refusal with its code
and nothing applied, and roles deciding who may change which opportunity."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)

from runtime import embedded
from runtime.signer import write_key_file
from sales.authorization import Dated, PermissionRule, Permissions, SigningKey
from sales.errors import CommandRejected
from sales.tokens import HEADER, audience, header_data, sign
from starter.client import OpportunitiesClient, StartFailed
from starter.client.signing import Signer
from store import authorization
from store.search import SearchFilters
from store.users import User, put_user
from tests.integration.test_integrate import completed, run
from tests.support.helpers import eventually, setup_contact, setup_process, setup_references
from tests.support.servers import Cli, Servers
from worker import build_worker
from workflows.authorization import DirectoryHolder
from workflows.mass_messages import MassModifyInput

pytestmark = pytest.mark.usefixtures("verified")

PERMISSIONS = Permissions(rules=[
    PermissionRule(role="adviser", commands=["perform_actions", "complete_actions",
                                             "record_outcome", "change_stage", "close_won",
                                             "add_remark"], scope="team"),
    PermissionRule(role="manager", commands=["*"], scope="all"),
])  # fmt: skip
"""The docs' example: an adviser works the opportunities they own or are assigned to; only a
manager changes the owner, deletes, moves to another process or closes as lost."""


@dataclass
class Office:
    uid: str
    process_id: str
    contact_id: str
    signers: dict[str, Signer]
    holder: DirectoryHolder

    def user(self, name: str) -> str:
        return f"{name}-{self.uid}"


async def _signer(pool: asyncpg.Pool, user: str, kid: str | None = None, **service: Any) -> Signer:
    """A key of `user` (or a service key: `act`, `acts_for`), usable at once."""
    signer = Signer.generate(kid or f"{user}-key", user, service.get("act"))
    await authorization.add_key(
        pool, SigningKey(kid=signer.kid, user_id=user, public_jwk=signer.public_jwk,
                         acts_for=service.get("acts_for"), usable_from=datetime.now(UTC)),
        by="admin", delay=timedelta(0),
    )  # fmt: skip
    return signer


async def reload(pool: asyncpg.Pool, holder: DirectoryHolder) -> None:
    """What a worker's reload does, with authorization enforced from an hour ago."""
    loaded = await authorization.load_directory(pool, modes=False)
    enforce = [Dated(value="enforce", effective_from=datetime.now(UTC) - timedelta(hours=1))]
    holder.current = loaded.model_copy(update={"modes": enforce})


@pytest.fixture
async def office(
    client: Client, pool: asyncpg.Pool, task_queue: str, uid: str
) -> AsyncIterator[Office]:
    """Two advisers and a manager with keys, the permissions, and a worker enforcing them."""
    signers = {}
    for name, role in (("adv1", "adviser"), ("adv2", "adviser"), ("mgr", "manager")):
        user = f"{name}-{uid}"
        await put_user(pool, User(user_id=user, name=user, roles=[role]),
                       roles_delay=timedelta(0))  # fmt: skip
        signers[name] = await _signer(pool, user)
    await authorization.apply_permissions(pool, PERMISSIONS, by="admin", delay=timedelta(0))
    service_key = await _signer(
        pool, "mass-modify", f"svc-{uid}", act="mass-modify", acts_for=["*"]
    )  # the worker's, for batches
    holder = DirectoryHolder()
    await reload(pool, holder)
    process_id = await setup_process(pool, uid, on_entry=False)
    await setup_references(pool, uid)
    contact_id = await setup_contact(pool, uid)
    async with build_worker(client, pool, task_queue, directory=holder, service_key=service_key):
        yield Office(uid, process_id, contact_id, signers, holder)


def as_user(client: Client, task_queue: str, office: Office, name: str) -> OpportunitiesClient:
    return OpportunitiesClient(client, task_queue, signer=office.signers[name])


async def _open(client: Client, task_queue: str, office: Office, opp: str, owner: str) -> None:
    manager = as_user(client, task_queue, office, "mgr")
    await manager.create(office.contact_id, opportunity_id=opp, process_id=office.process_id,
                         owner=office.user(owner))  # fmt: skip


async def test_roles_decide_who_changes_which_opportunity(
    client: Client, pool: asyncpg.Pool, task_queue: str, office: Office, cli: Cli
) -> None:
    mine, theirs = f"a1-{office.uid}", f"a2-{office.uid}"
    await _open(client, task_queue, office, mine, "adv1")
    await _open(client, task_queue, office, theirs, "adv2")
    adviser = as_user(client, task_queue, office, "adv1")
    manager = as_user(client, task_queue, office, "mgr")

    moved = await adviser.change_stage(mine, "Proposal")
    assert moved.current_stage == "Proposal"
    history = await manager.history(mine)
    assert history[-1].by == office.user("adv1"), "by is the verified user"
    assert (history[-1].actor, history[-1].verified) == (office.user("adv1"), True)
    audited = await cli("audit", mine, "--json")
    assert audited.code == 0, audited.stderr
    [moved_entry] = [e for e in audited.json() if e["type"] == "stage_changed"]
    assert moved_entry["data"]["actor"] == office.user("adv1")
    assert moved_entry["data"]["verified"] == "true"

    for attempt, said in (
        (adviser.change_stage(theirs, "Proposal"), "does not reach it"),
        (adviser.change_owner(mine, office.user("adv2")), "no rule of their roles"),
        (adviser.change_stage(mine, "Closed lost", reason="Price"), "close lost"),
    ):
        with pytest.raises(CommandRejected) as refused:
            await attempt
        assert refused.value.code == "forbidden" and said in refused.value.reason

    await manager.change_owner(mine, office.user("adv2"))
    assert (await manager.state(mine)).owner == office.user("adv2")
    with pytest.raises(CommandRejected, match="does not reach it"):
        await adviser.add_remark(mine, "not mine any more")
    assert (await manager.change_stage(theirs, "Closed lost", reason="Price")).status == "lost"


async def test_unsigned_and_forged_commands_are_refused_and_change_nothing(
    client: Client, pool: asyncpg.Pool, task_queue: str, office: Office, servers: Servers
) -> None:
    opp = f"f-{office.uid}"
    await _open(client, task_queue, office, opp, "adv1")
    handle = client.get_workflow_handle(f"opportunity-{opp}")
    signer = office.signers["adv1"]
    aud = audience(client.namespace)

    def token(payload: dict[str, Any], **changes: Any) -> str:
        fields: dict[str, Any] = {"sub": signer.sub, "aud": aud, "wid": f"opportunity-{opp}",
                                  "cmd": "change_stage", "payload": payload,
                                  "jti": payload.get("request_id"),
                                  "now": datetime.now(UTC)} | changes  # fmt: skip
        return sign(signer.private_key, signer.kid, **fields)

    command = {"stage": "Proposal", "request_id": f"r-{uuid.uuid4().hex[:8]}"}
    cases = {
        "unsigned": (None, "unauthenticated"),
        "tampered": (token({**command, "stage": "Closed won"}), "token_mismatch"),
        "another workflow": (token(command, wid="opportunity-else"), "token_mismatch"),
        "another command": (token(command, cmd="change_owner"), "token_mismatch"),
        "expired": (token(command, now=datetime.now(UTC) - timedelta(minutes=10)),
                    "token_expired"),
        "unknown key": (sign(signer.private_key, "nobody", sub=signer.sub, aud=aud,
                             wid=f"opportunity-{opp}", cmd="change_stage", payload=command,
                             jti=command["request_id"], now=datetime.now(UTC)),
                        "unauthenticated"),
        "alg none": (jwt.encode({"sub": signer.sub}, None, algorithm="none",
                                headers={"kid": signer.kid}), "unauthenticated"),
        "not a jws": ("x" * 100, "unauthenticated"),
    }  # fmt: skip
    for case, (forged, code) in cases.items():
        headers = (
            {}
            if forged is None
            else {HEADER: Payload(metadata={"encoding": b"json/plain"}, data=header_data(forged))}
        )
        raw = Client(**{**client.config(), "interceptors": [_Headers(headers)]})
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await raw.get_workflow_handle(handle.id).execute_update("change_stage", command)
        assert f"{code}:" in str(failed.value.cause), (case, failed.value.cause)

    # The HTTP API: a signal whose token was signed for another payload is queued as a
    # rejection with its code, and nothing is applied.
    tampered = token({**command, "stage": "Closed won"})
    url = (f"http://127.0.0.1:{servers.http_port}/api/v1/namespaces/default/workflows/"
           f"{handle.id}/signal/change_stage")  # fmt: skip
    body = {"input": [command], "header": {"fields": {HEADER: tampered}}}
    await run("curl", "--fail-with-body", "-sS", "-X", "POST", url,
               "-H", "Content-Type: application/json", "-d", json.dumps(body))  # fmt: skip
    state = await eventually(lambda: _rejected(as_user(client, task_queue, office, "mgr"), opp))
    assert state.rejected[-1].code == "token_mismatch", state.rejected[-1]
    assert state.current_stage == "Prospect", "nothing applied"

    # The temporal CLI with --headers: a tampered update is refused with its code; a good one
    # is applied, and the same signed command sent again is applied once.
    temporal = embedded.temporal_binary()
    address = ["--address", servers.temporal_address]
    code, out = await completed(temporal, "workflow", "update", "execute", *address,
                                 "--workflow-id", handle.id, "--name", "change_stage",
                                 "--input", json.dumps(command),
                                 "--headers", f"{HEADER}={json.dumps(tampered)}")  # fmt: skip
    assert code == 1 and "token_mismatch:" in out, out
    good = token(command)
    for _ in range(2):
        out = await run(temporal, "workflow", "update", "execute", *address, "--workflow-id",
                         handle.id, "--name", "change_stage", "--input", json.dumps(command),
                         "--headers", f"{HEADER}={json.dumps(good)}",
                         "--output", "json")  # fmt: skip
        assert json.loads(out)["result"]["current_stage"] == "Proposal"
    history = await as_user(client, task_queue, office, "mgr").history(opp)
    assert [entry.to_stage for entry in history] == ["Prospect", "Proposal"], "applied once"

    # A revoked key: refused once its revocation takes effect.
    await authorization.revoke_key(pool, signer.kid, by="admin", delay=timedelta(0))
    await reload(pool, office.holder)
    with pytest.raises(CommandRejected) as revoked:
        await as_user(client, task_queue, office, "adv1").add_remark(opp, "after revocation")
    assert revoked.value.code == "key_revoked"


async def test_an_unsigned_start_fails_at_once_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, task_queue: str, office: Office
) -> None:
    manager = as_user(client, task_queue, office, "mgr")
    await _open(client, task_queue, office, f"o-{office.uid}", "adv1")
    [opening] = await manager.history(f"o-{office.uid}")
    assert (opening.by, opening.actor, opening.verified) == (office.user("mgr"),) * 2 + (True,)
    adviser = as_user(client, task_queue, office, "adv1")  # no right to open in these rules
    with pytest.raises(StartFailed, match="may not open") as forbidden:
        await adviser.create(office.contact_id, opportunity_id=f"a-{office.uid}",
                             process_id=office.process_id, owner=office.user("adv2"))  # fmt: skip
    assert forbidden.value.code == "forbidden"
    unsigned = OpportunitiesClient(client, task_queue)
    with pytest.raises(StartFailed, match="not signed") as failed:
        await unsigned.create(office.contact_id, opportunity_id=f"u-{office.uid}",
                              process_id=office.process_id)  # fmt: skip
    assert failed.value.code == "unauthenticated"
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM opportunities WHERE opportunity_id = $1", f"u-{office.uid}"
        )
        == 0
    )


async def _rejected(opportunities: OpportunitiesClient, opp: str) -> Any:
    state = await opportunities.state(opp)
    return state if state.rejected else None


class _Headers(Interceptor):
    """A raw client's interceptor that sends these headers with every update and signal."""

    def __init__(self, headers: dict[str, Payload]) -> None:
        self.headers = headers

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        headers = self.headers

        class Adding(OutboundInterceptor):
            async def start_workflow_update(self, input: Any) -> Any:
                input.headers = {**input.headers, **headers}
                return await super().start_workflow_update(input)

            async def signal_workflow(self, input: Any) -> None:
                input.headers = {**input.headers, **headers}
                await super().signal_workflow(input)

        return Adding(next)


async def test_record_applies_unsigned_commands_marked_unverified(
    client: Client, pool: asyncpg.Pool, task_queue: str, office: Office
) -> None:
    opp = f"r-{office.uid}"
    await _open(client, task_queue, office, opp, "adv1")
    office.holder.current = office.holder.current.model_copy(
        update={
            "modes": [Dated(value="record", effective_from=datetime.now(UTC) - timedelta(hours=1))]
        }
    )
    unsigned = OpportunitiesClient(client, task_queue)
    await unsigned.change_stage(opp, "Proposal", by="someone-said-so")
    [_, entry] = await unsigned.history(opp)
    assert (entry.by, entry.actor, entry.verified) == ("someone-said-so", "someone-said-so", False)
    adviser = as_user(client, task_queue, office, "adv2")  # signed: verified, not authorized
    await adviser.change_stage(opp, "Needs analysis")
    entry = (await unsigned.history(opp))[-1]
    assert (entry.actor, entry.verified) == (office.user("adv2"), True)
    signer = office.signers["adv1"]  # a token present but invalid is refused, as enforced
    command = {"stage": "Proposal", "request_id": "r-elsewhere"}
    forged = sign(signer.private_key, signer.kid, sub=signer.sub, aud=audience(client.namespace),
                  wid="opportunity-elsewhere", cmd="change_stage", payload=command,
                  jti="r-elsewhere", now=datetime.now(UTC))  # fmt: skip
    headers = {HEADER: Payload(metadata={"encoding": b"json/plain"}, data=header_data(forged))}
    raw = Client(**{**client.config(), "interceptors": [_Headers(headers)]})
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await raw.get_workflow_handle(f"opportunity-{opp}").execute_update("change_stage", command)
    assert "token_mismatch:" in str(failed.value.cause)


async def test_a_batch_moves_only_what_its_starter_may(
    client: Client, pool: asyncpg.Pool, task_queue: str, office: Office
) -> None:
    mine = [f"m-{office.uid}-{n}" for n in range(3)]
    theirs = [f"t-{office.uid}-{n}" for n in range(2)]
    for opp in mine:
        await _open(client, task_queue, office, opp, "adv1")
    for opp in theirs:
        await _open(client, task_queue, office, opp, "adv2")
    adviser = as_user(client, task_queue, office, "adv1")
    batch = MassModifyInput(batch_id=f"batch-{office.uid}", to_stage="Proposal",
                            filters=SearchFilters(process_id=office.process_id),
                            by=office.user("adv1"), concurrency=5)  # fmt: skip
    report = await (await adviser.start_mass_modify(batch)).result()
    assert (report.changed, report.rejected) == (3, 2), report
    refused = {o.opportunity_id: o.code for o in report.outcomes if o.result == "rejected"}
    assert refused == dict.fromkeys(theirs, "forbidden")
    entry = (await adviser.history(mine[0]))[-1]
    assert (entry.actor, entry.actor_service, entry.verified) == (
        office.user("adv1"), "mass-modify", True)  # fmt: skip

    someone_else = MassModifyInput(batch_id=f"batch2-{office.uid}", to_stage="Proposal",
                                   filters=SearchFilters(process_id=office.process_id),
                                   by=office.user("mgr"))  # fmt: skip
    with pytest.raises(WorkflowFailureError) as failed:  # a start binds its by to its signer
        await (await adviser.start_mass_modify(someone_else)).result()
    assert "token_mismatch:" in str(failed.value.cause)


async def test_a_signal_signed_before_an_outage_is_applied_after_it(
    client: Client, pool: asyncpg.Pool, task_queue: str, office: Office
) -> None:
    """A signal's token counts for a day after it expires: signals that waited in Temporal
    while no worker ran (here: signed 10 minutes ago, expired 8 minutes ago) are applied;
    the same token on an update, which nobody queues, is refused as expired."""
    opp = f"g-{office.uid}"
    await _open(client, task_queue, office, opp, "adv1")
    signer = office.signers["adv1"]
    command = {"text": "written before the outage", "request_id": f"g-{office.uid}"}
    signed_at = datetime.now(UTC) - timedelta(minutes=10)
    old = sign(signer.private_key, signer.kid, sub=signer.sub, aud=audience(client.namespace),
               wid=f"opportunity-{opp}", cmd="add_remark", payload=command,
               jti=command["request_id"], now=signed_at)  # fmt: skip
    headers = {HEADER: Payload(metadata={"encoding": b"json/plain"}, data=header_data(old))}
    raw = Client(**{**client.config(), "interceptors": [_Headers(headers)]})
    handle = raw.get_workflow_handle(f"opportunity-{opp}")
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update("add_remark", command)
    assert "token_expired:" in str(failed.value.cause)
    await handle.signal("add_remark", command)
    state = await eventually(lambda: _remarked(as_user(client, task_queue, office, "mgr"), opp))
    assert state.remarks[-1].text == "written before the outage" and not state.rejected


async def _remarked(opportunities: OpportunitiesClient, opp: str) -> Any:
    state = await opportunities.state(opp)
    return state if state.remarks else None


async def test_bad_keys_and_permissions_files_are_refused_in_one_line(
    cli: Cli, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    keys = "SELECT count(*) FROM signing_keys"
    sets = "SELECT count(*) FROM permission_sets"
    before = (await pool.fetchval(keys), await pool.fetchval(sets))
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    cases = {
        "not-json.jwk": ("{nope", "keys", "not valid JSON"),
        "no-kid.jwk": (json.dumps(jwk), "keys", "has no kid"),
        "private.jwk": (json.dumps({**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private)),
                                    "kid": f"p-{uid}"}), "keys", "holds a private key"),
        "rsa.jwk": (json.dumps({"kty": "RSA", "n": "x", "e": "AQAB", "kid": f"r-{uid}"}), "keys",
                    "not an ES256 public key"),
        "huge.jwk": ("{" + " " * 10_000 + "}", "keys", "larger than"),
        "unknown-command.yaml": ("rules: [{role: adviser, commands: [fly], scope: all}]",
                                 "permissions", "unknown command 'fly'"),
        "unknown-role.yaml": (f"rules: [{{role: nobody-{uid}, commands: ['*'], scope: all}}]",
                              "permissions", f"unknown role 'nobody-{uid}'"),
        "bad-scope.yaml": ("rules: [{role: adviser, commands: ['*'], scope: planet}]",
                           "permissions", "scope"),
    }  # fmt: skip
    for name, (text, group, said) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        args = ("keys", "add", "--user", "ann", str(path)) if group == "keys" else (
            "permissions", "apply", str(path))  # fmt: skip
        result = await cli(*args)
        assert result.code == 1, (name, result.stdout)
        assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            name, result.stderr)  # fmt: skip
    assert (await pool.fetchval(keys), await pool.fetchval(sets)) == before, "nothing stored"


async def test_the_command_line_signs_as_the_user_it_acts_for(
    client: Client, task_queue: str, office: Office, servers: Servers, tmp_path: Path
) -> None:
    opp = f"c-{office.uid}"
    await _open(client, task_queue, office, opp, "adv1")
    cli = Cli(servers, task_queue)
    cli.env["XDG_CONFIG_HOME"] = str(tmp_path)
    signer = office.signers["adv1"]
    write_key_file(keys_folder_in(tmp_path) / f"{signer.sub}.json", signer.kid, signer.sub,
                   signer.private_key)  # fmt: skip
    moved = await cli("stage", opp, "Proposal", "--by", signer.sub, "--keep-open-activities")
    assert moved.code == 0, moved.stderr
    unsigned = await cli(
        "stage", opp, "Needs analysis", "--keep-open-activities"
    )  # as cli-tester: no key
    assert unsigned.code == 1 and "unauthenticated" in unsigned.stderr, unsigned.stderr
    entry = (await as_user(client, task_queue, office, "mgr").history(opp))[-1]
    assert (entry.to_stage, entry.actor, entry.verified) == ("Proposal", signer.sub, True)


def keys_folder_in(config_home: Path) -> Path:
    return config_home / "opportunities" / "keys"
