"""A batch's input and progress, carried across continue-as-new as one payload, fit Temporal's
2 MB payload limit with room to spare at their largest, a next-stage batch's selected stages
included; a batch gives exactly one change; the request hash tells one request from
another."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.mass import MAX_SELECTION, MAX_SELECTION_BYTES, Frozen, Selection
from sales.results import MAX_OUTCOME_REASON, CommandOutcome
from sales.validation import json_size
from store.search import SearchFilters
from workflows.mass_messages import (
    MAX_ITEM_REASON,
    MAX_REPORTED,
    MAX_REPORTED_BYTES,
    ItemOutcome,
    MassModifyInput,
    Progress,
)

PAYLOAD_LIMIT = 2 * 1024 * 1024
ROOM = 0.6
"""The largest payload takes at most this share of the limit."""
WIDE = "\U0001f600"
"""Four bytes of UTF-8, twelve as escaped JSON."""


def ids_within(budget: int, count: int = MAX_SELECTION) -> list[str]:
    """`count` distinct ids, as long as `budget` bytes of JSON allow."""
    width = (budget - 2) // count - 3  # quotes and a comma each
    return [f"{n:06d}".rjust(width, "x") for n in range(count)]


def payload_size(value: object) -> int:
    [payload] = pydantic_data_converter.payload_converter.to_payloads([value])
    return payload.ByteSize()


def test_the_largest_batch_fits_one_payload_with_room_to_spare() -> None:
    ids = ids_within(MAX_SELECTION_BYTES - 100)
    progress = Progress(batch_id="b" * 200, total=MAX_SELECTION)
    long_id = "o" * 200
    for n in range(MAX_SELECTION):
        progress.record(
            ItemOutcome(
                opportunity_id=f"{long_id[:-6]}{n:06d}",
                result="rejected",
                reason=WIDE * 10_000,
                code="c" * 500,
            )
        )
    assert progress.rejected == MAX_SELECTION, "every outcome counted"
    assert 0 < len(progress.outcomes) <= MAX_REPORTED
    batch = MassModifyInput(
        batch_id="b" * 200,
        ids=ids,
        owner=WIDE * 500,
        by="y" * 200,
        remaining=ids,
        progress=progress,
    )
    carried = MassModifyInput.model_validate(batch.model_dump(mode="json"))  # as the next run
    assert carried.progress is not None and carried.progress.outcomes == progress.outcomes
    size = payload_size(batch)
    assert size <= PAYLOAD_LIMIT * ROOM, f"{size:,} bytes"


def test_outcomes_are_listed_within_their_byte_budget() -> None:
    progress = Progress(batch_id="b")
    for n in range(MAX_REPORTED):
        progress.record(ItemOutcome(opportunity_id=f"o-{n}", result="stuck", reason="x" * 10_000))
    assert all(len(o.reason) == MAX_ITEM_REASON for o in progress.outcomes)
    assert payload_size(progress.outcomes) <= MAX_REPORTED_BYTES
    assert len(progress.outcomes) < MAX_REPORTED and progress.stuck == MAX_REPORTED
    Progress.model_validate(progress.model_dump(mode="json"))


HALF = ids_within(MAX_SELECTION_BYTES * 3 // 5, MAX_SELECTION // 2)
"""Well over half the selection's bytes."""


@pytest.mark.parametrize(
    "selection",
    [
        {"ids": ["i" * 200] * MAX_SELECTION},  # 2 MB of ids
        {"ids": [f"o-{n}" for n in range(MAX_SELECTION + 1)]},
        {"filters": {"ids": ["i" * 500] * MAX_SELECTION}},
        {"ids": HALF, "filters": {"ids": HALF}},
    ],
)
def test_a_selection_past_its_bounds_is_refused(selection: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MassModifyInput.model_validate({"batch_id": "b", "owner": "ann", **selection})


def test_the_carried_selection_and_outcomes_are_bounded_too() -> None:
    with pytest.raises(ValidationError):
        MassModifyInput(batch_id="b", ids=["a"], owner="ann", remaining=["i" * 200] * 5000)
    with pytest.raises(ValidationError):
        Progress.model_validate(
            {"batch_id": "b", "outcomes": [{"opportunity_id": "o", "result": "stuck"}] * 1001}
        )
    with pytest.raises(ValidationError):
        Selection(batch_id="b", request_hash="0" * 64, ids=["i" * 200] * MAX_SELECTION)


def test_a_command_outcome_is_cut_never_refused_for_its_length() -> None:
    outcome = CommandOutcome(
        opportunity_id="o" * 500,
        command="c" * 500,
        result="rejected",
        reason="r" * 100_000,
        code="x" * 500,
    )
    assert len(outcome.reason) == MAX_OUTCOME_REASON and outcome.reason.endswith("…")
    assert len(outcome.opportunity_id) == len(outcome.command) == 200
    assert outcome.code is not None and len(outcome.code) == 100
    with pytest.raises(ValidationError):  # the request id is compared, never cut
        CommandOutcome(opportunity_id="o", command="c", result="applied", request_id="r" * 201)


def test_the_request_hash_tells_requests_apart() -> None:
    batch = MassModifyInput(batch_id="b", filters=SearchFilters(process_id="p"), owner="ann")
    same = MassModifyInput.model_validate(
        {"batch_id": "b", "filters": {"process_id": "p", "stage": None}, "owner": "ann",
         "concurrency": 200, "cancel_open_activities": False}
    )  # fmt: skip
    carried = batch.model_copy(
        update={"remaining": ["o-1"], "progress": Progress(batch_id="b", done=3)}
    )
    assert batch.request_hash() == same.request_hash() == carried.request_hash()
    others = [
        batch.model_copy(update={"owner": "bob"}),
        batch.model_copy(update={"owner": None, "to_stage": "Proposal"}),
        batch.model_copy(update={"filters": SearchFilters(process_id="q")}),
        batch.model_copy(update={"batch_id": "c"}),
        batch.model_copy(update={"by": "ann"}),
    ]
    hashes = {batch.request_hash(), *(other.request_hash() for other in others)}
    assert len(hashes) == len(others) + 1
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)


def stages_of(ids: list[str], budget: int) -> dict[str, str]:
    """A stage for each id, as long as `budget` bytes of JSON for the ids and stages allow."""
    entry = (budget - json_size(ids) - 2) // len(ids)  # per id in the stages: "id":"stage",
    longest = max(len(i) for i in ids)
    return {i: "S" * min(500, entry - longest - 6) for i in ids}


def full_progress() -> Progress:
    progress = Progress(batch_id="b" * 200, total=MAX_SELECTION)
    for n in range(MAX_SELECTION):
        progress.record(
            ItemOutcome(
                opportunity_id=f"{'o' * 194}{n:06d}", result="rejected", reason=WIDE * 10_000
            )
        )
    return progress


def test_the_largest_next_stage_batch_fits_one_payload_with_room_to_spare() -> None:
    ids = ids_within(MAX_SELECTION_BYTES - 100)
    remaining = ids_within(MAX_SELECTION_BYTES // 3, MAX_SELECTION // 2)
    stages = stages_of(remaining, MAX_SELECTION_BYTES - 100)
    carried = json_size(remaining) + json_size(stages)
    assert MAX_SELECTION_BYTES * 0.95 < carried <= MAX_SELECTION_BYTES
    batch = MassModifyInput(
        batch_id="b" * 200,
        ids=ids,
        to_next_stage=True,
        by="y" * 200,
        remaining=remaining,
        selected_stages=stages,
        progress=full_progress(),
    )
    again = MassModifyInput.model_validate(batch.model_dump(mode="json"))  # as the next run
    assert again.selected_stages == stages
    size = payload_size(batch)
    assert size <= PAYLOAD_LIMIT * ROOM, f"{size:,} bytes"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"to_next_stage": False},
        {"to_stage": "Proposal", "owner": "ann"},
        {"to_stage": "Proposal", "to_next_stage": True},
        {"to_next_stage": True, "owner": "ann"},
        {"to_stage": "Proposal", "to_next_stage": True, "owner": "ann"},
    ],
)
def test_a_batch_gives_exactly_one_change(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="exactly one of to_stage, to_next_stage"):
        MassModifyInput.model_validate({"batch_id": "b", "ids": ["a"], **changes})


def test_a_next_stage_batch_is_a_change_of_its_own() -> None:
    batch = MassModifyInput(batch_id="b", ids=["a"], to_next_stage=True)
    assert (batch.to_stage, batch.owner) == (None, None)
    carried = batch.model_copy(update={"remaining": ["a"], "selected_stages": {"a": "Prospect"}})
    others = [batch.model_copy(update={"to_next_stage": False, "to_stage": "Proposal"})]
    assert batch.request_hash() == carried.request_hash() != others[0].request_hash()


def test_the_selected_stages_belong_to_a_next_stage_batch_within_the_budget() -> None:
    with pytest.raises(ValidationError, match="only by a batch with to_next_stage"):
        MassModifyInput(batch_id="b", ids=["a"], owner="ann", selected_stages={"a": "Prospect"})
    remaining = ids_within(MAX_SELECTION_BYTES // 2, MAX_SELECTION // 2)
    stages = {i: "S" * 20 for i in remaining}
    assert json_size(stages) <= MAX_SELECTION_BYTES, "each within its own bound"
    with pytest.raises(ValidationError, match="remaining and selected_stages take"):
        MassModifyInput(
            batch_id="b", ids=["a"], to_next_stage=True, remaining=remaining,
            selected_stages=stages,
        )  # fmt: skip
    with pytest.raises(ValidationError):
        MassModifyInput(
            batch_id="b", ids=["a"], to_next_stage=True, selected_stages={"a": "S" * 501}
        )
    with pytest.raises(ValidationError):
        MassModifyInput(
            batch_id="b", ids=["a"], to_next_stage=True, selected_stages={"not an id": "S"}
        )


def test_a_frozen_selection_holds_its_stages_within_the_budget() -> None:
    ids = ids_within(MAX_SELECTION_BYTES // 4, MAX_SELECTION // 2)
    Frozen(ids=ids, stages=stages_of(ids, MAX_SELECTION_BYTES))
    stages = {i: "S" * 50 for i in ids}
    assert json_size(stages) <= MAX_SELECTION_BYTES, "each within its own bound"
    with pytest.raises(ValidationError, match="the ids and their stages take"):
        Frozen(ids=ids, stages=stages)
    assert Selection(batch_id="b", request_hash="0" * 64, ids=["a"]).stages is False
