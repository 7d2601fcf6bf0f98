"""Letters: Jinja2 templates merged with the contact and the opportunity, sent by e-mail when
SMTP is configured and the contact has an address, otherwise filed as a document to print.
Either way the letter is logged in `letters`. Templates are merged by `activities.rendering`,
outside the event loop and within limits: the rendered subject is one line of at most 500
characters, the body free text within the letter size limit.

Templates cannot starve each other: a worker renders at most `OPPORTUNITIES_TEMPLATE_CONCURRENCY`
letters of one template at once, and the others wait for its slot (heartbeating) while other
templates' letters go on. Per opportunity, effects already run one at a time (the workflow
performs them in order), so no second limit is needed there. A template whose renders run out
of time `SLOW_AFTER` times in a row is marked slow (`template list` shows it): its letters then
render one at a time per worker, and each that runs out of time still fails with
`template_error`, saying it is marked slow. A render that finishes in time, or `template add`
of a different body, clears the mark.

Exactly once: the letter row, keyed by (opportunity, action, generation), is written before
the e-mail is sent and marked sent after. A retry finds it: sent means done; not yet sent means
the outcome of the earlier attempt is unknown, so it sends again with the same deterministic
Message-ID, which mail systems use to drop the duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
from email.message import EmailMessage
from urllib.parse import unquote, urlparse

import aiosmtplib
import asyncpg
from pydantic import TypeAdapter, ValidationError
from temporalio import activity

from activities import rendering
from activities.failures import BadData, classified
from activities.heartbeat import heartbeating
from activities.rendering import (
    SAMPLE_VARIABLES,
    RenderedLetter,
    TemplateError,
    TemplateTimeout,
    check_template,
    render,
)
from sales.contact import Contact
from sales.effects import EffectOutcome, SendLetter
from sales.errors import describe_validation_error
from sales.validation import Identifier, free_text
from store import contacts, letters

MAX_TEMPLATE_BYTES = 64 * 1024
SLOW_AFTER = 3
"""Renders of a template in a row that run out of time before it is marked slow."""
AFTER_RENDER_SECONDS = 40.0
"""What an attempt keeps of its start-to-close for after the render: the mail server (its
30 s timeout) and the database. The rest, less the render's time limit, is how long a render
may wait for its template's slot (past it, `RendererBusy`: retried)."""
ATTEMPT_SECONDS = 90.0
"""An attempt's start-to-close when the activity info has none (the workflow sets 90 s)."""


_NAME: TypeAdapter[str] = TypeAdapter(Identifier)


async def put_template(pool: asyncpg.Pool, name: str, body: str) -> None:
    """Store a template once it parses and merges `SAMPLE_VARIABLES` within the renderer's
    limits; one that does not is refused with TemplateError and nothing is stored."""
    try:
        _NAME.validate_python(name)
        free_text(body)
    except (ValidationError, ValueError) as error:
        what = (
            describe_validation_error(error, "template name")
            if isinstance(error, ValidationError)
            else str(error)
        )
        raise TemplateError(what) from None
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"{size:,} bytes, over the limit of {MAX_TEMPLATE_BYTES:,}")
    check_template(body)
    await render(body, SAMPLE_VARIABLES, default_subject=name)
    await letters.put_template(pool, name, body)


class Mailer:
    """SMTP delivery from `SMTP_URL`: smtp://[user:password@]host[:port] (STARTTLS when the
    server offers it) or smtps://... (TLS from the start); sender `SMTP_FROM`."""

    def __init__(self, url: str, sender: str = "opportunities@localhost") -> None:
        parsed = urlparse(url)
        if parsed.scheme not in {"smtp", "smtps"} or not parsed.hostname:
            raise ValueError(f"SMTP_URL must look like smtp://host:port, not {url!r}")
        self.hostname = parsed.hostname
        self.use_tls = parsed.scheme == "smtps"
        self.port = parsed.port or (465 if self.use_tls else 25)
        self.username = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        self.sender = sender

    async def send(self, *, to: str, subject: str, body: str, message_id: str) -> None:
        message = EmailMessage()
        try:
            message["From"] = self.sender
            message["To"] = to
            message["Subject"] = subject
            message["Message-ID"] = message_id
            message.set_content(body)
        except ValueError as error:  # a header with CR or LF, an address that cannot be
            raise BadData(f"the e-mail cannot be built: {error}", "mail_refused") from None
        await aiosmtplib.send(
            message,
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.use_tls,
            timeout=30,
        )


def message_id_for(letter_id: str) -> str:
    """A deterministic Message-ID (a retry sends the same one, so mail systems drop the
    duplicate); hashed, because ids may hold characters a Message-ID may not."""
    return f"<letter.{hashlib.sha256(letter_id.encode()).hexdigest()[:32]}@opportunities>"


def _has_postal_address(contact: Contact) -> bool:
    return bool(contact.street and contact.city and contact.postal_code)


class LetterActivities:
    def __init__(self, pool: asyncpg.Pool, mailer: Mailer | None = None) -> None:
        self.pool = pool
        self.mailer = mailer

    @activity.defn(name="send_letter")
    @classified("send_letter")
    async def send_letter(self, effect: SendLetter) -> EffectOutcome:
        """Merge, log and send or file one letter; heartbeating throughout, including while
        its render waits for the template's slot."""
        return await heartbeating(self._send_letter(effect))

    async def _send_letter(self, effect: SendLetter) -> EffectOutcome:
        started = asyncio.get_running_loop().time()
        contact = await contacts.get_contact(self.pool, effect.contact_id)
        if contact is None:
            raise BadData(f"unknown contact {effect.contact_id!r}", "unknown_contact")
        template = await letters.get_template(self.pool, effect.template)
        if template is None:
            known = [t.name for t in await letters.list_templates(self.pool)][:20]
            raise BadData(
                f"unknown letter template {effect.template!r}; templates are {known}",
                "unknown_template",
            )
        context = effect.context
        try:
            letter = await render(
                template.body,
                {
                    "contact": contact.model_dump(),
                    "opportunity": {
                        "opportunity_id": context.opportunity_id,
                        "name": context.name,
                        "owner": context.owner,
                        "current_stage": context.current_stage,
                    },
                    "process": {"process_id": context.process_id, "name": context.process_name},
                },
                default_subject=effect.title,
                template=template.name,
                slow=template.slow,
                wait=_slot_wait(started),
            )
        except TemplateTimeout as error:
            raise BadData(
                f"letter template {effect.template!r} cannot be merged: {error}"
                f"{await self._timed_out(template)}",
                "template_error",
            ) from None
        except TemplateError as error:
            raise BadData(
                f"letter template {effect.template!r} cannot be merged: {error}", "template_error"
            ) from None
        if template.timeouts or template.slow:
            await letters.clear_timeouts(self.pool, template.name, template.body)

        if effect.method is not None:
            return await self._as_chosen(effect, effect.method, letter, contact)
        if self.mailer is not None and contact.email:
            return await self._email(effect, letter, contact.email)
        if not _has_postal_address(contact):
            why = "no e-mail address" if self.mailer else "no SMTP server configured"
            raise BadData(
                f"contact {contact.contact_id!r} cannot receive letter {effect.template!r}: "
                f"{why}, and no postal address (street, postal code and city) to print it for",
                "no_address",
            )
        await self._log(effect, letter, method="document", recipient=None, sent=True)
        return EffectOutcome(
            status="filed", message=f"letter {effect.letter_id} filed as a document to print"
        )

    async def _as_chosen(
        self, effect: SendLetter, method: str, letter: RenderedLetter, contact: Contact
    ) -> EffectOutcome:
        """The correspondence option the user chose: refused with the reasons when it cannot
        be carried out, nothing sent or filed."""
        problems = []
        if method in ("email", "both"):
            if self.mailer is None:
                problems.append("no SMTP server is configured")
            elif not contact.email:
                problems.append(f"contact {contact.contact_id!r} has no e-mail address")
        if method in ("document", "both") and not _has_postal_address(contact):
            problems.append(
                f"contact {contact.contact_id!r} has no postal address (street, postal code "
                "and city) to print it for"
            )
        if problems:
            raise BadData(
                f"letter {effect.template!r} cannot go out as {method}: {'; '.join(problems)}",
                "method_unavailable",
            )
        if method == "document":
            await self._log(effect, letter, method="document", recipient=None, sent=True)
            return EffectOutcome(
                status="filed", message=f"letter {effect.letter_id} filed as a document to print"
            )
        assert contact.email is not None
        outcome = await self._email(effect, letter, contact.email, method=method)
        if method == "both":
            outcome.message += " and filed as a document to print"
        return outcome

    async def _email(
        self, effect: SendLetter, letter: RenderedLetter, to: str, *, method: str = "email"
    ) -> EffectOutcome:
        assert self.mailer is not None
        row = await self._log(effect, letter, method=method, recipient=to, sent=False)
        if row["sent_at"] is None:
            await self.mailer.send(
                to=row["recipient"],
                subject=row["subject"],
                body=row["body"],
                message_id=row["message_id"],
            )
            await letters.mark_sent(self.pool, effect)
        return EffectOutcome(status="sent", message=f"letter {effect.letter_id} e-mailed to {to}")

    async def _log(
        self,
        effect: SendLetter,
        letter: RenderedLetter,
        *,
        method: str,
        recipient: str | None,
        sent: bool,
    ) -> asyncpg.Record:
        return await letters.log_letter(
            self.pool,
            effect,
            subject=letter.subject,
            body=letter.body,
            method=method,
            message_id=message_id_for(effect.letter_id) if method != "document" else None,
            recipient=recipient,
            sent=sent,
        )

    async def _timed_out(self, template: letters.Template) -> str:
        """Count the timeout; what the failure adds when the template is (now) slow."""
        now = await letters.record_timeout(
            self.pool, template.name, template.body, slow_after=SLOW_AFTER
        )
        if now is None or now.slow_since is None:
            return ""
        rendering.slow_down(template.name)
        return (
            f"; the template is marked slow ({now.timeouts} timeouts in a row, slow since "
            f"{now.slow_since:%Y-%m-%d %H:%M:%S %Z}), so its letters render one at a time"
        )

    def all(self) -> list:
        return [self.send_letter]


def _slot_wait(started: float) -> float:
    """Seconds a render may wait for a slot: what is left of the attempt's start-to-close
    after the render's time limit and `AFTER_RENDER_SECONDS`."""
    timeout = activity.info().start_to_close_timeout
    total = timeout.total_seconds() if timeout else ATTEMPT_SECONDS
    spent = asyncio.get_running_loop().time() - started
    return max(0.0, total - spent - rendering.time_limit() - AFTER_RENDER_SECONDS)
