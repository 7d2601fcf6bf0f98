"""The database roles grant each kind of client only what it needs: no one but the setup
role and the worker reads a webhook secret; the worker never writes keys, permissions, roles
or processes; advisers' CLI writes contacts and seminars, not opportunities."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.support.servers import Cli

ALLOWED = [
    ("sales_read", "SELECT subscription_id, url, status FROM subscriptions LIMIT 1"),
    ("sales_read", "SELECT count(*) FROM opportunity_audit"),
    ("sales_read", "SELECT count(*) FROM opportunity_overdue"),
    ("sales_office", "INSERT INTO contacts (contact_id, first_name, last_name)"
                     " VALUES ('role-test', 'R', 'T')"),
    ("sales_office", "UPDATE subscriptions SET status = status WHERE false"),
    ("sales_worker", "SELECT secret FROM subscriptions LIMIT 1"),
    ("sales_worker", "UPDATE opportunities SET revision = revision WHERE false"),
    ("sales_worker", "DELETE FROM opportunity_events WHERE false"),
    ("sales_worker", "SELECT count(*) FROM signing_keys"),
    ("sales_setup", "INSERT INTO authorization_modes (mode, effective_from)"
                    " VALUES ('off', '-infinity') ON CONFLICT DO NOTHING"),
]  # fmt: skip
REFUSED = [
    ("sales_read", "SELECT secret FROM subscriptions LIMIT 1"),
    ("sales_read", "SELECT * FROM subscriptions LIMIT 1"),
    ("sales_read", "UPDATE opportunities SET revision = revision WHERE false"),
    ("sales_office", "SELECT secret FROM subscriptions LIMIT 1"),
    ("sales_office", "UPDATE opportunities SET revision = revision WHERE false"),
    ("sales_office", "INSERT INTO signing_keys (kid, user_id, public_jwk, usable_from)"
                     " VALUES ('x', 'x', '{}', now())"),
    ("sales_worker", "INSERT INTO signing_keys (kid, user_id, public_jwk, usable_from)"
                     " VALUES ('x', 'x', '{}', now())"),
    ("sales_worker", "UPDATE permission_sets SET rules = rules WHERE false"),
    ("sales_worker", "UPDATE users SET roles = roles WHERE false"),
    ("sales_worker", "DELETE FROM sales_processes WHERE false"),
]  # fmt: skip


async def _as(pool: asyncpg.Pool, role: str, sql: str) -> None:
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(f"SET LOCAL ROLE {role}")
            await conn.execute(sql)
        finally:
            await transaction.rollback()


@pytest.mark.parametrize(("role", "sql"), ALLOWED)
async def test_each_role_may_do_its_work(pool: asyncpg.Pool, role: str, sql: str) -> None:
    await _as(pool, role, sql)


@pytest.mark.parametrize(("role", "sql"), REFUSED)
async def test_each_role_may_do_nothing_more(pool: asyncpg.Pool, role: str, sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as(pool, role, sql)


async def test_every_table_is_granted_to_every_role(pool: asyncpg.Pool) -> None:
    """`migrate` grants the roles on tables added since the roles' migration too."""
    missing = await pool.fetch(
        "SELECT c.relname, r.rolname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()"
        " CROSS JOIN (VALUES ('sales_setup'), ('sales_worker'), ('sales_read')) r(rolname)"
        " WHERE c.relkind = 'r' AND c.relname <> 'subscriptions'"
        " AND NOT has_table_privilege(r.rolname, c.oid, 'SELECT')"
    )
    assert [tuple(row) for row in missing] == []


async def test_a_worker_finds_what_a_database_lacks(postgres_url: str, pool: asyncpg.Pool) -> None:
    """`pending` lists the migrations a schema lacks (a worker will not start on it); after
    `opportunities migrate` it lists none."""
    import uuid

    from store.schema import migrate, migration_files, pending

    schema = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    settings = {"search_path": f"{schema}, public"}
    fresh = await asyncpg.create_pool(postgres_url, server_settings=settings)
    assert fresh is not None
    try:
        assert await pending(fresh) == [version for version, _, _ in migration_files()]
        await migrate(fresh)
        assert await pending(fresh) == []
    finally:
        await fresh.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def test_the_setup_step_makes_logins_with_their_roles_rights_only(
    cli: Cli, postgres_url: str, pool: asyncpg.Pool, uid: str
) -> None:
    """`opportunities migrate --login NAME=ROLE` makes a login of one role (again: updated);
    a bad name or role is one line, exit 1, and no login is made."""
    name = f"w_{uid}"
    made = await cli("migrate", "--login", f"{name}=sales_worker")
    assert made.code == 0 and f"login {name} (sales_worker) created" in made.stdout, made.stderr
    again = await cli("migrate", "--login", f"{name}=sales_worker")
    assert f"login {name} (sales_worker) updated" in again.stdout
    parts = urlsplit(postgres_url)
    login_url = urlunsplit(parts._replace(netloc=f"{name}@{parts.netloc.rpartition('@')[2]}"))
    conn = await asyncpg.connect(login_url)  # the test server trusts this machine
    try:
        assert await conn.fetchval("SELECT current_user") == name
        await conn.fetchval("SELECT count(*) FROM opportunities")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE signing_keys SET revoked_at = now() WHERE false")
    finally:
        await conn.close()
    for bad in [f"B{uid}=sales_worker", f"x_{uid}", f"y_{uid}=superuser", "sales_read=sales_worker",
                "postgres=sales_read", f"z_{uid};drop=sales_read"]:  # fmt: skip
        refused = await cli("migrate", "--login", bad)
        assert refused.code == 1 and refused.stderr.strip().count("\n") == 0, refused.stderr
    logins = await pool.fetch("SELECT rolname FROM pg_roles WHERE rolname ILIKE $1", f"%{uid}%")
    assert [row["rolname"] for row in logins] == [name]


async def test_a_worker_login_cannot_change_the_mode_and_says_how(
    postgres_url: str, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose `SALES_AUTH` differs from the recorded mode records it when its login
    may, and otherwise refuses to start, naming the setup step."""
    import worker
    from store.logins import ensure_login
    from store.schema import migrate

    schema, name = f"mode_{uid}", f"mw_{uid}"
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    settings = {"search_path": f"{schema}, public"}
    owner = await asyncpg.create_pool(postgres_url, server_settings=settings)
    parts = urlsplit(postgres_url)
    login_url = urlunsplit(parts._replace(netloc=f"{name}@{parts.netloc.rpartition('@')[2]}"))
    try:
        await migrate(owner)
        await ensure_login(owner, name, "sales_worker")
        as_worker = await asyncpg.create_pool(login_url, server_settings=settings)
        try:
            monkeypatch.setenv("SALES_AUTH", "off")
            await worker.load_directory_or_exit(as_worker)  # the recorded mode: nothing to write
            monkeypatch.setenv("SALES_AUTH", "enforce")
            with pytest.raises(SystemExit, match="run `opportunities migrate` with SALES_AUTH"):
                await worker.load_directory_or_exit(as_worker)
            await worker.load_directory_or_exit(owner)  # the owner may record it
            assert await owner.fetchval("SELECT count(*) FROM authorization_modes") == 1
            await worker.load_directory_or_exit(as_worker)  # recorded now
        finally:
            await as_worker.close()
    finally:
        await owner.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
