"""`opportunities keys ...` and `opportunities permissions ...`: the keys that sign commands and
the rules that say which roles may run which commands. Both are written to the database by
an administrator and take effect a minute later, once every worker has loaded them."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import jwt
import typer
from pydantic import ValidationError

from runtime import settings
from runtime.signer import Signer, keys_folder, write_key_file
from sales.authorization import Permissions, SigningKey
from sales.errors import describe_validation_error
from starter.cli.common import (
    JsonFlag,
    UserError,
    actor,
    console,
    database,
    load_document,
    new_app,
    new_table,
    print_json,
    print_table,
    run,
)
from store import authorization, logins
from store.opportunities import audit_trail
from store.schema import migrate
from store.users import list_users

keys_app = new_app("Keys that sign commands: a user's own, or a service's acting for users.")
permissions_app = new_app("Which roles may run which commands, on which opportunities.")

MAX_JWK_BYTES = 4096


def checked_jwk(document: Any, where: str) -> dict[str, Any]:
    """A public EC P-256 JWK with a `kid`; `UserError` naming what is wrong."""
    if not isinstance(document, dict):
        raise UserError(f"{where} holds no JWK (a JSON object)")
    if "d" in document:
        raise UserError(f"{where} holds a private key: give the public JWK only")
    if not isinstance(document.get("kid"), str) or not document["kid"]:
        raise UserError(f"{where}: the JWK has no kid")
    try:
        jwt.PyJWK(document, algorithm="ES256")
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise UserError(f"{where} is not an ES256 public key: {error}") from None
    if document.get("crv") != "P-256":
        raise UserError(f"{where} is not an EC P-256 key")
    return document


def _register_by_default() -> bool:
    """Under `make run` the local user is the administrator: `keys create` registers too."""
    return not os.environ.get("DATABASE_URL") and settings.local_env_file() is not None


async def _add(key: SigningKey) -> SigningKey:
    async with database() as pool:
        try:
            return await authorization.add_key(pool, key, by=actor())
        except authorization.KeyExists:
            raise UserError(f"a key {key.kid!r} exists already") from None


@keys_app.command("create")
def create(
    user: Annotated[str | None, typer.Option("--user", help="Default: you.")] = None,
    register: Annotated[
        bool | None,
        typer.Option(
            "--register/--no-register",
            help="Register it too (an administrator's right; default under make run).",
        ),
    ] = None,
) -> None:
    """Make a key pair: the private key in your config folder, the public JWK printed (give
    it to an administrator: `keys add --user U FILE`)."""
    owner = user or actor()
    path = keys_folder() / f"{owner}.json"
    if path.exists():
        raise UserError(f"{path} exists already: revoke its key, remove the file, then create")
    kid = f"{owner}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    signer = Signer.generate(kid, owner)
    jwk = signer.public_jwk
    stored = None
    if register if register is not None else _register_by_default():
        stored = run(lambda: _add(SigningKey(kid=kid, user_id=owner, public_jwk=jwk,
                                             usable_from=datetime.now(UTC))))  # fmt: skip
    write_key_file(path, kid, owner, signer.private_key)
    console.print(f"private key: {path}", highlight=False)
    print_json(jwk)
    if stored is not None:
        console.print(f"registered; usable from {stored.usable_from.isoformat()}",
                      highlight=False)  # fmt: skip


@keys_app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="The public JWK (JSON), with its kid.")],
    user: Annotated[str, typer.Option("--user", help="The user (or service) it signs for.")],
    acts_for: Annotated[
        str | None,
        typer.Option(
            "--acts-for",
            help="A service key: the users it may sign for (comma-separated; * for any).",
        ),
    ] = None,
) -> None:
    """Register a public key (an administrator's right); usable a minute later."""
    jwk = checked_jwk(load_document(file, MAX_JWK_BYTES), str(file))
    acting = [name.strip() for name in acts_for.split(",") if name.strip()] if acts_for else None
    try:
        key = SigningKey(kid=jwk["kid"], user_id=user, acts_for=acting, public_jwk=jwk,
                         usable_from=datetime.now(UTC))  # fmt: skip
    except ValidationError as error:
        raise UserError(describe_validation_error(error)) from None
    stored = run(lambda: _add(key))
    console.print(f"key {stored.kid} of {user} usable from {stored.usable_from.isoformat()}",
                  highlight=False)  # fmt: skip


@keys_app.command("list")
def list_keys(as_json: JsonFlag = False) -> None:
    """Every key, revoked ones too (keys are never deleted)."""

    async def work() -> list[tuple[SigningKey, dict[str, Any]]]:
        async with database() as pool:
            return await authorization.keys(pool)

    found = run(work)
    if as_json:
        print_json([{**key.model_dump(mode="json"), **{k: str(v) if v else None
                                                        for k, v in more.items()}}
                    for key, more in found])  # fmt: skip
        return
    table = new_table("kid", "user", "acts for", "usable from", "revoked from", "registered by")
    for key, more in found:
        table.add_row(key.kid, key.user_id, ",".join(key.acts_for or []),
                      key.usable_from.isoformat(timespec="seconds"),
                      key.revoked_from.isoformat(timespec="seconds") if key.revoked_from else "",
                      str(more.get("registered_by") or ""))  # fmt: skip
    print_table(table)


@keys_app.command("revoke")
def revoke(kid: Annotated[str, typer.Argument()]) -> None:
    """Revoke a key (a minute from now); commands it signed before stay as applied."""

    async def work() -> bool:
        async with database() as pool:
            return await authorization.revoke_key(pool, kid, by=actor())

    if not run(work):
        raise UserError(f"no key {kid!r}, or it is revoked already")
    console.print(f"key {kid} revoked", highlight=False)


@permissions_app.command("apply")
def apply(file: Annotated[Path, typer.Argument(help="rules: [{role, commands, scope}]")]) -> None:
    """Apply a permissions file (YAML or JSON); in effect a minute later."""
    try:
        permissions = Permissions.model_validate(load_document(file))
    except ValidationError as error:
        raise UserError(f"{file}: {describe_validation_error(error)}") from None

    async def work() -> int:
        async with database() as pool:
            roles = {role for user in await list_users(pool) for role in user.roles}
            unknown = sorted({rule.role for rule in permissions.rules} - roles)
            if unknown:
                raise UserError(f"{file}: unknown role {unknown[0]!r} (no user has it; roles "
                                f"are {', '.join(sorted(roles)) or 'none'})")  # fmt: skip
            return await authorization.apply_permissions(pool, permissions, by=actor())

    version = run(work)
    console.print(f"permissions version {version} applied; in effect in a minute",
                  highlight=False)  # fmt: skip


@permissions_app.command("show")
def show(as_json: JsonFlag = False) -> None:
    """The permissions in effect now (and any applied that take effect later)."""

    async def work() -> Any:
        async with database() as pool:
            return await authorization.load_directory(pool, modes=True)

    directory = run(work)
    now = datetime.now(UTC)
    current = directory.permissions_at(now)
    if as_json:
        print_json({"permissions": current, "mode": directory.mode_at(now)})
        return
    console.print(f"authorization mode: {directory.mode_at(now)}", highlight=False)
    table = new_table("role", "commands", "scope")
    for rule in current.rules:
        table.add_row(rule.role, ", ".join(rule.commands), rule.scope)
    print_table(table)


audit_app = new_app("The audit trail.")


@audit_app.command("audit")
def audit(
    opportunity_id: Annotated[str, typer.Argument(help="The opportunity.")],
    as_json: JsonFlag = False,
) -> None:
    """Who did what to an opportunity: every change (stage, owner, team, actions, activities,
    details, remarks), who sent it, and whether a signature proves who (kept for good)."""

    async def work() -> list[dict[str, Any]]:
        async with database() as pool:
            return await audit_trail(pool, opportunity_id)

    trail = run(work)
    if not trail:
        raise UserError(f"no opportunity {opportunity_id!r} in the read model, or no change yet")
    if as_json:
        print_json(trail)
        return
    table = new_table("#", "when", "what", "change", "by", "actor", "service", "verified")
    for entry in trail:
        data = entry["data"]
        change = {
            k: v
            for k, v in data.items()
            if k not in ("by", "actor", "actor_service", "verified") and v is not None
        }
        verified = {"true": "yes", "false": "no"}.get(data.get("verified") or "", "off")
        table.add_row(str(entry["seq"]), entry["at"].isoformat(timespec="seconds"),
                      entry["type"], ", ".join(f"{k}={v}" for k, v in change.items()),
                      data.get("by") or "", data.get("actor") or "",
                      data.get("actor_service") or "", verified)  # fmt: skip
    print_table(table)


LoginOption = Annotated[
    list[str] | None,
    typer.Option(
        "--login",
        help="NAME=ROLE: make NAME a login of ROLE (sales_setup, sales_office, sales_worker, "
        "sales_read), its password from OPPORTUNITIES_DB_PASSWORD_<NAME> when set; repeatable",
    ),
]


@audit_app.command("migrate")
def migrate_command(login: LoginOption = None) -> None:
    """The setup step, as the database's owner: apply the migrations this database lacks,
    grant the database roles on every table, make the logins asked for, and record
    `SALES_AUTH` when it is set (in effect a minute later)."""
    wanted = [_login(text) for text in login or []]
    mode = settings.setting("SALES_AUTH")
    if mode and mode not in ("off", "record", "enforce"):
        raise UserError(f"SALES_AUTH must be off, record or enforce, not {mode!r}")

    async def work() -> tuple[list[int], list[str]]:
        said = []
        async with database() as pool:
            applied = await migrate(pool)
            for name, group in wanted:
                password = os.environ.get(f"OPPORTUNITIES_DB_PASSWORD_{name.upper()}")
                created = await logins.ensure_login(pool, name, group, password)
                said.append(f"login {name} ({group}) {'created' if created else 'updated'}")
            if mode and await authorization.record_mode(pool, mode):  # type: ignore[arg-type]
                said.append(f"authorization mode {mode} recorded; in effect in a minute")
        return applied, said

    try:
        applied, said = run(work)
    except ValueError as error:
        raise UserError(str(error)) from None
    console.print(f"applied migrations {', '.join(map(str, applied))}" if applied
                  else "the database has every migration", highlight=False)  # fmt: skip
    for line in said:
        console.print(line, highlight=False)


def _login(text: str) -> tuple[str, str]:
    name, equals, group = text.partition("=")
    if not equals:
        raise UserError(f"--login takes NAME=ROLE, not {text!r}")
    try:
        logins.check_login(name, group)
    except ValueError as error:
        raise UserError(str(error)) from None
    return name, group
