"""Keys, users' roles over time, permission sets and the authorization mode
(`signing_keys`, `role_grants`, `permission_sets`, `authorization_modes`), and the
`Directory` the workers load from them. Each record takes effect `delay` after it is written
(the workers' reload interval, with room to spare): no worker judges a command by a record
it may not have loaded yet."""

from __future__ import annotations

import json
from datetime import timedelta

import asyncpg

from sales.authorization import (
    AuthMode,
    Dated,
    Directory,
    Permissions,
    SigningKey,
)

EFFECTIVE_AFTER = timedelta(seconds=60)
"""How long after it is written a key, a revocation, a role, a permission set or a mode takes
effect: twice the longest reload interval a worker may have."""


class KeyExists(Exception):
    pass


async def add_key(
    pool: asyncpg.Pool,
    key: SigningKey,
    *,
    by: str | None,
    delay: timedelta = EFFECTIVE_AFTER,
) -> SigningKey:
    """Register a public key; usable `delay` from now. Returns it as stored."""
    try:
        row = await pool.fetchrow(
            "INSERT INTO signing_keys (kid, user_id, acts_for, public_jwk, registered_by,"
            " usable_from) VALUES ($1, $2, $3, $4::text::jsonb, $5, now() + $6::interval)"
            " RETURNING usable_from",
            key.kid,
            key.user_id,
            key.acts_for,
            json.dumps(key.public_jwk),
            by,
            delay,
        )
    except asyncpg.UniqueViolationError:
        raise KeyExists(key.kid) from None
    assert row is not None
    return key.model_copy(update={"usable_from": row["usable_from"]})


async def revoke_key(
    pool: asyncpg.Pool, kid: str, *, by: str | None, delay: timedelta = EFFECTIVE_AFTER
) -> bool:
    """Revoke a key from `delay` from now (kept: commands it signed replay as applied); False
    if there is no such key or it is revoked already."""
    done = await pool.fetchval(
        "UPDATE signing_keys SET revoked_at = now(), revoked_from = now() + $2::interval,"
        " revoked_by = $3 WHERE kid = $1 AND revoked_at IS NULL RETURNING true",
        kid,
        delay,
        by,
    )
    return bool(done)


async def keys(pool: asyncpg.Pool) -> list[tuple[SigningKey, dict[str, object]]]:
    """Every key, with who registered and revoked it when."""
    rows = await pool.fetch(
        "SELECT kid, user_id, acts_for, public_jwk, usable_from, revoked_from, registered_at,"
        " registered_by, revoked_at, revoked_by FROM signing_keys ORDER BY registered_at, kid"
    )
    return [(_key(row), {name: row[name] for name in
                         ("registered_at", "registered_by", "revoked_at", "revoked_by")})
            for row in rows]  # fmt: skip


def _key(row: asyncpg.Record) -> SigningKey:
    jwk = row["public_jwk"]
    return SigningKey(
        kid=row["kid"], user_id=row["user_id"], acts_for=row["acts_for"],
        public_jwk=json.loads(jwk) if isinstance(jwk, str) else jwk,
        usable_from=row["usable_from"], revoked_from=row["revoked_from"],
    )  # fmt: skip


async def apply_permissions(
    pool: asyncpg.Pool,
    permissions: Permissions,
    *,
    by: str | None,
    delay: timedelta = EFFECTIVE_AFTER,
) -> int:
    """A new permission set, in effect `delay` from now; its version."""
    return int(
        await pool.fetchval(
            "INSERT INTO permission_sets (rules, applied_by, effective_from)"
            " VALUES ($1::text::jsonb, $2, now() + $3::interval) RETURNING version",
            permissions.model_dump_json(),
            by,
            delay,
        )
    )


async def latest_mode(pool: asyncpg.Pool) -> AuthMode:
    """The mode recorded last (`off` when none is)."""
    latest = await pool.fetchval(
        "SELECT mode FROM authorization_modes ORDER BY effective_from DESC LIMIT 1"
    )
    return latest or "off"


async def record_mode(
    pool: asyncpg.Pool, mode: AuthMode, *, delay: timedelta = EFFECTIVE_AFTER
) -> bool:
    """Record `mode` (in effect `delay` from now) unless it is the latest recorded already."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE authorization_modes IN EXCLUSIVE MODE")
        latest = await conn.fetchval(
            "SELECT mode FROM authorization_modes ORDER BY effective_from DESC LIMIT 1"
        )
        if (latest or "off") == mode:
            return False
        await conn.execute(
            "INSERT INTO authorization_modes (mode, effective_from)"
            " VALUES ($1, now() + $2::interval)",
            mode,
            delay,
        )
        return True


async def grant_roles(
    conn: asyncpg.Pool | asyncpg.pool.PoolConnectionProxy,
    user_id: str,
    roles: list[str],
    *,
    delay: timedelta = EFFECTIVE_AFTER,
) -> None:
    """The user's roles from `delay` from now on."""
    await conn.execute(
        "INSERT INTO role_grants (user_id, roles, effective_from)"
        " VALUES ($1, $2, now() + $3::interval)"
        " ON CONFLICT (user_id, effective_from) DO UPDATE SET roles = EXCLUDED.roles",
        user_id,
        roles,
        delay,
    )


async def load_directory(pool: asyncpg.Pool, *, modes: bool = True) -> Directory:
    """Everything the workers judge commands by (the mode too, unless `modes` is False)."""
    async with pool.acquire() as conn:
        key_rows = await conn.fetch(
            "SELECT kid, user_id, acts_for, public_jwk, usable_from, revoked_from FROM signing_keys"
        )
        grants = await conn.fetch(
            "SELECT user_id, roles, effective_from FROM role_grants"
            " ORDER BY user_id, effective_from"
        )
        sets = await conn.fetch(
            "SELECT rules, effective_from FROM permission_sets ORDER BY effective_from, version"
        )
        mode_rows = (
            await conn.fetch(
                "SELECT mode, effective_from FROM authorization_modes ORDER BY effective_from"
            )
            if modes
            else []
        )
    roles: dict[str, list[Dated[list[str]]]] = {}
    for row in grants:
        roles.setdefault(row["user_id"], []).append(
            Dated(value=list(row["roles"]), effective_from=row["effective_from"])
        )
    permission_sets: list[Dated[Permissions]] = [
        Dated(value=_permissions(row["rules"]), effective_from=row["effective_from"])
        for row in sets
    ]
    return Directory(
        keys={row["kid"]: _key(row) for row in key_rows},
        roles=roles,
        permissions=permission_sets,
        modes=[Dated(value=row["mode"], effective_from=row["effective_from"]) for row in mode_rows],
    )


def _permissions(rules: object) -> Permissions:
    if isinstance(rules, str):
        return Permissions.model_validate_json(rules)
    return Permissions.model_validate(rules)
