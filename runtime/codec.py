"""Payload encryption: contact data never sits in Temporal's history in clear.

With `OPPORTUNITIES_ENCRYPTION_KEY` set, every payload the workers and clients send to
Temporal (workflow inputs, commands, results, activity arguments, queries) is sealed with
AES-GCM before it leaves the process; only the workers, the clients and the codec server
(`opportunities codec-server`, for the Temporal UI and CLI) hold the key.

The variable holds one or more keys, `ID:BASE64[,ID:BASE64...]`: the first encrypts, all of
them decrypt. Each payload names its key id in its metadata, so keys rotate by putting the new
key first and keeping the old ones until no open workflow carries their payloads. Payloads
that were never encrypted (written before encryption was switched on) pass through unchanged.
A new key: `openssl rand -base64 32`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from runtime.settings import BadSetting, setting

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_VARIABLE = "OPPORTUNITIES_ENCRYPTION_KEY"


class KeySettingError(BadSetting):
    """A key setting that cannot be used; the message says what is wrong (never the key)."""


@dataclasses.dataclass(frozen=True)
class Keyring:
    """The current key (encrypts) and every key that may decrypt, by id."""

    current: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for number, item in enumerate(part.strip() for part in text.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            key_id = key_id.strip()
            if not sep or not key_id:
                raise KeySettingError(
                    f"{KEY_VARIABLE}: key {number + 1} is not ID:BASE64 (for example "
                    "2026-11:$(openssl rand -base64 32))"
                )
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise KeySettingError(
                    f"{KEY_VARIABLE}: key {key_id!r} is not valid base64"
                ) from None
            if len(key) not in (16, 24, 32):
                raise KeySettingError(
                    f"{KEY_VARIABLE}: key {key_id!r} has {len(key)} bytes; AES needs 16, 24 "
                    "or 32 (openssl rand -base64 32)"
                )
            if key_id in keys:
                raise KeySettingError(f"{KEY_VARIABLE}: key id {key_id!r} is given twice")
            keys[key_id] = key
            order.append(key_id)
        if not order:
            raise KeySettingError(f"{KEY_VARIABLE} is set but holds no key")
        return cls(current=order[0], keys=keys)


class EncryptionCodec(PayloadCodec):
    """AES-GCM over each whole serialized payload, the key id as associated data."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
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
        opened = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                opened.append(payload)  # written before encryption was switched on
                continue
            key_id = payload.metadata.get(KEY_ID, b"").decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise ValueError(
                    f"a payload is encrypted with key {key_id!r}, which {KEY_VARIABLE} "
                    f"does not hold (it holds {sorted(self._ciphers)})"
                )
            nonce, data = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
            inner = Payload()
            inner.ParseFromString(cipher.decrypt(nonce, data, key_id.encode()))
            opened.append(inner)
        return opened


def codec_from_environment() -> EncryptionCodec | None:
    text = setting(KEY_VARIABLE)
    return EncryptionCodec(Keyring.parse(text)) if text else None


def data_converter(codec: PayloadCodec | None = None) -> DataConverter:
    """The pydantic converter, encrypting when a codec is given or configured. Encrypting,
    failure messages and stack traces travel encoded too (they may quote contact data)."""
    codec = codec or codec_from_environment()
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
