"""Users: the people an opportunity's team and calendar activities name, with their roles."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from sales.validation import Identifier, ShortLine
from store.authorization import EFFECTIVE_AFTER, grant_roles


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Identifier
    name: ShortLine
    email: EmailStr | None = None
    roles: list[Identifier] = Field(default_factory=list, max_length=50)


async def put_user(
    pool: asyncpg.Pool, user: User, *, roles_delay: timedelta = EFFECTIVE_AFTER
) -> bool:
    """Add the user, or replace its details; True if it was added. Changed roles take effect
    `roles_delay` from now (`store.authorization.EFFECTIVE_AFTER`)."""
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchval("SELECT roles FROM users WHERE user_id = $1", user.user_id)
        added = await conn.fetchval(
            "INSERT INTO users (user_id, name, email, roles) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email,"
            " roles = EXCLUDED.roles, updated_at = now()"
            " RETURNING (xmax = 0)",
            user.user_id,
            user.name,
            user.email,
            user.roles,
        )
        if list(before or []) != list(user.roles) or added:
            await grant_roles(conn, user.user_id, list(user.roles), delay=roles_delay)
    return bool(added)


async def get_user(pool: asyncpg.Pool, user_id: str) -> User | None:
    row = await pool.fetchrow(
        "SELECT user_id, name, email, roles FROM users WHERE user_id = $1", user_id
    )
    return None if row is None else User.model_validate(dict(row))


async def list_users(pool: asyncpg.Pool, role: str | None = None) -> list[User]:
    rows = await pool.fetch(
        "SELECT user_id, name, email, roles FROM users"
        " WHERE $1::text IS NULL OR $1 = ANY(roles) ORDER BY user_id",
        role,
    )
    return [User.model_validate(dict(row)) for row in rows]


async def existing(pool: asyncpg.Pool, user_ids: list[str]) -> list[str]:
    """Of `user_ids`, those that exist."""
    rows = await pool.fetch(
        "SELECT user_id FROM users WHERE user_id = ANY($1::text[]) ORDER BY user_id", user_ids
    )
    return [row["user_id"] for row in rows]


async def directory(pool: asyncpg.Pool, limit: int) -> list[str] | None:
    """Every user id, when there are at most `limit` of them (None: more)."""
    rows = await pool.fetch("SELECT user_id FROM users ORDER BY user_id LIMIT $1", limit + 1)
    return None if len(rows) > limit else [row["user_id"] for row in rows]
