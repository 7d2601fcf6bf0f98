"""The events of what commands change, in the pure core: one per thing, numbered without gaps,
their values cut short where they are long."""

from __future__ import annotations

from sales import core
from sales.commands import AddRemark, ChangeStage, UpdateDetails
from sales.events import MAX_VALUE
from sales.registry import LookedUp
from tests.unit.test_core_actions import T0, completed, opened


async def _no_effect(effect: object) -> object:
    raise AssertionError("no side effect with an outcome here")


def test_events_are_numbered_and_keep_short_values_whole() -> None:
    state = opened()
    moved = completed(core.run(state, ChangeStage(stage="Proposal", reason="quote", by="ann",
                                                  cancel_open_activities=False),
                               LookedUp(), _no_effect, lambda: T0))  # type: ignore[arg-type]  # fmt: skip
    [event] = [e for e in moved.writes.events if e.type == "stage_changed"]
    assert event.data == {"from": "Prospect", "to": "Proposal", "source": "manual",
                          "reason": "quote", "by": "ann"}  # fmt: skip
    long = "x" * (MAX_VALUE + 50)
    remarked = completed(core.run(moved.state, AddRemark(text=long), LookedUp(), _no_effect,
                                  lambda: T0))  # type: ignore[arg-type]  # fmt: skip
    [remark] = remarked.writes.events
    assert remark.type == "remark_added" and remark.data["seq"] == "1"
    assert remark.data["text"] is not None and len(remark.data["text"]) == MAX_VALUE
    detailed = completed(core.run(remarked.state, UpdateDetails(probability=55), LookedUp(),
                                  _no_effect, lambda: T0))  # type: ignore[arg-type]  # fmt: skip
    seqs = [e.seq for o in (moved, remarked, detailed) for e in o.writes.events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert detailed.writes.events[-1].data == {"what": "probability", "from": "60", "to": "55",
                                               "by": None}  # fmt: skip
