"""A worker keeps one copy of each process version for all its cached opportunities."""

from __future__ import annotations

from datetime import UTC, datetime

from sales import core
from sales.opportunity import Opportunity, StartOpportunity
from sales.process import ProcessDefinition, SalesProcess
from tests.conftest import example_definition
from workflows.opportunity import _share_process


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
