"""Who may do what: the verified actor of a command, the effective-dated directory of keys,
roles, permissions and the authorization mode, and `authorize`, which decides.

Everything here is judged at a given time (`workflow.now()` in the workflow), never by what a
worker happens to have loaded: a key is usable from its `usable_from` (its registration plus
the workers' reload interval) until its `revoked_from`; roles, permissions and the mode
change at their `effective_from`. A worker holds every record whose time has come (it
reloads more often than the interval), so a signal checked again on replay, later, is
decided as it was live.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any, Generic, Literal, TypeVar

import jwt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sales.errors import CommandRejected
from sales.opportunity import Opportunity
from sales.registry import REGISTRY
from sales.validation import IdText

HEADER = "sales-authz"
"""The Temporal header that carries a command's signed actor (`sales.tokens`)."""

AuthMode = Literal["off", "record", "enforce"]
Scope = Literal["own", "team", "all"]
"""`own`: the opportunity's owner; `team`: its owner or a member of its team; `all`: any."""

CLOSE_LOST = "close_lost"
CLOSE_WON = "close_won"
OPEN = "open"
RIGHTS_BEYOND_COMMANDS = (CLOSE_LOST, CLOSE_WON, OPEN)
"""Rights a rule may name besides commands: moving an opportunity by `change_stage` straight
into a stage that closes it as lost (without an outcome) or as won, and opening one (scope
`own`: only with oneself as its owner)."""


class Actor(BaseModel):
    """Who sent a command: `sub`, the user; `act`, the service acting for them (if any);
    `verified`, whether a valid signature says so (else `sub` is the command's `by`)."""

    model_config = ConfigDict(frozen=True)

    sub: IdText
    act: IdText | None = None
    verified: bool = False


class SigningKey(BaseModel):
    """A public key (a JWK of an EC P-256 key) of a user, or of a service acting for users."""

    model_config = ConfigDict(frozen=True)

    kid: IdText
    user_id: IdText
    """The user the key signs for; for a service key, the service's name."""
    acts_for: list[IdText] | None = None
    """A service key: the users it may sign for (`["*"]`: any); None: a user's own key."""
    public_jwk: dict[str, Any]
    usable_from: datetime
    revoked_from: datetime | None = None

    @cached_property
    def public_key(self) -> Any:
        """The key, made once from its JWK (a key is never changed: a new one is added)."""
        return jwt.PyJWK(self.public_jwk, algorithm="ES256").key

    def usable_at(self, at: datetime) -> bool:
        return self.usable_from <= at

    def revoked_at(self, at: datetime) -> bool:
        return self.revoked_from is not None and self.revoked_from <= at

    def may_act_for(self, sub: str) -> bool:
        if self.acts_for is None:
            return sub == self.user_id
        return "*" in self.acts_for or sub in self.acts_for


class PermissionRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: IdText
    commands: list[IdText] = Field(min_length=1, max_length=100)
    """Command names, `close_lost`, `close_won`, or `*` (every command and right)."""
    scope: Scope

    def describe(self) -> str:
        return f"role {self.role}: {', '.join(self.commands)} on {self.scope}"


class Permissions(BaseModel):
    """A permissions file (`permissions apply FILE`): which roles may run which commands, on
    which opportunities."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: list[PermissionRule] = Field(max_length=500)

    @field_validator("rules")
    @classmethod
    def _known(cls, rules: list[PermissionRule]) -> list[PermissionRule]:
        known = {*REGISTRY, *RIGHTS_BEYOND_COMMANDS, "*"}
        for rule in rules:
            unknown = [name for name in rule.commands if name not in known]
            if unknown:
                raise ValueError(
                    f"role {rule.role}: unknown command {unknown[0]!r}; commands are "
                    f"{', '.join(sorted(known))}"
                )
        return rules


T = TypeVar("T")


class Dated(BaseModel, Generic[T]):
    model_config = ConfigDict(frozen=True)

    value: T
    effective_from: datetime


class Directory(BaseModel):
    """What the workers load: keys, users' roles, permissions and the mode, each with the time
    it takes effect."""

    model_config = ConfigDict(frozen=True)

    keys: dict[str, SigningKey] = Field(default_factory=dict)
    roles: dict[str, list[Dated[list[str]]]] = Field(default_factory=dict)
    """Each user's roles over time, oldest first."""
    permissions: list[Dated[Permissions]] = Field(default_factory=list)
    modes: list[Dated[AuthMode]] = Field(default_factory=list)

    def mode_at(self, at: datetime) -> AuthMode:
        return _latest(self.modes, at) or "off"

    def permissions_at(self, at: datetime) -> Permissions:
        return _latest(self.permissions, at) or Permissions(rules=[])

    def roles_at(self, user_id: str, at: datetime) -> list[str]:
        return _latest(self.roles.get(user_id, []), at) or []


def _latest(dated: list[Dated[T]], at: datetime) -> T | None:
    found = None
    for item in dated:
        if item.effective_from <= at:
            found = item.value
    return found


def rights_of(command_name: str, command: Any, state: Opportunity) -> list[str]:
    """What a command needs the right to: its name, and `close_lost` / `close_won` when it
    moves the opportunity into a closing stage by hand."""
    needed = [command_name]
    if command_name == "change_stage":
        stage = getattr(command, "stage", None)
        definition = state.process.stage(stage) if stage else None
        if definition is not None and definition.closes_as == "lost":
            needed.append(CLOSE_LOST)
        elif definition is not None and definition.closes_as == "won":
            needed.append(CLOSE_WON)
    return needed


def _in_scope(scope: Scope, user: str, state: Opportunity) -> bool:
    if scope == "all":
        return True
    if scope == "own":
        return state.owner == user
    return state.owner == user or user in state.team.values()


def authorize(
    actor: Actor,
    roles: list[str],
    command_name: str,
    command: Any,
    state: Opportunity,
    permissions: Permissions,
) -> None:
    """Raise `CommandRejected` (`forbidden`) unless a rule of one of `roles` grants every
    right the command needs on this opportunity."""
    for right in rights_of(command_name, command, state):
        granting = [
            rule
            for rule in permissions.rules
            if rule.role in roles
            and (right in rule.commands or "*" in rule.commands)
            and _in_scope(rule.scope, actor.sub, state)
        ]
        if not granting:
            raise CommandRejected(
                f"{actor.sub} may not {right.replace('_', ' ')} opportunity "
                f"{state.opportunity_id}: {_why(actor, roles, right, state, permissions)}",
                code="forbidden",
            )


def _why(
    actor: Actor, roles: list[str], right: str, state: Opportunity, permissions: Permissions
) -> str:
    """The rule that came closest (its role and right, but not its scope), or what is
    missing."""
    if not roles:
        return "they have no role"
    near = [
        rule
        for rule in permissions.rules
        if rule.role in roles and (right in rule.commands or "*" in rule.commands)
    ]
    if near:
        return f"the rule ({near[0].describe()}) does not reach it (owner {state.owner})"
    return f"no rule of their roles ({', '.join(roles)}) grants {right}"


def authorize_open(
    actor: Actor, roles: list[str], owner: str | None, permissions: Permissions
) -> None:
    """Raise `CommandRejected` (`forbidden`) unless a rule of one of `roles` grants opening an
    opportunity of this owner (`own`: the actor themself)."""
    for rule in permissions.rules:
        if rule.role in roles and (OPEN in rule.commands or "*" in rule.commands):
            if rule.scope != "own" or owner == actor.sub:
                return
    raise CommandRejected(
        f"{actor.sub} may not open an opportunity"
        + (f" owned by {owner}" if owner else "")
        + f": no rule of their roles ({', '.join(roles) or 'none'}) grants it",
        code="forbidden",
    )


class Clearance(BaseModel):
    """What a command is judged by, as the directory says at the time it is applied: the
    mode, the verified actor (None: unsigned), and the actor's roles and the permissions."""

    model_config = ConfigDict(frozen=True)

    mode: AuthMode
    actor: Actor | None = None
    roles: list[str] = Field(default_factory=list)
    permissions: Permissions = Field(default_factory=lambda: Permissions(rules=[]))


def cleared(
    clearance: Clearance, name: str, command: Any, state: Opportunity
) -> tuple[Any, Actor | None]:
    """The command as it is applied, and the actor its history entries keep. `off`: as sent,
    no actor. `record`: as sent; an unsigned one with its `by` as an unverified actor.
    `enforce`: refused unless signed (`unauthenticated`), its `by` names its signer
    (`token_mismatch`) and the signer's roles allow it here (`forbidden`); `by` is set to the
    signer."""
    actor = clearance.actor
    if clearance.mode == "off":
        return command, None
    if clearance.mode == "record":
        return command, actor or Actor(sub=command.by or "unknown", verified=False)
    if actor is None:
        raise CommandRejected(
            f"{name} is not signed: authorization is enforced (header {HEADER})",
            code="unauthenticated",
        )
    if command.by not in (None, actor.sub):
        raise CommandRejected(
            f"by names {command.by}, but the command is signed for {actor.sub}",
            code="token_mismatch",
        )
    authorize(actor, clearance.roles, name, command, state, clearance.permissions)
    return command.model_copy(update={"by": actor.sub}), actor
