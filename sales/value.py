"""What an opportunity is worth: an amount in a currency, its expected close date, the
probability and forecast category that weigh it, and whether it counts in the forecast.

Amounts are decimals, never floats: a string (`"250000.50"`) or a JSON number without a
fraction (`250000`); a number with a fraction is refused, since JSON readers make it a binary
float. Their scale is bounded by the currency's minor units (0 for JPY, 2 for USD, 3 for BHD,
from ISO 4217 as the `iso4217` package publishes it), checked where the currency is known.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import iso4217
from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from sales.validation import Line

ForecastCategory = Literal["pipeline", "best_case", "commit", "closed", "omitted"]
FORECAST_CATEGORIES: tuple[str, ...] = ("pipeline", "best_case", "commit", "closed", "omitted")

MAX_AMOUNT = Decimal(10) ** 15
"""Amounts are below a quadrillion, so that every one is exact as a search attribute (a
double holds 15 significant digits)."""
_DECIMAL = re.compile(r"^[0-9]{1,16}(\.[0-9]{1,3})?$")
"""An amount as text: digits, and at most 3 decimals (the most any currency has)."""


def _amount(value: Any) -> Any:
    """An amount from a string or an integer; a float, a bool, an exponent or a sign is
    refused with what to send instead."""
    if isinstance(value, Decimal):
        value = format(value, "f")
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(
            'give the amount as a string ("250000.50") or a whole number; a number with a '
            "fraction is read as a binary float, which cannot hold money exactly"
        )
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not _DECIMAL.match(value):
        raise ValueError(
            'an amount is a non-negative decimal with at most 3 decimals, such as "250000" '
            'or "1250.50"'
        )
    try:
        amount = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise ValueError("not a decimal") from None
    if amount >= MAX_AMOUNT:
        raise ValueError(f"an amount is below {MAX_AMOUNT:,}")
    return amount


Amount = Annotated[
    Decimal,
    BeforeValidator(_amount),
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str, when_used="json"),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": _DECIMAL.pattern},
            {"type": "integer", "minimum": 0, "maximum": int(MAX_AMOUNT) - 1},
        ],
        "description": "A non-negative decimal: a string, or a whole number (never a float).",
    }),
]  # fmt: skip
"""A sum of money, without its currency."""


def minor_units(code: str) -> int | None:
    """The decimals of an ISO 4217 currency (None: not a currency an amount can be in)."""
    try:
        return iso4217.Currency(code).exponent
    except ValueError:
        return None


def _currency(value: Any) -> Any:
    if isinstance(value, str) and minor_units(value) is not None:
        return value
    raise ValueError(
        f"{str(value)[:20]!r} is not an ISO 4217 currency code with minor units, such as "
        "USD, EUR, JPY, BHD"
    )


Currency = Annotated[
    str,
    Field(min_length=3, max_length=3),
    BeforeValidator(_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217."}),
]


def require_scale(amount: Decimal, currency: str) -> str | None:
    """Why `amount` cannot be in `currency` (more decimals than its minor units), or None."""
    units = minor_units(currency) or 0
    exponent = amount.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if decimals > units:
        return f"{format(amount, 'f')} {currency} has {decimals} decimals; {currency} has {units}"
    return None


CloseDate = Annotated[
    date,
    Field(ge=date(1900, 1, 1), le=date(2199, 12, 31)),
    WithJsonSchema({"type": "string", "format": "date", "description": "YYYY-MM-DD"}),
]
"""An expected close date, within the business range."""

Probability = Annotated[int, Field(ge=0, le=100, strict=True)]
"""A percentage, 0 to 100."""

Reason = Line
"""A won or lost reason (one of the process's list when it has one)."""
