"""Payload encryption: contact data never sits in Temporal's history in clear.

With `OPPORTUNITIES_ENCRYPTION_KEY` set, every payload the workers and clients send to
Temporal (workflow inputs, commands, results, activity arguments, queries) is sealed with
AES-GCM before it leaves the process; only the workers, the clients and the codec server
(`opportunities codec-server`, for the Temporal UI and CLI) hold the key.

The variable holds one or more keys, `ID:BASE64[,ID:BASE64...]`: the first encrypts, all of
them decrypt. Each payload names its key id in its metadata, so keys rotate by putting the new
key first and keeping the old ones until no open workflow carries their payloads.
A new key: `openssl rand -base64 32`.

With encryption on, a payload that arrives in clear is refused: anyone who can reach Temporal
could otherwise send commands that no key holder wrote. `OPPORTUNITIES_ALLOW_PLAINTEXT=true`
lets such payloads through while payloads from before encryption are still in use (a
migration). Decoding never raises for a payload it cannot use: it puts a marker payload in
its place (`REFUSED_PLAINTEXT`, `UNDECODABLE`), whose `REASON` says why, so that the workflow
rejects that command instead of failing its task again and again. Null payloads carry no
data and always pass.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.common import RawValue
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    PayloadConverter,
)

from runtime.settings import BadSetting, setting

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_VARIABLE = "OPPORTUNITIES_ENCRYPTION_KEY"
ALLOW_PLAINTEXT_VARIABLE = "OPPORTUNITIES_ALLOW_PLAINTEXT"
NULL_ENCODING = b"binary/null"

REFUSED_PLAINTEXT = b"binary/refused-plaintext"
"""Encoding of the marker `decode` returns in place of a payload that arrived in clear while
encryption is on (and plaintext is not allowed). Its data is empty; `REASON` says why."""
UNDECODABLE = b"binary/undecodable"
"""Encoding of the marker `decode` returns in place of an encrypted payload it cannot open
(unknown key id, tampered or truncated data, bad metadata). Its data is empty; `REASON` names
the problem."""
REASON = "reason"
"""Metadata key of a marker's reason: one line of UTF-8, never key material or payload data."""
PLAINTEXT_REFUSED_REASON = (
    f"a plaintext payload was refused: encryption is on ({ALLOW_PLAINTEXT_VARIABLE}=true "
    "allows it during a migration)"
)


class KeySettingError(BadSetting):
    """An encryption setting that cannot be used; the message says what is wrong (never the
    key)."""


@dataclasses.dataclass(frozen=True)
class Keyring:
    """The current key (encrypts) and every key that may decrypt, by id."""

    current: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str, variable: str = KEY_VARIABLE) -> Keyring:
        """Keys from `variable`'s text (named in the errors)."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for number, item in enumerate(part.strip() for part in text.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            key_id = key_id.strip()
            if not sep or not key_id:
                raise KeySettingError(
                    f"{variable}: key {number + 1} is not ID:BASE64 (for example "
                    "2026-11:$(openssl rand -base64 32))"
                )
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise KeySettingError(
                    f"{variable}: key {key_id!r} is not valid base64"
                ) from None
            if len(key) not in (16, 24, 32):
                raise KeySettingError(
                    f"{variable}: key {key_id!r} has {len(key)} bytes; AES needs 16, 24 "
                    "or 32 (openssl rand -base64 32)"
                )
            if key_id in keys:
                raise KeySettingError(f"{variable}: key id {key_id!r} is given twice")
            keys[key_id] = key
            order.append(key_id)
        if not order:
            raise KeySettingError(f"{variable} is set but holds no key")
        return cls(current=order[0], keys=keys)


class EncryptionCodec(PayloadCodec):
    """AES-GCM over each whole serialized payload, the key id as associated data."""

    def __init__(self, keyring: Keyring, allow_plaintext: bool = False) -> None:
        self.keyring = keyring
        self.allow_plaintext = allow_plaintext
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self.keyring.current
        cipher = self._ciphers[key_id]
        sealed = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            data = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            sealed.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: key_id.encode()},
                    data=nonce + data,
                )
            )
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload opened, or a marker in its place; never raises for a payload."""
        return [self._open(payload) for payload in payloads]

    def _open(self, payload: Payload) -> Payload:
        encoding = payload.metadata.get("encoding")
        if encoding != ENCODING:
            if encoding == NULL_ENCODING or self.allow_plaintext:
                return payload
            return marker(REFUSED_PLAINTEXT, PLAINTEXT_REFUSED_REASON)
        try:
            key_id = payload.metadata.get(KEY_ID, b"").decode()
        except UnicodeDecodeError:
            return marker(UNDECODABLE, "an encrypted payload's key id is not UTF-8 text")
        if not key_id:
            return marker(UNDECODABLE, "an encrypted payload names no key id")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            return marker(
                UNDECODABLE,
                f"a payload is encrypted with key {_shown(key_id)}, which {KEY_VARIABLE} "
                "does not hold",
            )
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            return marker(
                UNDECODABLE,
                f"an encrypted payload is truncated ({len(payload.data)} bytes, fewer than "
                "a nonce and a tag)",
            )
        nonce, data = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            opened = cipher.decrypt(nonce, data, key_id.encode())
        except InvalidTag:
            return marker(
                UNDECODABLE,
                f"an encrypted payload fails authentication with key {_shown(key_id)}: "
                "tampered, truncated, or sealed with another key of that id",
            )
        inner = Payload()
        try:
            inner.ParseFromString(opened)
        except DecodeError:
            return marker(UNDECODABLE, "an encrypted payload opens to bytes that are no payload")
        return inner


def marker(encoding: bytes, reason: str) -> Payload:
    """A payload standing in for one `decode` cannot pass on: no data, the reason in metadata."""
    return Payload(metadata={"encoding": encoding, REASON: reason.encode()})


def _shown(key_id: str) -> str:
    """A key id fit for a one-line reason (it comes from the payload: quoted, cut short)."""
    return repr(key_id if len(key_id) <= 40 else key_id[:40] + "...")


def codec_from_environment() -> EncryptionCodec | None:
    text = setting(KEY_VARIABLE)
    if not text:
        return None
    return EncryptionCodec(Keyring.parse(text), allow_plaintext=_allow_plaintext())


def _allow_plaintext() -> bool:
    value = (setting(ALLOW_PLAINTEXT_VARIABLE) or "false").strip().lower()
    if value not in ("true", "false"):
        raise KeySettingError(f"{ALLOW_PLAINTEXT_VARIABLE} must be true or false, not {value!r}")
    return value == "true"


class TolerantPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter, except that arguments it cannot decode without a type
    hint come back as raw values instead of an exception. The SDK decodes without hints when
    a caller sends a workflow or handler more arguments than it takes; raising there would
    fail the workflow task again and again, where a raw value reaches the workflow, which
    rejects it (`workflows.payloads.OneArgument`)."""

    def from_payloads(
        self, payloads: Sequence[Payload], type_hints: list[type] | None = None
    ) -> list[Any]:
        try:
            return super().from_payloads(payloads, type_hints)
        except Exception:
            if type_hints is not None:
                raise
            return [RawValue(payload) for payload in payloads]


def _without_stack_traces(failure: Failure) -> None:
    while True:
        failure.stack_trace = ""
        if not failure.HasField("cause"):
            return
        failure = failure.cause


class FailureConverterWithoutStackTraces(DefaultFailureConverter):
    """Failures as clients receive them (an update's rejection, a failed start, over gRPC or
    Temporal's HTTP API): message, type and details, never a stack trace with the worker's
    paths (the worker's log has it)."""

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        super().to_failure(exception, payload_converter, failure)
        _without_stack_traces(failure)

    def _error_to_failure(self, error: Any, payload_converter: PayloadConverter,
                          failure: Failure) -> None:  # fmt: skip
        super()._error_to_failure(error, payload_converter, failure)
        _without_stack_traces(failure)  # before the encrypting converter encodes it


class EncodedFailureConverterWithoutStackTraces(FailureConverterWithoutStackTraces):
    """The same, with the message encoded (encrypted by the codec): it may quote contact
    data."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)


TOLERANT = dataclasses.replace(
    pydantic_data_converter,
    payload_converter_class=TolerantPayloadConverter,
    failure_converter_class=FailureConverterWithoutStackTraces,
)
"""The data converter of workers and clients without encryption."""


def tolerant(converter: DataConverter) -> DataConverter:
    """`converter` with the tolerant payload converter and a failure converter that sends no
    stack traces (its codec kept, and whether it encodes failure messages)."""
    encoded = issubclass(
        converter.failure_converter_class, DefaultFailureConverterWithEncodedAttributes
    ) or issubclass(converter.failure_converter_class, EncodedFailureConverterWithoutStackTraces)
    return dataclasses.replace(
        converter,
        payload_converter_class=TolerantPayloadConverter,
        failure_converter_class=(
            EncodedFailureConverterWithoutStackTraces
            if encoded
            else FailureConverterWithoutStackTraces
        ),
    )


def data_converter(codec: PayloadCodec | None = None) -> DataConverter:
    """The pydantic converter, encrypting when a codec is given or configured. Encrypting,
    failure messages and stack traces travel encoded too (they may quote contact data)."""
    codec = codec or codec_from_environment()
    if codec is None:
        return TOLERANT
    return dataclasses.replace(
        TOLERANT,
        payload_codec=codec,
        failure_converter_class=EncodedFailureConverterWithoutStackTraces,
    )
