"""The search filters, declared once for every command that selects opportunities (`search`,
`export`, `mass-modify`): `@with_search_filters` gives a command their options and hands it
the `SearchFilters` they make, checked with a clear error for a bad value."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from starter.cli.common import validated
from store.search import SearchFilters

F = TypeVar("F", bound=Callable[..., Any])

EnteredBefore = Annotated[
    str | None, typer.Option("--entered-before", help="Stage entered before (ISO-8601).")
]
EnteredAfter = Annotated[
    str | None, typer.Option("--entered-after", help="Stage entered at or after (ISO-8601).")
]
OpenActionsFilter = Annotated[
    bool | None,
    typer.Option("--open-actions/--no-open-actions", help="Current stage has open actions."),
]

FILTERS: list[tuple[str, str, Any, Any]] = [
    ("process", "process_id", Annotated[str | None, typer.Option("--process")], None),
    ("stage", "stage", Annotated[str | None, typer.Option("--stage", help="The current stage.")],
     None),
    ("status", "status", Annotated[str | None, typer.Option(
        "--status", help="open, won, lost or deleted (default: all but deleted)")], None),
    ("contact", "contact_id", Annotated[str | None, typer.Option("--contact")], None),
    ("owner", "owner", Annotated[str | None, typer.Option("--owner")], None),
    ("name", "name", Annotated[str | None, typer.Option(
        "--name", help="Part of the name, any case.")], None),
    ("entered_before", "entered_before", EnteredBefore, None),
    ("entered_after", "entered_after", EnteredAfter, None),
    ("open_actions", "has_open_actions", OpenActionsFilter, None),
    ("failed", "has_failed_actions", Annotated[bool, typer.Option(
        "--failed", help="Only those with a failed action (to fix).")], False),
    ("amount_min", "amount_min", Annotated[str | None, typer.Option("--amount-min")], None),
    ("amount_max", "amount_max", Annotated[str | None, typer.Option("--amount-max")], None),
    ("closing_before", "closing_before", Annotated[str | None, typer.Option(
        "--closing-before", help="Expected close before (YYYY-MM-DD).")], None),
    ("closing_after", "closing_after", Annotated[str | None, typer.Option(
        "--closing-after", help="Expected close on or after (YYYY-MM-DD).")], None),
    ("forecast", "forecast_category", Annotated[str | None, typer.Option(
        "--forecast-category")], None),
    ("idle", "idle", Annotated[bool, typer.Option("--idle", help="Only the idle ones.")], False),
    ("overdue", "overdue", Annotated[bool, typer.Option(
        "--overdue", help="Only those with overdue activities.")], False),
]  # fmt: skip
"""(parameter, `SearchFilters` field, option, default) of each filter."""


def search_filters(**given: Any) -> SearchFilters:
    """The filters given (by parameter name) as `SearchFilters`; a flag not set filters
    nothing."""
    fields = {field: given.get(name) for name, field, _, _ in FILTERS}
    fields = {field: value for field, value in fields.items() if value not in (None, False)}
    if given.get("open_actions") is False:
        fields["has_open_actions"] = False
    return validated(SearchFilters, "search filters", fields)


def with_search_filters(
    *, owner_option: str = "--owner", owner_parameter: str = "owner"
) -> Callable[[F], F]:
    """A command with the search options, called with `filters=SearchFilters(...)` instead
    of them; `owner_option` renames the owner's option where `--owner` means another thing
    (`mass-modify --owner` gives an owner)."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "filters"]
        added = []
        for name, _, option, default in FILTERS:
            if name == "owner":
                name = owner_parameter
                option = Annotated[str | None, typer.Option(owner_option, help="Select by owner.")]
            added.append(
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                  annotation=option)
            )  # fmt: skip
        names = [p.name for p in added]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names}
            if owner_parameter != "owner":
                given["owner"] = given.pop(owner_parameter)
            return command(*args, filters=search_filters(**given), **kwargs)

        # Typer calls a command with keywords: every parameter can be keyword-only, in order.
        keyword = inspect.Parameter.KEYWORD_ONLY
        parameters = [*(p.replace(kind=keyword) for p in own), *added]
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate
