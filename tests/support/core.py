"""An opportunity opened through the pure core, for the tests of the rules and the contract."""

from __future__ import annotations

from datetime import UTC, datetime

from sales import core
from sales.opportunity import Opportunity, StartOpportunity
from sales.process import ProcessDefinition, SalesProcess
from tests.support.helpers import example_definition

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
PROCESS = SalesProcess(
    version=3, definition=ProcessDefinition.model_validate(example_definition("life"))
)


def opened(stage: str | None = None) -> Opportunity:
    """Opportunity `o-1` of contact `c-1`, owned by ann, in `stage` (default the first)."""
    start = StartOpportunity(
        opportunity_id="o-1", contact_id="c-1", stage=stage, owner="ann", by="ann"
    )
    return core.open_opportunity(start, PROCESS, T0).state
