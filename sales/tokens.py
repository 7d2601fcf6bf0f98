"""The signed actor of a command: a compact JWS (ES256, PyJWT) in the Temporal header
`sales-authz`, bound to one workflow, one command and its payload.

Claims: `sub` (the user), `act` (the service signing for the user, if any), `aud`
(`opportunities:<namespace>`), `wid` (the workflow id), `cmd` (the command name, or `start`),
`args_sha256` (SHA-256 of the payload in RFC 8785 canonical JSON: the HTTP API re-serializes
payloads, so their raw bytes cannot be hashed), `jti` (the command's `request_id`), `iat` and
`exp` (at most 5 minutes later); header `kid`. Every check is made at a given time and against
the effective-dated `Directory`, so that the same token is judged the same on replay.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import jwt
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec

from sales.authorization import HEADER, Actor, Directory
from sales.errors import CommandRejected

ALGORITHM = "ES256"
MAX_TOKEN_BYTES = 4096
MAX_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=60)
"""How far a token's `iat` may lie ahead of the time it is judged at."""
START = "start"
"""The `cmd` of a token that starts a workflow."""


def audience(namespace: str) -> str:
    return f"opportunities:{namespace}"


def args_sha256(payload: Any) -> str:
    """The hex SHA-256 of `payload` in RFC 8785 canonical JSON."""
    return hashlib.sha256(rfc8785.dumps(payload)).hexdigest()


def refused(code: str, reason: str) -> CommandRejected:
    return CommandRejected(reason, code=code)


def sign(
    private_key: ec.EllipticCurvePrivateKey,
    kid: str,
    *,
    sub: str,
    aud: str,
    wid: str,
    cmd: str,
    payload: Any,
    jti: str | None,
    now: datetime,
    act: str | None = None,
    lifetime: timedelta = timedelta(minutes=2),
) -> str:
    issued = now
    claims: dict[str, Any] = {
        "sub": sub, "aud": aud, "wid": wid, "cmd": cmd, "args_sha256": args_sha256(payload),
        "iat": int(issued.timestamp()),
        "exp": int((issued + min(lifetime, MAX_LIFETIME)).timestamp()),
    }  # fmt: skip
    if act is not None:
        claims["act"] = act
    if jti is not None:
        claims["jti"] = jti
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid})


def header_data(token: str) -> bytes:
    """The header's payload data: the token as a JSON string (encoding `json/plain`), as
    `temporal --headers sales-authz='"eyJ..."'` sends it."""
    return json.dumps(token).encode()


def token_of(data: bytes) -> str:
    """The token a header's payload data carries (a JSON string); `CommandRejected`
    (`unauthenticated`) if it carries anything else."""
    if len(data) > MAX_TOKEN_BYTES:
        raise refused("unauthenticated", f"the {HEADER} header is over {MAX_TOKEN_BYTES} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, str):
        raise refused("unauthenticated", f"the {HEADER} header is not a JSON string (a JWS)")
    return value


def verify(
    token: str,
    directory: Directory,
    *,
    at: datetime,
    aud: str,
    wid: str,
    cmd: str,
    payload: Any,
    jti: str | None,
    grace: timedelta = timedelta(0),
) -> Actor:
    """The actor the token proves, or `CommandRejected` with `unauthenticated`,
    `token_expired`, `token_mismatch` or `key_revoked`. `grace`: how long after `exp` the
    token still counts (for signals, which may wait in Temporal while no worker runs)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise refused("unauthenticated", f"the {HEADER} header is not a compact JWS") from None
    algorithm = header.get("alg")
    if algorithm != ALGORITHM:
        raise refused("unauthenticated", f"algorithm {str(algorithm)[:20]!r} is not allowed; "
                      f"tokens are {ALGORITHM}")  # fmt: skip
    kid = header.get("kid")
    key = directory.keys.get(kid) if isinstance(kid, str) else None
    if key is None or not key.usable_at(at):
        raise refused("unauthenticated", f"key {str(kid)[:60]!r} is not known")
    if key.revoked_at(at):
        raise refused("key_revoked", f"key {kid!r} is revoked")
    try:
        public = key.public_key
        claims = jwt.decode(
            token, public, algorithms=[ALGORITHM], audience=aud,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                     "require": ["sub", "aud", "wid", "cmd", "args_sha256", "iat", "exp"]},
        )  # fmt: skip
    except jwt.InvalidAudienceError:
        raise refused("token_mismatch", "the token is for another service or namespace") from None
    except jwt.InvalidSignatureError:
        raise refused("unauthenticated", "the token's signature does not verify") from None
    except jwt.PyJWTError as error:
        raise refused("unauthenticated", f"the token is not valid: {error}"[:200]) from None
    issued, expires = claims["iat"], claims["exp"]
    if not isinstance(issued, int) or not isinstance(expires, int):
        raise refused("unauthenticated", "the token's iat and exp must be whole seconds")
    if expires - issued > MAX_LIFETIME.total_seconds():
        raise refused("unauthenticated", "the token lives longer than 5 minutes")
    now = at.timestamp()
    if now + CLOCK_SKEW.total_seconds() < issued:
        raise refused("token_expired", "the token is not valid yet")
    if now > expires + grace.total_seconds():
        raise refused("token_expired", "the token has expired")
    for claim, expected in (("wid", wid), ("cmd", cmd), ("jti", jti)):
        if claims.get(claim) != expected:
            raise refused("token_mismatch", f"the token's {claim} is not this command's")
    if claims["args_sha256"] != args_sha256(payload):
        raise refused("token_mismatch", "the token was signed for another payload")
    sub, act = claims["sub"], claims.get("act")
    if not isinstance(sub, str) or not (act is None or isinstance(act, str)):
        raise refused("unauthenticated", "the token's sub and act must be strings")
    if key.acts_for is None and (act is not None or sub != key.user_id):
        raise refused("token_mismatch", f"key {kid!r} signs only for {key.user_id}")
    if key.acts_for is not None and (act != key.user_id or not key.may_act_for(sub)):
        raise refused("token_mismatch", f"service key {kid!r} may not act for {sub[:60]}")
    return Actor(sub=sub[:200], act=act, verified=True)
