"""`opportunities details OPP`: what an opportunity is worth and how long it sits; with options,
`update_details` changes it; `--history` lists every change of its details."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer

from sales.commands import DETAIL_FIELDS, UpdateDetails
from sales.opportunity import Opportunity
from sales.stage_rules import time_in_stages
from sales.value import FORECAST_CATEGORIES
from sales.value_rules import overdue
from starter.cli.common import (
    JsonFlag,
    UserError,
    database,
    new_app,
    new_table,
    print_fields,
    print_json,
    print_table,
    run,
)
from starter.cli.send import ByOption, command_of, send, state_of
from starter.client.read_model import ReadModel

app = new_app("What an opportunity is worth.")

CLEARABLE = [field for field in DETAIL_FIELDS if field != "include_in_forecast"]

AmountOption = Annotated[
    str | None,
    typer.Option("--amount", help="A decimal in the currency's minor units: 250000 or 1250.50."),
]
CurrencyOption = Annotated[
    str | None, typer.Option("--currency", help="ISO 4217 (default: the service's).")
]
CloseDateOption = Annotated[
    str | None, typer.Option("--close-date", help="Expected close date, YYYY-MM-DD.")
]
ProbabilityOption = Annotated[
    int | None,
    typer.Option("--probability", min=0, max=100, help="0-100 (default: the stage's)."),
]
ForecastOption = Annotated[
    str | None,
    typer.Option("--forecast-category", help=f"One of {', '.join(FORECAST_CATEGORIES)}."),
]


def close_date(text: str | None) -> date | None:
    """A date given as `--close-date`."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"--close-date {text!r} is not a date; give it as 2027-03-31") from None


def forecast_category(text: str | None) -> str | None:
    if text is not None and text not in FORECAST_CATEGORIES:
        raise UserError(
            f"--forecast-category {text!r} is not one of {', '.join(FORECAST_CATEGORIES)}"
        )
    return text


def duration(seconds: int) -> str:
    """A duration as people read it: `3d 4h`, `5h 12m`, `42s`."""
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def value_fields(o: Opportunity, now: datetime) -> dict[str, str | None]:
    """The value, the forecast and the time in stage, as `show` and `details` print them."""
    amount = f"{format(o.amount, ',f')} {o.currency}" if o.amount is not None else "-"
    spent = time_in_stages(o, now)
    late = overdue(o, now)
    return {
        "Amount": amount + (f" (won {format(o.won_amount, ',f')})" if o.won_amount else ""),
        "Expected close": f"{o.expected_close_date:%Y-%m-%d}" if o.expected_close_date else "-",
        "Probability": f"{o.probability}%" + (" (set by hand)" if o.probability_by_hand else ""),
        "Forecast": (o.forecast_category or "-")
        + (" (set by hand)" if o.forecast_category_by_hand else "")
        + ("" if o.include_in_forecast else ", not in the forecast"),
        "Reason": o.close_reason,
        "In this stage": duration(spent.get(o.current_stage, 0)),
        "Time per stage": ", ".join(f"{name} {duration(s)}" for name, s in spent.items()),
        "Idle": f"since {o.idle_since:%Y-%m-%d %H:%M}" if o.idle_since else None,
        "Overdue activities": str(len(late)) if late else None,
    }


@app.command("details")
def details(
    opportunity_id: str,
    amount: AmountOption = None,
    currency: CurrencyOption = None,
    close: CloseDateOption = None,
    probability: ProbabilityOption = None,
    forecast: ForecastOption = None,
    include: Annotated[
        bool | None,
        typer.Option("--include-in-forecast/--exclude-from-forecast", show_default=False),
    ] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    clear: Annotated[
        list[str] | None,
        typer.Option("--clear", help=f"Clear a detail: one of {', '.join(CLEARABLE)}."),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="Every change of the details.")
    ] = False,
    by: ByOption = None,
    as_json: JsonFlag = False,
) -> None:
    """What the opportunity is worth, when it should close and how long it sits; given
    options, change them (`update_details`; --clear FIELD clears one: a cleared probability
    or forecast category follows the stage again)."""
    given: dict[str, Any] = {
        "amount": amount, "currency": currency, "expected_close_date": close_date(close),
        "probability": probability, "forecast_category": forecast_category(forecast),
        "include_in_forecast": include, "name": name,
    }  # fmt: skip
    fields = {field: value for field, value in given.items() if value is not None}
    for field in clear or []:
        if field not in CLEARABLE:
            raise UserError(f"--clear {field!r}: clear one of {', '.join(CLEARABLE)}")
        if field in fields:
            raise UserError(f"{field} is both given and cleared")
        fields[field] = None
    if history:
        if fields:
            raise UserError("--history lists the changes; give it without changes")
        run(lambda: _print_history(opportunity_id, as_json))
        return
    if fields:
        send(opportunity_id, command_of(UpdateDetails, **fields, by=by), as_json)
        return
    state = run(lambda: state_of(opportunity_id))
    if as_json:
        print_json(state.model_dump(mode="json", include=_SHOWN))
        return
    print_fields(value_fields(state, datetime.now(UTC)))


_SHOWN = {
    "opportunity_id", "amount", "currency", "won_amount", "expected_close_date", "probability",
    "probability_by_hand", "forecast_category", "forecast_category_by_hand",
    "include_in_forecast", "close_reason", "stage_seconds", "current_stage", "stage_entered_at",
    "idle_since",
}  # fmt: skip


async def _print_history(opportunity_id: str, as_json: bool) -> None:
    async with database() as pool:
        changes = await ReadModel(pool).detail_changes(opportunity_id)
    if as_json:
        print_json(changes)
        return
    table = new_table("#", "at", "what", "from", "to", "by")
    for c in changes:
        table.add_row(
            str(c.seq), f"{c.at:%Y-%m-%d %H:%M}", c.what, c.from_value or "", c.to_value or "",
            c.by or "",
        )  # fmt: skip
    print_table(table)
