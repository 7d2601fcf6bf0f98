"""The activities of the shell tier, in memory: the same names and types as the real ones
(`activities/`), no PostgreSQL, no SMTP. Each test's worker has its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.opportunity_activities import Projected, ProjectionWrite, Setup, SetupRequest
from runtime.workflow_ids import opportunity_workflow_id
from sales.effects import CreateCalendarActivity, EffectOutcome, InviteToEvent, SendLetter
from sales.opportunity import Opportunity
from sales.process import FoundProcess, SalesProcess


@dataclass
class FakeActivities:
    client: Client
    processes: dict[str, SalesProcess]
    day_seconds: int = 86400
    users: set[str] = field(default_factory=lambda: {"ann", "bob"})
    rows: dict[str, ProjectionWrite] = field(default_factory=dict)
    """Each opportunity's projection, every write joined (`ProjectionWrite.__add__`)."""
    performed: list[Any] = field(default_factory=list)
    """The side effects performed, in order."""

    @activity.defn(name="load_setup")
    async def load_setup(self, request: SetupRequest) -> Setup:
        if request.opportunity_id in self.rows:
            raise ApplicationError("already exists", {"code": "already_exists"},
                                   type="AlreadyExists", non_retryable=True)  # fmt: skip
        process = self.processes.get(request.process_id or "", None)
        if process is None:
            raise ApplicationError("unknown process", {"code": "unknown_process"},
                                   type="UnknownProcess", non_retryable=True)  # fmt: skip
        return Setup(contact_name="Grace Hopper", process=process, day_seconds=self.day_seconds,
                     users=sorted(self.users))  # fmt: skip

    @activity.defn(name="load_closed")
    async def load_closed(self, opportunity_id: str) -> Opportunity:
        write = self.rows[opportunity_id]
        handle = self.client.get_workflow_handle(
            opportunity_workflow_id(opportunity_id), run_id=write.run_id, result_type=Opportunity
        )
        state: Opportunity = await handle.result()
        return state

    @activity.defn(name="find_process")
    async def find_process(self, process_id: str) -> FoundProcess:
        return FoundProcess(process=self.processes.get(process_id))

    @activity.defn(name="find_users")
    async def find_users(self, user_ids: list[str]) -> list[str]:
        return [user for user in user_ids if user in self.users]

    @activity.defn(name="project_opportunity")
    async def project_opportunity(self, write: ProjectionWrite) -> Projected:
        opportunity_id = write.summary.opportunity_id
        earlier = self.rows.get(opportunity_id)
        self.rows[opportunity_id] = write if earlier is None else earlier + write
        return Projected()

    @activity.defn(name="create_calendar_activity")
    async def create_calendar_activity(self, effect: CreateCalendarActivity) -> EffectOutcome:
        self.performed.append(effect)
        return EffectOutcome(status="created", activity_id=effect.activity_id)

    @activity.defn(name="send_letter")
    async def send_letter(self, effect: SendLetter) -> EffectOutcome:
        self.performed.append(effect)
        return EffectOutcome(status="filed")

    @activity.defn(name="invite_to_event")
    async def invite_to_event(self, effect: InviteToEvent) -> EffectOutcome:
        self.performed.append(effect)
        return EffectOutcome(status="invited")

    def all(self) -> list[Any]:
        return [
            self.load_setup,
            self.load_closed,
            self.find_process,
            self.find_users,
            self.project_opportunity,
            self.create_calendar_activity,
            self.send_letter,
            self.invite_to_event,
        ]
