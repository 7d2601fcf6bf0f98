"""Signed actors and roles, in the pure core: every refusal of a token with its own code, the
canonical hash (RFC 8785's vectors), and `authorize` against a plain table of the rules."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from sales.authorization import (
    Actor,
    Dated,
    Directory,
    PermissionRule,
    Permissions,
    SigningKey,
    authorize,
)
from sales.commands import ChangeOwner, ChangeStage
from sales.errors import CommandRejected
from sales.registry import REGISTRY
from sales.tokens import args_sha256, sign, token_of, verify
from tests.unit.test_core_actions import opened

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
AUD = "opportunities:default"


def _key(kid: str, user: str, private: ec.EllipticCurvePrivateKey, **fields: Any) -> SigningKey:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    usable_from = fields.pop("usable_from", T0 - timedelta(hours=1))
    return SigningKey(kid=kid, user_id=user, public_jwk=jwk, usable_from=usable_from, **fields)


PRIVATE = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
DIRECTORY = Directory(keys={
    "ann-1": _key("ann-1", "ann", PRIVATE),
    "old": _key("old", "ann", PRIVATE, revoked_from=T0 - timedelta(minutes=1)),
    "later": _key("later", "ann", PRIVATE, usable_from=T0 + timedelta(minutes=1)),
    "svc": _key("svc", "mass-modify", OTHER, acts_for=["ann", "bob"]),
})  # fmt: skip
PAYLOAD = {"stage": "Proposal", "request_id": "r1"}


def _signed(kid: str = "ann-1", key: ec.EllipticCurvePrivateKey = PRIVATE, **claims: Any) -> str:
    fields: dict[str, Any] = {"sub": "ann", "aud": AUD, "wid": "opportunity-o",
                              "cmd": "change_stage", "payload": PAYLOAD, "jti": "r1",
                              "now": T0} | claims  # fmt: skip
    return sign(key, kid, **fields)


def _verify(token: str, at: datetime = T0, **expected: Any) -> Actor:
    fields: dict[str, Any] = {"aud": AUD, "wid": "opportunity-o", "cmd": "change_stage",
                              "payload": PAYLOAD, "jti": "r1"} | expected  # fmt: skip
    return verify(token, DIRECTORY, at=at, **fields)


def test_a_good_token_proves_its_user() -> None:
    assert _verify(_signed()) == Actor(sub="ann", verified=True)
    payload_reordered = {"request_id": "r1", "stage": "Proposal"}
    assert _verify(_signed(), payload=payload_reordered).sub == "ann", "canonical JSON"
    acting = _signed("svc", OTHER, act="mass-modify", sub="bob")
    assert _verify(acting) == Actor(sub="bob", act="mass-modify", verified=True)


def _hs256_with_the_public_key() -> str:
    public_pem = DIRECTORY.keys["ann-1"].public_jwk["x"].encode()
    claims = jwt.decode(_signed(), options={"verify_signature": False})
    header = {"alg": "HS256", "kid": "ann-1", "typ": "JWT"}
    parts = [base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=")
             for p in (header, claims)]  # fmt: skip
    import hashlib
    import hmac

    signature = hmac.new(public_pem, b".".join(parts), hashlib.sha256).digest()
    return b".".join([*parts, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()


def _alg_none() -> str:
    claims = jwt.decode(_signed(), options={"verify_signature": False})
    return jwt.encode(claims, key=None, algorithm="none", headers={"kid": "ann-1"})


def _tampered() -> str:
    header, claims, signature = _signed().split(".")
    body = json.loads(base64.urlsafe_b64decode(claims + "=="))
    body["sub"] = "carol"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    ("token", "at", "expected", "code"),
    [
        (_signed(now=T0 - timedelta(minutes=3)), T0, {}, "token_expired"),
        (_signed(now=T0 + timedelta(minutes=5)), T0, {}, "token_expired"),
        (_signed(), T0, {"wid": "opportunity-x"}, "token_mismatch"),
        (_signed(), T0, {"cmd": "change_owner"}, "token_mismatch"),
        (_signed(), T0, {"payload": {"stage": "Closed won", "request_id": "r1"}}, "token_mismatch"),
        (_signed(), T0, {"jti": "r2"}, "token_mismatch"),
        (_signed(), T0, {"aud": "opportunities:other"}, "token_mismatch"),
        (_signed("nobody"), T0, {}, "unauthenticated"),
        (_signed("later"), T0, {}, "unauthenticated"),
        (_signed("old"), T0, {}, "key_revoked"),
        (_signed(key=OTHER), T0, {}, "unauthenticated"),
        (_signed(sub="bob"), T0, {}, "token_mismatch"),
        (_signed("svc", OTHER, act="mass-modify", sub="carol"), T0, {}, "token_mismatch"),
        (_alg_none(), T0, {}, "unauthenticated"),
        (_hs256_with_the_public_key(), T0, {}, "unauthenticated"),
        (_tampered(), T0, {}, "unauthenticated"),
        ("not a token", T0, {}, "unauthenticated"),
        ("a." * 3000, T0, {}, "unauthenticated"),
    ],
    ids=["expired", "not-yet-valid", "wid", "cmd", "payload", "jti", "aud", "unknown-kid",
         "key-not-yet-usable", "revoked", "bad-signature", "another-sub", "service-not-for-sub",
         "alg-none", "hs256-public-key", "tampered", "not-a-jws", "huge"],
)  # fmt: skip
def test_each_bad_token_is_refused_with_its_code(
    token: str, at: datetime, expected: dict[str, Any], code: str
) -> None:
    with pytest.raises(CommandRejected) as refused:
        _verify(token, at, **expected)
    assert refused.value.code == code


def test_a_signal_keeps_its_token_for_the_grace_period() -> None:
    late = T0 + timedelta(hours=3)
    with pytest.raises(CommandRejected, match="expired"):
        _verify(_signed(), late)
    fields = {"aud": AUD, "wid": "opportunity-o", "cmd": "change_stage", "payload": PAYLOAD,
              "jti": "r1"}  # fmt: skip
    assert verify(_signed(), DIRECTORY, at=late, grace=timedelta(hours=24), **fields).sub == "ann"


def test_a_header_holds_a_json_string() -> None:
    assert token_of(b'"abc"') == "abc"
    for bad in (b"abc", b"{}", b"12", b"\xff", b'"' + b"a" * 5000 + b'"'):
        with pytest.raises(CommandRejected, match="sales-authz"):
            token_of(bad)


def test_the_hash_is_of_rfc_8785_canonical_json() -> None:
    # RFC 8785, section 3.2.2's example (numbers, then literals and strings).
    value = json.loads('{"numbers":[333333333.33333329,1E30,4.50,2e-3,'
                       '0.000000000000000000000000001],'
                       '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
                       '"literals":[null,true,false]}')  # fmt: skip
    canonical = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,'
                 '1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')  # fmt: skip
    import hashlib

    assert args_sha256(value) == hashlib.sha256(canonical.encode()).hexdigest()


RULES = Permissions(rules=[
    PermissionRule(role="adviser", commands=["perform_actions", "complete_actions",
                                             "record_outcome", "change_stage", "close_won"],
                   scope="team"),
    PermissionRule(role="manager", commands=["*"], scope="all"),
])  # fmt: skip


def _expected(roles: list[str], name: str, rights: list[str], mine: bool) -> bool:
    """The rules as a plain table: a manager anything anywhere; an adviser these rights on an
    opportunity of their own (or their team's)."""
    if "manager" in roles:
        return True
    adviser = {"perform_actions", "complete_actions", "record_outcome", "change_stage",
               "close_won"}  # fmt: skip
    return "adviser" in roles and mine and all(r in adviser for r in rights)


@given(
    st.sampled_from(["ann", "bob"]),
    st.lists(st.sampled_from(["adviser", "manager", "reader"]), max_size=2),
    st.sampled_from(sorted(REGISTRY)),
    st.sampled_from(["Proposal", "Closed won", "Closed lost"]),
)
def test_authorize_follows_the_table(user: str, roles: list[str], name: str, stage: str) -> None:
    state = opened().model_copy(update={"owner": "ann"})
    command: Any = ChangeStage(stage=stage) if name == "change_stage" else ChangeOwner(owner="x")
    rights = [name] + ({"Closed won": ["close_won"], "Closed lost": ["close_lost"]}.get(stage, [])
                       if name == "change_stage" else [])  # fmt: skip
    allowed = _expected(roles, name, rights, mine=user == "ann")
    try:
        authorize(Actor(sub=user), roles, name, command, state, RULES)
    except CommandRejected as refused:
        assert not allowed and refused.code == "forbidden" and user in refused.reason
    else:
        assert allowed


def test_the_directory_is_judged_at_a_time() -> None:
    directory = Directory(
        modes=[Dated(value="record", effective_from=T0), Dated(value="enforce",
                                                               effective_from=T0 + timedelta(1))],
        roles={"ann": [Dated(value=["adviser"], effective_from=T0),
                       Dated(value=["manager"], effective_from=T0 + timedelta(days=2))]},
    )  # fmt: skip
    assert directory.mode_at(T0 - timedelta(1)) == "off"
    assert directory.mode_at(T0) == "record" and directory.mode_at(T0 + timedelta(1)) == "enforce"
    assert directory.roles_at("ann", T0 + timedelta(days=1)) == ["adviser"]
    assert directory.roles_at("ann", T0 + timedelta(days=3)) == ["manager"]
    assert directory.roles_at("bob", T0) == []


def test_a_permissions_file_names_known_commands_only() -> None:
    with pytest.raises(ValueError, match="unknown command 'fly'"):
        Permissions(rules=[PermissionRule(role="x", commands=["fly"], scope="all")])


def test_the_example_permissions_file_is_valid() -> None:
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "examples" / "permissions.yaml"
    permissions = Permissions.model_validate(yaml.safe_load(path.read_text()))
    assert {rule.role for rule in permissions.rules} == {"adviser", "manager"}


def test_the_core_clears_a_command_by_the_mode() -> None:
    from sales.authorization import Clearance, cleared

    state = opened().model_copy(update={"owner": "ann"})
    command = ChangeStage(stage="Proposal", by="claimed")
    assert cleared(Clearance(mode="off"), "change_stage", command, state) == (command, None)
    _, unverified = cleared(Clearance(mode="record"), "change_stage", command, state)
    assert unverified == Actor(sub="claimed", verified=False)
    ann = Actor(sub="ann", verified=True)
    for clearance, code in (
        (Clearance(mode="enforce"), "unauthenticated"),
        (Clearance(mode="enforce", actor=ann, roles=["adviser"], permissions=RULES),
         "token_mismatch"),  # by names someone else
    ):  # fmt: skip
        with pytest.raises(CommandRejected) as refused:
            cleared(clearance, "change_stage", command, state)
        assert refused.value.code == code
    signed = ChangeStage(stage="Proposal")
    enforced = Clearance(mode="enforce", actor=ann, roles=["adviser"], permissions=RULES)
    applied, actor = cleared(enforced, "change_stage", signed, state)
    assert (applied.by, actor) == ("ann", ann)
