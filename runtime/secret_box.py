"""Subscription secrets sealed for the database: AES-GCM with a key from
`OPPORTUNITIES_SECRETS_KEY` (`ID:BASE64[,ID:BASE64...]`, like the payload codec's keys: the
first seals, all of them open, so keys rotate). The secret is never in a workflow's input or
history; `subscription add` seals it and the delivery activity opens it."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runtime.codec import NONCE_BYTES, Keyring
from runtime.settings import BadSetting, setting

KEY_VARIABLE = "OPPORTUNITIES_SECRETS_KEY"


class SecretBox:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    def seal(self, secret: str) -> tuple[str, bytes]:
        """The sealed secret and the id of the key that sealed it."""
        key_id = self.keyring.current
        nonce = os.urandom(NONCE_BYTES)
        return key_id, nonce + self._ciphers[key_id].encrypt(
            nonce, secret.encode(), key_id.encode()
        )

    def open(self, key_id: str, sealed: bytes) -> str:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise BadSetting(f"{KEY_VARIABLE} lacks the key {key_id!r} a secret was sealed with")
        try:
            plain = cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise BadSetting(
                f"a secret sealed with key {key_id!r} does not open: the key in "
                f"{KEY_VARIABLE} differs from the one that sealed it"
            ) from None
        return plain.decode()


def secret_box() -> SecretBox:
    """The box of `OPPORTUNITIES_SECRETS_KEY`; `BadSetting` if it is not set or not valid."""
    text = setting(KEY_VARIABLE)
    if not text:
        raise BadSetting(
            f"{KEY_VARIABLE} is not set: subscription secrets are sealed with it "
            f"(a key: {KEY_VARIABLE}=1:$(openssl rand -base64 32))"
        )
    return SecretBox(Keyring.parse(text, KEY_VARIABLE))
