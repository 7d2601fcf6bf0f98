"""What an opportunity is worth, in the pure core: amounts as decimals of any form a client may
send (never floats), currencies and their minor units, the details set and cleared, the
reasons a process lists, and the won amount."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from sales import core
from sales.commands import ChangeStage, RecordExternalStatus, UpdateDetails
from sales.errors import CommandRejected
from sales.opportunity import StartOpportunity
from sales.process import ProcessDefinition, SalesProcess
from sales.value import MAX_AMOUNT, Amount, Currency, minor_units, require_scale
from tests.support.helpers import example_definition
from tests.unit.test_core_actions import T0, settled

AMOUNT: TypeAdapter[Decimal] = TypeAdapter(Amount)
CURRENCY: TypeAdapter[str] = TypeAdapter(Currency)


@given(st.decimals(min_value=0, max_value=MAX_AMOUNT - 1, places=3, allow_nan=False))
def test_every_decimal_with_at_most_three_places_reads_as_itself(amount: Decimal) -> None:
    text = format(amount, "f")
    assert AMOUNT.validate_python(text) == amount
    assert AMOUNT.dump_python(AMOUNT.validate_python(text), mode="json") == text


@given(st.integers(min_value=0, max_value=int(MAX_AMOUNT) - 1))
def test_whole_numbers_read_as_amounts(amount: int) -> None:
    assert AMOUNT.validate_python(amount) == Decimal(amount)


@given(
    st.floats()
    | st.booleans()
    | st.integers(max_value=-1)
    | st.integers(min_value=int(MAX_AMOUNT))
    | st.text().filter(lambda t: not t.replace(".", "", 1).isdigit() or len(t) > 20)
    | st.sampled_from(["1e5", "1E5", "-0", "+1", " 1", "1 ", "0x10", "NaN", "Infinity", "1.2345",
                       "1,000", "١٢٣", "", ".5", "5."])
)  # fmt: skip
def test_anything_else_is_refused(value: Any) -> None:
    with pytest.raises(ValidationError):
        AMOUNT.validate_python(value)


@given(st.text(max_size=5))
def test_currencies_are_iso_codes_with_minor_units(code: str) -> None:
    if minor_units(code) is None:
        with pytest.raises(ValidationError):
            CURRENCY.validate_python(code)
    else:
        assert CURRENCY.validate_python(code) == code


@pytest.mark.parametrize(
    ("amount", "currency", "ok"),
    [("1000", "JPY", True), ("1000.5", "JPY", False), ("1000.00", "JPY", False),
     ("1.23", "USD", True), ("1.234", "USD", False), ("1.234", "BHD", True)],
)  # fmt: skip
def test_decimals_within_the_currency_s_minor_units(amount: str, currency: str, ok: bool) -> None:
    assert (require_scale(Decimal(amount), currency) is None) is ok


def _process(**changes: Any) -> SalesProcess:
    definition = example_definition("life")
    definition.update(changes)
    return SalesProcess(version=1, definition=ProcessDefinition.model_validate(definition))


def _opened(process: SalesProcess | None = None, **value: Any) -> Any:
    start = StartOpportunity(opportunity_id="o", contact_id="c", **value)
    return settled(core.open_opportunity(start, process or _process(), T0, currency="EUR"))


def test_opening_takes_the_default_currency_and_the_stage_s_probability() -> None:
    state = _opened(amount="100")
    assert (state.amount, state.currency, state.probability) == (Decimal(100), "EUR", 10)
    assert state.forecast_category == "pipeline" and not state.probability_by_hand
    with pytest.raises(CommandRejected, match="JPY has 0"):
        _opened(amount="1.5", currency="JPY")


def test_details_given_are_set_and_those_given_as_null_cleared() -> None:
    state = _opened(amount="100", currency="USD", probability=40)
    assert state.probability_by_hand
    command = UpdateDetails.model_validate({"probability": None, "currency": None, "name": "N"})
    assert command.model_dump(mode="json") == {"probability": None, "currency": None, "name": "N"}
    done = core.apply(state, command, T0)
    assert (done.state.probability, done.state.currency, done.state.name) == (10, "EUR", "N")
    assert done.state.amount == Decimal(100), "a field not given stays"
    untouched = core.apply(state, UpdateDetails(amount="100"), T0)
    assert untouched.result.message == "no detail changed" and untouched.effects == []
    with pytest.raises(ValueError, match="give at least one of"):
        UpdateDetails()
    with pytest.raises(ValueError, match="include_in_forecast is true or false"):
        UpdateDetails.model_validate({"include_in_forecast": None})


def test_a_process_listing_lost_reasons_names_a_default_when_an_outcome_can_lose() -> None:
    with pytest.raises(ValueError, match="name a default_lost_reason"):
        _process(lost_reasons=["Price"])
    with pytest.raises(ValueError, match="is not one of lost_reasons"):
        _process(lost_reasons=["Price"], default_lost_reason="Other")
    with pytest.raises(ValueError, match="lists a reason twice"):
        _process(won_reasons=["A", "A"])


def test_losing_by_hand_needs_a_listed_reason_and_winning_keeps_the_amount() -> None:
    process = _process(lost_reasons=["Price"], default_lost_reason="Price", won_reasons=["Fit"])
    state = _opened(process, amount="900")
    for stage, reason in [("Closed lost", None), ("Closed lost", "Mood"), ("Closed won", None)]:
        with pytest.raises(CommandRejected) as refused:
            core.apply(state, ChangeStage(stage=stage, reason=reason), T0)
        assert refused.value.code == "unknown_reason"
    later = T0 + timedelta(days=3)
    won = core.apply(state, ChangeStage(stage="Closed won", reason="Fit"), later).state
    assert (won.won_amount, won.expected_close_date, won.close_reason) == (
        Decimal(900),
        later.date(),
        "Fit",
    )
    assert (won.probability, won.forecast_category) == (100, "closed")


def test_an_external_status_moves_as_mapped_and_is_kept_otherwise() -> None:
    process = _process(
        external_status_stages={"issued": "Closed won", "declined": "Closed lost",
                                "in review": "Proposal"},
        lost_reasons=["Declined by the insurer"], default_lost_reason="Declined by the insurer",
    )  # fmt: skip
    state = _opened(process)
    kept = core.apply(state, RecordExternalStatus(source="policy", reference="P-1",
                                                  status="received"), T0)  # fmt: skip
    assert kept.state.current_stage == "Prospect"
    assert kept.state.history[-1].reason == "external status policy P-1: received"
    assert kept.state.external_status is not None
    assert (kept.state.external_status.reference, kept.state.external_status.status) == (
        "P-1",
        "received",
    )
    moved = core.apply(kept.state, RecordExternalStatus(source="policy", reference="P-1",
                                                        status="in review"), T0)  # fmt: skip
    assert moved.state.current_stage == "Proposal"
    assert moved.state.history[-1].source == "external"
    lost = core.apply(moved.state, RecordExternalStatus(source="policy", reference="P-1",
                                                        status="declined"), T0)  # fmt: skip
    assert (lost.state.status, lost.state.close_reason) == ("lost", "Declined by the insurer")
    with pytest.raises(ValueError, match="points at unknown stage"):
        _process(external_status_stages={"x": "Nowhere"})
    with pytest.raises(ValueError, match="name a default_lost_reason"):
        _process(external_status_stages={"declined": "Closed lost"}, lost_reasons=["A"],
                 outcome_stages={})  # fmt: skip
