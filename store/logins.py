"""Login roles of a deployment, each a member of one of the group roles the migrations create
(`0015_database_roles.sql`): the setup step makes them, so that a worker, advisers' CLI and
reports each connect with only what they need."""

from __future__ import annotations

import re

import asyncpg

GROUPS = ("sales_setup", "sales_office", "sales_worker", "sales_read")
"""The group roles a login may join."""
LOGIN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
"""A login's name: a plain PostgreSQL identifier (no quoting needed, never a keyword trick)."""


def check_login(name: str, group: str) -> None:
    """Raise `ValueError` (one line) for a name that is not a plain identifier, names a group
    role, or a group that is not one of `GROUPS`."""
    if not LOGIN_NAME.match(name):
        raise ValueError(
            f"login {name!r} must be 1 to 63 lowercase letters, digits or _, not starting "
            "with a digit"
        )
    if name in GROUPS or name.startswith("pg_"):
        raise ValueError(f"login {name!r} is a group or system role's name; choose another")
    if group not in GROUPS:
        raise ValueError(f"unknown database role {group!r}; the roles are {', '.join(GROUPS)}")


async def ensure_login(
    pool: asyncpg.Pool, name: str, group: str, password: str | None = None
) -> bool:
    """Make `name` a login of `group` (created, or its password set when given); True when
    it was created. A superuser or the database's owner is never made a member."""
    check_login(name, group)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT rolsuper, rolname = (SELECT pg_get_userbyid(datdba) FROM pg_database"
            " WHERE datname = current_database()) AS owns FROM pg_roles WHERE rolname = $1",
            name,
        )
        if row is not None and (row["rolsuper"] or row["owns"]):
            raise ValueError(f"login {name!r} is a superuser or owns the database; choose another")
        secret = ""
        if password is not None:
            secret = " PASSWORD " + await conn.fetchval("SELECT quote_literal($1)", password)
        await conn.execute(f"{'ALTER' if row else 'CREATE'} ROLE {name} LOGIN{secret}")
        await conn.execute(f"GRANT {group} TO {name}")
        return row is None
