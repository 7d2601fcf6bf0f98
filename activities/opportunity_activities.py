"""Activities of the Opportunity workflow: loading its setup (or, for a reopening, the closed
run's state), looking up processes and users, and writing its projection.

Each is idempotent: the workflow may run it again after a timeout, a worker crash or a replay,
and the database ends up the same as after one run.
"""

from __future__ import annotations

import os

import asyncpg
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.failures import classified, classify
from runtime.workflow_ids import opportunity_workflow_id
from sales.effects import CalendarChange
from sales.errors import with_code
from sales.events import OpportunityEvent
from sales.opportunity import (
    MAX_HISTORY,
    DeadLetter,
    DetailChange,
    HistoryEntry,
    Opportunity,
    OpportunitySummary,
    Remark,
    StageLeft,
)
from sales.process import FoundProcess, SalesProcess
from sales.validation import IdText, LineText
from sales.value import Currency
from store import contacts, opportunities, processes, users

MAX_DIRECTORY = 100
"""A user directory this small travels with a new opportunity's setup (`Setup.users`)."""
MAX_WRITE_ITEMS = 5000
"""History entries, calendar changes or remarks one write may carry (a write is also bounded
by its size: `workflows.projection.WRITE_BUDGET`)."""


class SetupRequest(BaseModel):
    opportunity_id: IdText
    contact_id: IdText
    process_id: IdText | None = None
    owner: LineText | None = None


class Setup(BaseModel):
    """What a new opportunity needs: its process version and how to name its contact.

    Only the display name travels, not the contact record: the e-mail and postal address stay
    in PostgreSQL instead of being copied into workflow history.
    """

    contact_name: LineText
    process: SalesProcess
    day_seconds: int = 86400
    """`OPPORTUNITIES_DAY_SECONDS` of the worker: the length of a day for stage timers."""
    currency: Currency = "USD"
    """`OPPORTUNITIES_CURRENCY` of the worker: the currency of an opportunity opened without
    one."""
    users: list[IdText] = Field(default_factory=list, max_length=MAX_DIRECTORY)
    """Every user, when there are at most `MAX_DIRECTORY` (a sales team): the opportunity
    knows them as it opens, so its commands naming them need no lookup (users are never
    removed; one added later is looked up when named)."""


class ProjectionWrite(BaseModel):
    """What a batch of commands changed in the read model: the opportunity's row, its new
    history entries and remarks, and the changes to calendar activities it already has
    (creating one is an effect of its own); `run_id`: the run that writes."""

    summary: OpportunitySummary
    history: list[HistoryEntry] = Field(default_factory=list, max_length=MAX_WRITE_ITEMS)
    calendar: list[CalendarChange] = Field(default_factory=list, max_length=MAX_WRITE_ITEMS)
    remarks: list[Remark] = Field(default_factory=list, max_length=MAX_WRITE_ITEMS)
    left: list[StageLeft] = Field(default_factory=list, max_length=MAX_WRITE_ITEMS)
    """Stays ended: when the stage an earlier history entry entered was left."""
    details: list[DetailChange] = Field(default_factory=list, max_length=MAX_WRITE_ITEMS)
    events: list[OpportunityEvent] = Field(default_factory=list, max_length=MAX_WRITE_ITEMS)
    """The outbox's events of what this write records."""
    run_id: IdText | None = None

    def __add__(self, later: ProjectionWrite) -> ProjectionWrite:
        """This write followed by a later one (a write that failed joins the next)."""
        return ProjectionWrite(
            summary=later.summary,
            history=[*self.history, *later.history],
            calendar=[*self.calendar, *later.calendar],
            remarks=[*self.remarks, *later.remarks],
            left=[*self.left, *later.left],
            details=[*self.details, *later.details],
            events=[*self.events, *later.events],
            run_id=later.run_id or self.run_id,
        )


class Projected(BaseModel):
    """What a projection write did: the parts the read model refused (each kept in its
    `dead_letters` table), if any."""

    dead_letters: list[DeadLetter] = Field(default_factory=list, max_length=MAX_WRITE_ITEMS)


def _refused(message: str, kind: str, code: str) -> ApplicationError:
    """A start refused for good: its code first in the message and in the details."""
    return ApplicationError(with_code(code, message), {"code": code}, type=kind,
                            non_retryable=True)  # fmt: skip


class OpportunityActivities:
    """Holds the connection pool and the Temporal client; one instance serves every workflow
    of the worker."""

    def __init__(self, pool: asyncpg.Pool, client: Client | None = None) -> None:
        self.pool = pool
        self.client = client

    @activity.defn(name="load_setup")
    @classified("load_setup")
    async def load_setup(self, request: SetupRequest) -> Setup:
        """The contact and the process version a new opportunity starts with.

        An id the read model already has (any status: ids are used once), an unknown
        contact, process or owner is not worth retrying: the error is non-retryable and names
        it, so the start fails at once and nothing is written.
        """
        found = await opportunities.find_run(self.pool, request.opportunity_id)
        if found is not None:
            raise _refused(
                f"opportunity {request.opportunity_id!r} already exists ({found[0]}); an "
                "opportunity id is used once: open it under another id, or reopen it",
                "AlreadyExists",
                "already_exists",
            )
        contact = await contacts.get_contact(self.pool, request.contact_id)
        if contact is None:
            raise _refused(
                f"unknown contact {request.contact_id!r}", "UnknownContact", "unknown_contact"
            )
        if request.owner is not None and not await users.existing(self.pool, [request.owner]):
            raise _refused(
                f"unknown user {request.owner!r} as owner; `opportunities user add` adds one",
                "UnknownUser",
                "unknown_user",
            )
        if request.process_id is None:
            process = await processes.default_process(self.pool)
            if process is None:
                raise _refused(
                    "no process_id given and no default process is set up; processes are "
                    f"{await processes.process_ids(self.pool)}",
                    "UnknownProcess",
                    "unknown_process",
                )
        else:
            found_process = await processes.find(self.pool, request.process_id)
            process = found_process.process
            if process is None:
                raise _refused(
                    f"unknown process {request.process_id!r}; processes are "
                    f"{await processes.process_ids(self.pool)}",
                    "UnknownProcess",
                    "unknown_process",
                )
            if found_process.retired:
                raise _refused(
                    f"process {request.process_id!r} is retired: it takes no new opportunities",
                    "RetiredProcess",
                    "not_allowed",
                )
        return Setup(
            contact_name=contact.full_name,
            process=process,
            day_seconds=int(os.environ.get("OPPORTUNITIES_DAY_SECONDS") or 86400),
            currency=os.environ.get("OPPORTUNITIES_CURRENCY") or "USD",
            users=await users.directory(self.pool, MAX_DIRECTORY) or [],
        )

    @activity.defn(name="load_closed")
    @classified("load_closed")
    async def load_closed(self, opportunity_id: str) -> Opportunity:
        """A won or lost opportunity's state, as its real run (the one the read model names)
        ended with: what a reopening starts from. Nothing else may say what it was."""
        found = await opportunities.find_run(self.pool, opportunity_id)
        if found is None:
            raise _refused(f"no opportunity {opportunity_id!r}", "UnknownOpportunity",
                           "not_allowed")  # fmt: skip
        status, run_id = found
        if status == "open":
            raise _refused(
                f"opportunity {opportunity_id!r} is open; only a won or lost one can be "
                "reopened",
                "NotClosed",
                "not_closed",
            )
        if status == "deleted":
            raise _refused(
                f"opportunity {opportunity_id!r} was deleted; it cannot be reopened",
                "NotAllowed",
                "not_allowed",
            )
        assert self.client is not None, "load_closed needs a Temporal client"
        handle = self.client.get_workflow_handle(
            opportunity_workflow_id(opportunity_id), run_id=run_id, result_type=Opportunity
        )
        state: Opportunity = await handle.result()
        return state

    @activity.defn(name="find_process")
    @classified("find_process")
    async def find_process(self, process_id: str) -> FoundProcess:
        """A process's latest version by id (none: unknown), and whether it is retired."""
        return await processes.find(self.pool, process_id)

    @activity.defn(name="find_users")
    @classified("find_users")
    async def find_users(self, user_ids: list[str]) -> list[str]:
        """Of these user ids, those `user add` added."""
        return await users.existing(self.pool, user_ids)

    @activity.defn(name="project_opportunity")
    @classified("project_opportunity")
    async def project_opportunity(self, write: ProjectionWrite) -> Projected:
        """Write the read model in one transaction; when the database refuses a part as bad
        data, again part by part, keeping what it refuses in `dead_letters` and writing the
        rest."""
        parts = (write.summary, write.history, write.calendar, write.remarks, write.run_id)
        try:
            await opportunities.project_opportunity(
                self.pool, *parts, left=write.left, details=write.details, events=write.events
            )
        except Exception as error:
            if classify(error) != "bad_data":
                raise
        else:
            _count_events(len(write.events))
            return Projected()
        dead = await opportunities.project_part_by_part(
            self.pool, *parts, refused=lambda error: classify(error) == "bad_data",
            left=write.left, details=write.details, events=write.events,
        )  # fmt: skip
        _count_events(len(write.events))
        return Projected(dead_letters=dead[:MAX_HISTORY])

    def all(self) -> list:
        """The activity callables to register on a worker."""
        return [
            self.load_setup,
            self.load_closed,
            self.find_process,
            self.find_users,
            self.project_opportunity,
        ]


EVENTS_WRITTEN = "opportunities_events_written"


def _count_events(count: int) -> None:
    """Events written to the outbox (a write tried again after it committed counts again)."""
    if count:
        activity.metric_meter().create_counter(
            EVENTS_WRITTEN, "Opportunity events written to the outbox"
        ).add(count)
