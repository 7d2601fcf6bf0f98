"""Signing what a client sends: each command (signal or update) and each start of an
opportunity or a batch carries a token in the Temporal header `sales-authz`, made with the
user's (or a service's) private key (`sales.tokens`).

A user's key lives in the user's config folder (`keys/<user>.json`, readable by the user
only): `opportunities keys create` makes it. The CLI signs with the key of the user it acts
as; the Python client signs when it is given a `Signer`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Interceptor,
    OutboundInterceptor,
    SignalWorkflowInput,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    WorkflowHandle,
    WorkflowUpdateHandle,
)
from temporalio.converter import PayloadConverter

from sales.registry import REGISTRY
from sales.tokens import HEADER, START, audience, header_data, sign

SIGNED_STARTS = frozenset({"Opportunity", "MassModify"})


def keys_folder() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "opportunities" / "keys"


@dataclass(frozen=True)
class Signer:
    """A private key and whom it signs for: `sub`, and `act` for a service key."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey
    sub: str
    act: str | None = None

    def acting_for(self, sub: str) -> Signer:
        """A service key signing for another user (`act` stays the service)."""
        return Signer(self.kid, self.private_key, sub, self.act)

    @classmethod
    def from_file(cls, path: Path, sub: str | None = None) -> Signer:
        """A key file (`{"kid", "user", "private_pem", "service"?}`); `ValueError` naming
        the file if it cannot be read."""
        try:
            document = json.loads(path.read_text())
            key = serialization.load_pem_private_key(document["private_pem"].encode(), None)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"the key file {path} cannot be read: {error}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"the key file {path} does not hold an EC P-256 private key")
        if document.get("service"):
            return cls(document["kid"], key, sub or document["user"], act=document["user"])
        return cls(document["kid"], key, document["user"])


def user_signer(user: str) -> Signer | None:
    """The user's own key, if they made one here."""
    path = keys_folder() / f"{user}.json"
    return Signer.from_file(path) if path.is_file() else None


def write_key_file(path: Path, kid: str, user: str, key: ec.EllipticCurvePrivateKey,
                   service: bool = False) -> None:  # fmt: skip
    """Write a private key for the user alone (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    document = {"kid": kid, "user": user, "private_pem": pem, "service": service}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(document, file)


class SigningInterceptor(Interceptor):
    """Adds a signed token to every command and every start of an opportunity or batch."""

    def __init__(self, signer: Signer, namespace: str, converter: PayloadConverter) -> None:
        self.signer = signer
        self.namespace = namespace
        self.converter = converter

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Signing(next, self)


class _Signing(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, root: SigningInterceptor) -> None:
        super().__init__(next)
        self.root = root

    def _header(self, wid: str, cmd: str, args: Any) -> Payload:
        value = self._json(args[0]) if len(args) == 1 else None
        signer = self.root.signer
        token = sign(
            signer.private_key, signer.kid, sub=signer.sub, act=signer.act,
            aud=audience(self.root.namespace), wid=wid, cmd=cmd, payload=value,
            jti=value.get("request_id") if cmd != START and isinstance(value, dict) else None,
            now=datetime.now(UTC),
        )  # fmt: skip
        return Payload(metadata={"encoding": b"json/plain"}, data=header_data(token))

    def _json(self, arg: Any) -> Any:
        [payload] = self.root.converter.to_payloads([arg])
        return json.loads(payload.data) if payload.data else None

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        if input.signal in REGISTRY:
            input.headers = {**input.headers, HEADER: self._header(input.id, input.signal,
                                                                     input.args)}  # fmt: skip
        await super().signal_workflow(input)

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        if input.update in REGISTRY:
            input.headers = {**input.headers, HEADER: self._header(input.id, input.update,
                                                                     input.args)}  # fmt: skip
        return await super().start_workflow_update(input)

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        if input.workflow in SIGNED_STARTS:
            input.headers = {**input.headers, HEADER: self._header(input.id, START, input.args)}
        return await super().start_workflow(input)
