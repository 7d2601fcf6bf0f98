"""A worker keeps one copy of each process version for all its cached opportunities."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sales import core
from sales.opportunity import Opportunity, StartOpportunity
from sales.process import ProcessDefinition, SalesProcess
from tests.conftest import example_definition
from workflows.opportunity import _share_process

pytestmark = pytest.mark.usefixtures("verified")


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
    shared = [_share_process(state) for state in (first, second, other)]
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
    _share_process(first)
    _share_process(second)
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
