"""Opportunity Setup and reference data: processes, contacts, events, letter templates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from rich.text import Text

from activities import rendering
from activities.letters import put_template
from runtime.escaping import escaped
from sales.contact import Contact
from sales.errors import describe_problems, describe_validation_error
from sales.process import Action, ProcessDefinition
from sales.validation import MAX_PROCESS_BYTES, Identifier
from starter.cli.common import (
    JsonFlag,
    UserError,
    console,
    database,
    json_size_over,
    load_document,
    new_app,
    new_table,
    print_fields,
    print_json,
    print_table,
    read_text,
    run,
    styled,
    validated,
)
from store import contacts, events, letters, processes, users
from store.events import Event

IDENTIFIER = TypeAdapter(Identifier)

process_app = new_app("Opportunity Setup: sales processes.")
contact_app = new_app("Contacts.")
event_app = new_app("Events a contact can be invited to.")
template_app = new_app("Letter templates (Jinja2).")
letter_app = new_app("Letters written for opportunities: e-mailed, or filed to print.")
user_app = new_app("Users: who owns opportunities, plays their roles and does their activities.")


# --- processes --------------------------------------------------------------------------------


@process_app.command("apply")
def process_apply(
    file: Path,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Store it even if a letter template or event it names does not exist yet.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Store a process definition (JSON or YAML); a changed one becomes a new version."""
    document = load_document(file)
    if json_size_over(document, MAX_PROCESS_BYTES):  # before validating: errors by the thousand
        raise UserError(
            f"process definition {file} is too large: at most {MAX_PROCESS_BYTES:,} bytes as JSON"
        )
    definition = validated(ProcessDefinition, f"process definition {file}", document)

    async def work() -> None:
        async with database() as pool:
            missing = await processes.missing_references(pool, definition)
            if missing and not allow_missing:
                raise UserError(
                    f"process {definition.process_id!r} names what does not exist: "
                    f"{', '.join(missing)}; add them first (`template add`, `event add`), "
                    "or pass --allow-missing"
                )
            process, created = await processes.apply_process(pool, definition)
        result = {
            "process_id": definition.process_id,
            "version": process.version,
            "created": created,
        }
        if as_json:
            print_json(result)
        else:
            what = "new version" if created else "unchanged, still version"
            console.print(f"{definition.process_id}: {what} {process.version}", highlight=False)

    run(work)


@process_app.command("retire")
def process_retire(
    process_id: str,
    undo: Annotated[bool, typer.Option("--undo", help="Take new opportunities again.")] = False,
) -> None:
    """Retire a process: it takes no new opportunities; the running ones go on."""

    async def work() -> None:
        async with database() as pool:
            changed = await processes.retire(pool, process_id, retired=not undo)
        state = "takes new opportunities" if undo else "retired"
        console.print(f"{process_id}: {state}" + ("" if changed else " (already)"), highlight=False)

    run(work)


@process_app.command("copy")
def process_copy(
    process_id: str,
    new_id: str,
    name: Annotated[str | None, typer.Option("--name", help="Default: the same name.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Copy a process's latest version to a new process (version 1, not the default)."""
    try:
        IDENTIFIER.validate_python(new_id)
    except ValidationError as error:
        raise UserError(describe_validation_error(error, "process id")) from None

    async def work() -> None:
        async with database() as pool:
            process = await processes.copy_process(pool, process_id, new_id, name)
        if as_json:
            print_json({"process_id": new_id, "version": process.version})
        else:
            console.print(f"{new_id}: copied from {process_id} as version 1", highlight=False)

    run(work)


@process_app.command("list")
def process_list(as_json: JsonFlag = False) -> None:
    """The processes, each in its latest version."""

    async def work() -> None:
        async with database() as pool:
            found = await processes.list_processes(pool)
        if as_json:
            print_json(found)
            return
        table = new_table("process", "name", "version", "default", "retired", "stages")
        for p in found:
            table.add_row(
                p.process_id,
                p.name,
                str(p.version),
                "yes" if p.is_default else "",
                "yes" if p.retired else "",
                " → ".join(p.stages),
            )
        print_table(table)

    run(work)


@process_app.command("show")
def process_show(
    process_id: str,
    version: Annotated[
        int | None, typer.Option(help="A stored version; default the latest.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """One process definition with its stages and actions."""

    async def work() -> None:
        async with database() as pool:
            process = await processes.get_process(pool, process_id, version)
            known = await processes.process_ids(pool)
            stored = await processes.versions(pool, process_id)
        if process is None and stored:
            raise UserError(
                f"process {process_id!r} has no version {version}; its versions are "
                + ", ".join(map(str, stored))
            )
        if process is None:
            raise UserError(f"unknown process {process_id!r}; processes are {known}")
        if as_json:
            print_json({"version": process.version, **process.definition.model_dump(mode="json")})
            return
        d = process.definition
        console.print(styled(d.name, "bold"), f"({d.process_id} v{process.version})")
        flags = [
            f"default: {d.default}",
            f"change stage automatically: {d.change_stage_automatically}",
            f"allow cancel activities: {d.allow_cancel_activities}",
        ]
        console.print(", ".join(flags), highlight=False)
        table = new_table("stage", "probability", "closes as", "action", "type", "title")
        for stage in d.stages:
            actions: list[Action | None] = [*stage.actions] or [None]
            for index, action in enumerate(actions):
                first = index == 0
                table.add_row(
                    stage.name if first else "",
                    f"{stage.probability}%" if first else "",
                    (stage.closes_as or "") if first else "",
                    action.action_id if action else "",
                    action.type if action else "",
                    action.title if action else "",
                )
        print_table(table)
        if d.outcome_stages:
            mapping = ", ".join(f"{o!r} → {s}" for o, s in d.outcome_stages.items())
            console.print(f"outcome stages: {mapping}", highlight=False)

    run(work)


# --- contacts ---------------------------------------------------------------------------------


@contact_app.command("add")
def contact_add(
    contact_id: Annotated[str, typer.Option("--id", help="The contact's id.")],
    first_name: Annotated[str, typer.Option("--first-name")],
    last_name: Annotated[str, typer.Option("--last-name")],
    email: Annotated[str | None, typer.Option("--email")] = None,
    street: Annotated[str | None, typer.Option("--street")] = None,
    city: Annotated[str | None, typer.Option("--city")] = None,
    postal_code: Annotated[str | None, typer.Option("--postal-code")] = None,
    country: Annotated[str | None, typer.Option("--country")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a contact (adding the same contact again changes nothing)."""
    contact = validated(Contact, "contact", {
        "contact_id": contact_id, "first_name": first_name, "last_name": last_name,
        "email": email, "street": street, "city": city, "postal_code": postal_code,
        "country": country,
    })  # fmt: skip

    async def work() -> None:
        async with database() as pool:
            added = await contacts.add_contact(pool, contact)
        if as_json:
            print_json({"contact_id": contact_id, "added": added})
        else:
            console.print(f"{contact_id}: {'added' if added else 'unchanged'}", highlight=False)

    run(work)


@contact_app.command("modify")
def contact_modify(
    contact_id: str,
    first_name: Annotated[str | None, typer.Option("--first-name")] = None,
    last_name: Annotated[str | None, typer.Option("--last-name")] = None,
    email: Annotated[str | None, typer.Option("--email", help='"" removes it.')] = None,
    street: Annotated[str | None, typer.Option("--street", help='"" removes it.')] = None,
    city: Annotated[str | None, typer.Option("--city", help='"" removes it.')] = None,
    postal_code: Annotated[str | None, typer.Option("--postal-code", help='"" removes it.')] = None,
    country: Annotated[str | None, typer.Option("--country", help='"" removes it.')] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a contact's details (the ones given, validated as `add` does; the others are
    kept as they are, so a bad one stored can be repaired). Open opportunities use them for
    the letters they write from now on."""
    given = {
        "first_name": first_name, "last_name": last_name, "email": email, "street": street,
        "city": city, "postal_code": postal_code, "country": country,
    }  # fmt: skip
    required = {"first_name", "last_name"}  # "" removes an optional field only
    changes = {
        field: value if field in required else value or None
        for field, value in given.items()
        if value is not None
    }
    if not changes:
        raise UserError("nothing to change: give at least one of the options (see --help)")

    async def work() -> None:
        async with database() as pool:
            stored = await contacts.stored_contact(pool, contact_id)
            if stored is None:
                raise UserError(f"unknown contact {contact_id!r}")
            valid = _valid_changes(stored, changes)
            changed = await contacts.modify_contact(pool, contact_id, valid)
            contact = stored | valid
        if as_json:
            print_json({"contact_id": contact_id, "changed": changed, "contact": contact})
        else:
            console.print(f"{contact_id}: {'changed' if changed else 'unchanged'}", highlight=False)

    run(work)


CONTACT_FIELDS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]
    for name, field in Contact.model_fields.items()
}
"""Each contact field's validation on its own, as `Contact` makes it."""


def _valid_changes(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The changes validated field by field as `add` validates them (an e-mail address comes
    back normalized), and the contact as a whole for what must hold together; a one-line
    `UserError` for what is invalid. A field left as it is is not checked, so that a contact
    stored with bad data (by hand, or before today's rules) can be repaired field by field."""
    problems: list[ErrorDetails] = []
    valid = {}
    for name, value in changes.items():
        try:
            valid[name] = CONTACT_FIELDS[name].validate_python(value)
        except ValidationError as error:
            for problem in error.errors(include_url=False):
                problem["loc"] = (name, *problem["loc"])
                problems.append(problem)
    if not problems:
        try:
            Contact.model_validate(stored | valid)
        except ValidationError as error:
            problems = [
                problem
                for problem in error.errors(include_url=False)
                if not problem["loc"] or problem["loc"][0] in changes
            ]
    if problems:
        raise UserError(describe_problems(problems, "contact"))
    return valid


@contact_app.command("show")
def contact_show(contact_id: str, as_json: JsonFlag = False) -> None:
    """One contact's details."""

    async def work() -> None:
        async with database() as pool:
            contact = await contacts.get_contact(pool, contact_id)
        if contact is None:
            raise UserError(f"unknown contact {contact_id!r}")
        if as_json:
            print_json(contact)
            return
        address = [contact.street, contact.postal_code, contact.city, contact.country]
        print_fields({
            "Contact": contact.contact_id,
            "Name": contact.full_name,
            "E-mail": contact.email or "-",
            "Address": ", ".join(x for x in address if x) or "-",
        })  # fmt: skip

    run(work)


@contact_app.command("delete")
def contact_delete(contact_id: str) -> None:
    """Delete a contact that no opportunity, letter, calendar activity or invitation refers to."""

    async def work() -> None:
        async with database() as pool:
            await contacts.delete_contact(pool, contact_id)
        console.print(f"{contact_id}: deleted", highlight=False)

    run(work)


@contact_app.command("list")
def contact_list(as_json: JsonFlag = False) -> None:
    """The contacts."""

    async def work() -> None:
        async with database() as pool:
            found = await contacts.list_contacts(pool)
        if as_json:
            print_json(found)
            return
        table = new_table("contact", "name", "email", "address")
        for c in found:
            address = ", ".join(x for x in (c.street, c.postal_code, c.city, c.country) if x)
            table.add_row(c.contact_id, c.full_name, c.email or "", address)
        print_table(table)

    run(work)


# --- events -----------------------------------------------------------------------------------


@event_app.command("add")
def event_add(
    event_id: Annotated[str, typer.Option("--id", help="The event's id.")],
    name: Annotated[str, typer.Option("--name")],
    starts_at: Annotated[str, typer.Option("--starts-at", help="ISO-8601, e.g. 2027-01-15T18:00Z")],
    as_json: JsonFlag = False,
) -> None:
    """Add an event (adding the same event again changes nothing)."""
    event = validated(Event, "event", {"event_id": event_id, "name": name, "starts_at": starts_at})
    if event.starts_at.tzinfo is None:
        raise UserError(f"--starts-at {starts_at!r} needs a time zone, e.g. {starts_at}Z")

    async def work() -> None:
        async with database() as pool:
            added = await events.add_event(pool, event)
        if as_json:
            print_json({"event_id": event_id, "added": added})
        else:
            console.print(f"{event_id}: {'added' if added else 'unchanged'}", highlight=False)

    run(work)


@event_app.command("list")
def event_list(as_json: JsonFlag = False) -> None:
    """The events, soonest first."""

    async def work() -> None:
        async with database() as pool:
            found = await events.list_events(pool)
        if as_json:
            print_json(found)
            return
        table = new_table("event", "name", "starts at")
        for event in found:
            table.add_row(event.event_id, event.name, f"{event.starts_at:%Y-%m-%d %H:%M %Z}")
        print_table(table)

    run(work)


@event_app.command("invitees")
def event_invitees(event_id: str, as_json: JsonFlag = False) -> None:
    """The contacts on an event's invitee list."""

    async def work() -> None:
        async with database() as pool:
            if await events.get_event(pool, event_id) is None:
                raise UserError(f"unknown event {event_id!r}")
            invitees = await events.list_invitees(pool, event_id)
        if as_json:
            print_json(invitees)
            return
        table = new_table("contact", "opportunity", "invited at", title=f"Invitees of {event_id}")
        for invitee in invitees:
            table.add_row(
                invitee.contact_id,
                invitee.opportunity_id or "",
                f"{invitee.invited_at:%Y-%m-%d %H:%M}",
            )
        print_table(table)

    run(work)


# --- letter templates -------------------------------------------------------------------------


@template_app.command("add")
def template_add(name: str, file: Path, as_json: JsonFlag = False) -> None:
    """Store (or replace) a Jinja2 letter template; a first line `Subject: ...` is the subject.

    The template is first merged with sample data, within the renderer's limits (64 KiB of
    template, the letter size and time limits); one that fails is refused and not stored.

    Templates see `contact` (first_name, last_name, email, street, city, postal_code, country),
    `opportunity` (opportunity_id, name, owner, current_stage) and `process` (process_id, name).
    """
    body = read_text(file)

    async def work() -> None:
        async with database() as pool:
            try:
                await put_template(pool, name, body)
            except rendering.TemplateError as error:
                raise UserError(f"template {file} cannot be used: {error}") from None
            except rendering.RendererUnavailable as error:
                raise UserError(f"template {file} could not be checked: {error}") from None
        if as_json:
            print_json({"name": name, "stored": True})
        else:
            console.print(f"template {name!r} stored", highlight=False)

    run(work)


@template_app.command("list")
def template_list(as_json: JsonFlag = False) -> None:
    """The letter templates, and which are slow: a template whose renders ran out of time 3
    times in a row renders one letter at a time per worker until one finishes in time or a
    new body is added (`timeouts` in a row, `slow_since` in --json)."""

    async def work() -> None:
        async with database() as pool:
            found = await letters.list_templates(pool)
        if as_json:
            print_json(found)
            return
        table = new_table("template", "first line", "updated", "slow")
        for template in found:
            first = template.body.splitlines()[0] if template.body else ""
            updated = f"{template.updated_at:%Y-%m-%d %H:%M}" if template.updated_at else ""
            table.add_row(template.name, first, updated, _slowness(template))
        print_table(table)

    run(work)


def _slowness(template: letters.Template) -> str:
    """`since <when> (<n> timeouts in a row)`, `no (<n> timeouts in a row)` or nothing."""
    if not template.timeouts and template.slow_since is None:
        return ""
    count = f"{template.timeouts} timeout{'s' if template.timeouts != 1 else ''} in a row"
    if template.slow_since is None:
        return f"no ({count})"
    return f"since {template.slow_since:%Y-%m-%d %H:%M} ({count})"


# --- letters ----------------------------------------------------------------------------------


@letter_app.command("list")
def letter_list(
    opportunity: Annotated[str | None, typer.Option("--opportunity", help="Of one.")] = None,
    status: Annotated[
        letters.LetterStatus | None,
        typer.Option("--status", help="sent (e-mailed), filed (to print) or pending."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Letters, newest first."""

    async def work() -> None:
        async with database() as pool:
            found = await letters.find_letters(pool, opportunity_id=opportunity, status=status)
        if as_json:
            print_json(found)
            return
        table = new_table("letter", "opportunity", "template", "status", "to", "written")
        for letter in found:
            table.add_row(
                letter.letter_id,
                letter.opportunity_id,
                letter.template,
                letter.status,
                letter.recipient or "",
                f"{letter.created_at:%Y-%m-%d %H:%M}",
            )
        print_table(table)

    run(work)


@letter_app.command("show")
def letter_show(letter_id: str, as_json: JsonFlag = False) -> None:
    """One letter: how it went out, and its text."""

    async def work() -> None:
        async with database() as pool:
            letter = await letters.get_letter(pool, letter_id)
        if letter is None:
            raise UserError(f"unknown letter {letter_id!r}; `letter list` shows them")
        if as_json:
            print_json(letter)
            return
        how = {"filed": "filed as a document to print", "sent": "e-mailed", "pending": "to e-mail"}
        when = "Filed at" if letter.status == "filed" else "Sent at"
        print_fields({
            "Letter": letter.letter_id,
            "Opportunity": f"{letter.opportunity_id} (action {letter.action_id})",
            "Contact": letter.contact_id,
            "Template": letter.template,
            "Status": how.get(letter.status, letter.status),
            "Method": letter.method,
            "To": letter.recipient,
            when: f"{letter.sent_at:%Y-%m-%d %H:%M %Z}" if letter.sent_at else None,
            "Subject": letter.subject,
        })  # fmt: skip
        console.print()
        console.print(Text(escaped(letter.body, newlines=True)), highlight=False)  # its lines

    run(work)


# --- users ------------------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    user_id: Annotated[str, typer.Option("--id", help="The user's id (as owners name them).")],
    name: Annotated[str, typer.Option("--name")],
    email: Annotated[str | None, typer.Option("--email")] = None,
    roles: Annotated[
        list[str] | None, typer.Option("--role", help="A role the user plays (repeatable).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a user, or change one's name, e-mail and roles."""
    user = validated(users.User, "user", {
        "user_id": user_id, "name": name, "email": email, "roles": roles or []})  # fmt: skip

    async def work() -> None:
        async with database() as pool:
            added = await users.put_user(pool, user)
        if as_json:
            print_json({"user_id": user_id, "added": added})
        else:
            console.print(f"{user_id}: {'added' if added else 'changed'}", highlight=False)

    run(work)


@user_app.command("list")
def user_list(
    role: Annotated[str | None, typer.Option("--role", help="Only those playing it.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The users and their roles."""

    async def work() -> None:
        async with database() as pool:
            found = await users.list_users(pool, role)
        if as_json:
            print_json(found)
            return
        table = new_table("user", "name", "email", "roles")
        for user in found:
            table.add_row(user.user_id, user.name, user.email or "", ", ".join(user.roles))
        print_table(table)

    run(work)
