"""A private signing key and whom it signs for: a user's own (`keys/<user>.json` in the
user's config folder, readable by the user only; `opportunities keys create` makes it), or
a service's (`"service": true`), which signs for the users its registration allows."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


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

    @classmethod
    def generate(cls, kid: str, sub: str, act: str | None = None) -> Signer:
        """A new EC P-256 key pair."""
        return cls(kid, ec.generate_private_key(ec.SECP256R1()), sub, act)

    @property
    def public_jwk(self) -> dict[str, object]:
        """The public key as a JWK, with its `kid` (what an administrator registers)."""
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}

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
