"""A worker keeps one copy of each process version for all its cached opportunities."""

from __future__ import annotations

from datetime import UTC, datetime

from sales import core
from sales.opportunity import Opportunity, StartOpportunity
from sales.process import ProcessDefinition, SalesProcess
from tests.support.helpers import example_definition
from workflows.shared_processes import SharedProcesses


def test_cached_opportunities_share_one_copy_of_each_process_version() -> None:
    """Two opportunities on the same process version hold one definition object (each
    parsed its own); another version keeps its own; the states are otherwise untouched."""

    def opened(opportunity_id: str, version: int) -> Opportunity:
        document = example_definition("shared-process-test")
        process = SalesProcess(version=version, definition=ProcessDefinition(**document))
        start = StartOpportunity(opportunity_id=opportunity_id, contact_id="c-1")
        return core.open_opportunity(start, process, datetime(2026, 11, 28, tzinfo=UTC)).state

    first, second, other = opened("o-1", 1), opened("o-2", 1), opened("o-3", 2)
    assert first.process is not second.process and first.process == second.process
    before = second.model_dump()
    processes = SharedProcesses()
    shared = [processes.share(state) for state in (first, second, other)]
    assert shared[1].process is shared[0].process
    assert shared[2].process is not shared[0].process
    assert shared[1].model_dump() == before


def test_action_states_share_the_process_actions_unless_modified() -> None:
    """Each action state's definition is the shared process's (the opening builds them from
    the process it parsed, which would otherwise stay alive through them); an action whose
    definition differs (modified by an operator) keeps its own."""

    def opened(opportunity_id: str) -> Opportunity:
        document = example_definition("shared-actions-test")
        process = SalesProcess(version=1, definition=ProcessDefinition(**document))
        start = StartOpportunity(opportunity_id=opportunity_id, contact_id="c-1")
        return core.open_opportunity(start, process, datetime(2026, 11, 28, tzinfo=UTC)).state

    first, second = opened("o-1"), opened("o-2")
    modified = second.stages[0].actions[0]
    modified.definition = modified.definition.model_copy(update={"title": "Call twice"})
    before = second.model_dump()
    processes = SharedProcesses()
    processes.share(first)
    processes.share(second)
    shared = {
        (stage.name, action.action_id): action
        for stage in first.process.stages
        for action in stage.actions
    }
    for state in (first, second):
        for stage in state.stages:
            for action in stage.actions:
                if action is not modified:
                    assert action.definition is shared[(stage.name, action.action_id)]
    assert modified.definition.title == "Call twice"
    assert modified.definition is not shared[(second.stages[0].name, modified.action_id)]
    assert second.model_dump() == before


def test_the_copies_are_bounded_keeping_the_most_recently_used() -> None:
    """At most `size` versions are kept; the one used longest ago goes first, and a state of
    a version no longer kept gets a fresh copy (nothing else changes)."""

    def opened(version: int) -> Opportunity:
        document = example_definition("bounded-test")
        process = SalesProcess(version=version, definition=ProcessDefinition(**document))
        start = StartOpportunity(opportunity_id=f"o-{version}", contact_id="c-1")
        return core.open_opportunity(start, process, datetime(2026, 11, 28, tzinfo=UTC)).state

    processes = SharedProcesses(size=2)
    one = processes.share(opened(1))
    processes.share(opened(2))
    assert processes.share(opened(1)).process is one.process  # 1 is now the most recent
    processes.share(opened(3))  # 2 goes
    assert len(processes) == 2
    again = opened(2)
    assert processes.share(again).process is again.process  # a fresh copy
    assert processes.share(opened(1)).process is not one.process  # 1 went in its turn
