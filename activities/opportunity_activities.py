"""Activities of the Opportunity workflow: loading its setup and writing its projection.

Each is idempotent: the workflow may run it again after a timeout, a worker crash or a replay,
and the database ends up the same as after one run.
"""

from __future__ import annotations

import os

import asyncpg
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.failures import classified
from sales.effects import CalendarChange
from sales.opportunity import HistoryEntry, OpportunitySummary
from sales.process import FoundProcess, SalesProcess
from store import contacts, opportunities, processes, users


class SetupRequest(BaseModel):
    contact_id: str
    process_id: str | None = None


class Setup(BaseModel):
    """What a new opportunity needs: its process version and how to name its contact.

    Only the display name travels, not the contact record: the e-mail and postal address stay
    in PostgreSQL instead of being copied into workflow history.
    """

    contact_name: str
    process: SalesProcess
    day_seconds: int = 86400
    """`OPPORTUNITIES_DAY_SECONDS` of the worker: the length of a day for stage timers."""


class ProjectionWrite(BaseModel):
    """What a batch of commands changed in the read model: the opportunity's row, its new
    history entries, and the changes to calendar activities it already has (creating one is
    an effect of its own)."""

    summary: OpportunitySummary
    history: list[HistoryEntry] = Field(default_factory=list)
    calendar: list[CalendarChange] = Field(default_factory=list)

    def __add__(self, later: ProjectionWrite) -> ProjectionWrite:
        """This write followed by a later one (a write that failed joins the next)."""
        return ProjectionWrite(
            summary=later.summary,
            history=[*self.history, *later.history],
            calendar=[*self.calendar, *later.calendar],
        )


class OpportunityActivities:
    """Holds the connection pool; one instance serves every workflow of the worker."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="load_setup")
    @classified("load_setup")
    async def load_setup(self, request: SetupRequest) -> Setup:
        """The contact and the process version a new opportunity starts with.

        Unknown ids are not worth retrying: the error is non-retryable and names what is
        unknown, so the start fails at once and nothing is written.
        """
        contact = await contacts.get_contact(self.pool, request.contact_id)
        if contact is None:
            raise ApplicationError(
                f"unknown contact {request.contact_id!r}", type="UnknownContact", non_retryable=True
            )
        if request.process_id is None:
            process = await processes.default_process(self.pool)
            if process is None:
                raise ApplicationError(
                    "no process_id given and no default process is set up; processes are "
                    f"{await processes.process_ids(self.pool)}",
                    type="UnknownProcess",
                    non_retryable=True,
                )
        else:
            found = await processes.find(self.pool, request.process_id)
            process = found.process
            if process is None:
                raise ApplicationError(
                    f"unknown process {request.process_id!r}; processes are "
                    f"{await processes.process_ids(self.pool)}",
                    type="UnknownProcess",
                    non_retryable=True,
                )
            if found.retired:
                raise ApplicationError(
                    f"process {request.process_id!r} is retired: it takes no new opportunities",
                    type="RetiredProcess",
                    non_retryable=True,
                )
        return Setup(
            contact_name=contact.full_name,
            process=process,
            day_seconds=int(os.environ.get("OPPORTUNITIES_DAY_SECONDS") or 86400),
        )

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
    async def project_opportunity(self, write: ProjectionWrite) -> None:
        await opportunities.project_opportunity(
            self.pool, write.summary, write.history, write.calendar
        )

    def all(self) -> list:
        """The activity callables to register on a worker."""
        return [self.load_setup, self.find_process, self.find_users, self.project_opportunity]
