"""Versioned SQL migrations, applied idempotently by every worker start and by `make run`.

Files `migrations/NNNN_name.sql` run in order, each once, in its own transaction; a
transaction-scoped advisory lock makes concurrent starts (workers scaled out) wait for each
other instead of racing to create the same tables.
"""

from __future__ import annotations

from importlib import resources

import asyncpg

MIGRATIONS_LOCK = 0x0BB0_0001
"""Advisory lock key held while migrating (any constant unique to this service)."""


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, oldest first."""
    found = []
    for entry in resources.files("store.migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append((int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found)


async def migrate(pool: asyncpg.Pool) -> list[int]:
    """Apply the migrations this database lacks; return the versions applied now."""
    applied_now: list[int] = []
    async with pool.acquire() as conn:
        for version, name, sql in migration_files():
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK)
                await conn.execute(
                    """CREATE TABLE IF NOT EXISTS schema_migrations (
                           version integer PRIMARY KEY,
                           name text NOT NULL,
                           applied_at timestamptz NOT NULL DEFAULT now())"""
                )
                done = await conn.fetchval(
                    "SELECT 1 FROM schema_migrations WHERE version = $1", version
                )
                if done:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
                applied_now.append(version)
        if await conn.fetchval("SELECT to_regproc('sales_grant_roles') IS NOT NULL"):
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATIONS_LOCK)
                await conn.execute("SELECT sales_grant_roles()")  # tables added since too
    return applied_now


async def pending(pool: asyncpg.Pool) -> list[int]:
    """The versions of the migrations this database lacks."""
    shipped = [version for version, _, _ in migration_files()]
    table = await pool.fetchval(  # in this schema (not another on the search path)
        "SELECT to_regclass(quote_ident(current_schema()) || '.schema_migrations')::text"
    )
    if table is None:
        return shipped
    applied = {row["version"] for row in await pool.fetch(f"SELECT version FROM {table}")}
    return [version for version in shipped if version not in applied]
