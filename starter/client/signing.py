"""Signing what a client sends: each command (signal or update) and each start of an
opportunity or a batch carries a token in the Temporal header `sales-authz`, made with the
user's (or a service's) private key (`sales.tokens`, `runtime.signer`). The CLI signs with
the key of the user it acts as; the Python client signs when it is given a `Signer`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

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

from runtime.signer import Signer
from sales.registry import REGISTRY
from sales.tokens import HEADER, START, audience, header_data, sign

SIGNED_STARTS = frozenset({"Opportunity", "MassModify"})


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
