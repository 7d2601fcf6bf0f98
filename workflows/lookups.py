"""What a command needs from outside the opportunity (`sales.registry.Needs`), looked up by
one step of the run before the core applies it: the process a command moves to, by an
activity as it is applied; the users commands name, a batch's at once, by one activity
before its commands are applied, then only users not seen yet. Users are never removed, so
one found stays found for the rest of the run (`MAX_KNOWN`); one not found is looked up
again in the next batch (it may have been added meanwhile). A small directory comes with a new
opportunity's setup, so a sales team's users are never looked up in its first run."""

from __future__ import annotations

from collections.abc import Iterable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sales import core
    from sales.commands import Command
    from sales.errors import CommandRejected
    from sales.opportunity import Opportunity
    from sales.process import FoundProcess
    from sales.registry import LookedUp, needs
    from workflows import effect_runner
    from workflows.messages import QueuedCommand

MAX_KNOWN = 1000
"""Users a run remembers having found."""


class Lookups:
    def __init__(self) -> None:
        self._known: set[str] = set()
        self._missing: set[str] = set()
        """Users this batch's lookup did not find."""

    def know(self, found: Iterable[str]) -> None:
        """Users known to exist (a small directory, as the opportunity opened)."""
        self._known.update(found)

    async def before_batch(self, items: Iterable[QueuedCommand]) -> None:
        """Look up at once the users the next batch's commands name."""
        named: set[str] = set()
        for item in items:
            try:
                named.update(needs(item.command()).user_ids)
            except CommandRejected:
                continue  # rejected in its turn
        self._missing = set()
        try:
            await self._look_up(sorted(named))
        except CommandRejected:
            pass  # not looked up now: each command looks its own up, or is rejected

    async def look_up(self, state: Opportunity, command: Command) -> LookedUp:
        """What `command` needs (`core.needs`), looked up; `CommandRejected` (`unavailable`)
        when it could not be."""
        wanted = core.needs(state, command)
        if not wanted:
            return LookedUp()
        process = FoundProcess()
        if wanted.process_id is not None:
            process = await effect_runner.find_process(wanted.process_id)
        users = None
        if wanted.user_ids:
            await self._look_up(list(wanted.user_ids))
            users = frozenset(user for user in wanted.user_ids if user in self._known)
        return LookedUp(process=process, users=users)

    async def _look_up(self, user_ids: list[str]) -> None:
        unknown = [u for u in user_ids if u not in self._known and u not in self._missing]
        if not unknown:
            return
        found = await effect_runner.find_users(unknown)
        if len(self._known) + len(found) > MAX_KNOWN:
            self._known.clear()
        self._known.update(found)
        self._missing.update(set(unknown) - set(found))
