"""`opportunities stage ... --for ACTION --due ...`: the details given on the command line are
grouped by the `--for` before them, whatever the values are (texts that look like options,
hold `=`, or are empty) and whichever form each option takes (`--opt value`, `--opt=value`)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from starter.cli import opportunities
from starter.cli.common import UserError
from starter.cli.stage_choices import detail_groups

STAGE = typer.main.get_command(opportunities.app).commands["stage"]  # type: ignore[attr-defined]
TEXT_OPTIONS = ["subject", "assignee", "notes", "location", "due"]
VALUES = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
) | st.sampled_from(["--for", "--due", "--next", "-y", "=", "--subject=x", "", "--"])


def _parsed(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    ctx = STAGE.make_context("stage", list(args))
    return ctx.meta["in_order"], ctx.params


def _args(groups: list[tuple[str | None, dict[str, Any]]], equals: list[bool]) -> list[str]:
    args = ["opp-1", "Proposal"]
    forms = iter(equals * 10)
    for action, details in groups:
        if action is not None:
            args += ["--for", action]
        for name, value in details.items():
            option = f"--{name}"
            args += [f"{option}={value}"] if next(forms, False) else [option, str(value)]
    return args


GROUP_DETAILS = st.dictionaries(
    st.sampled_from([*TEXT_OPTIONS, "duration"]), VALUES, min_size=1, max_size=4
).map(lambda d: {k: (len(v) % 100 + 1 if k == "duration" else v) for k, v in d.items()})
GROUPS = st.lists(st.tuples(st.sampled_from(["a1", "b-2", "c_3"]), GROUP_DETAILS), max_size=3)


@settings(max_examples=300, deadline=None)
@given(first=st.none() | GROUP_DETAILS, rest=GROUPS, equals=st.lists(st.booleans(), max_size=12))
def test_details_are_grouped_by_the_for_before_them(
    first: dict[str, Any] | None, rest: list[tuple[str, dict[str, Any]]], equals: list[bool]
) -> None:
    groups: list[tuple[str | None, dict[str, Any]]] = [(None, first)] if first else []
    groups += rest
    in_order, params = _parsed(_args(groups, equals))
    names = ["for_", *TEXT_OPTIONS, "duration"]
    assert detail_groups(in_order, {name: params.get(name) for name in names}) == groups
    assert params["stage"] == "Proposal" and params["next_stage"] is False


def test_a_detail_twice_for_one_activity_is_refused() -> None:
    in_order, params = _parsed(["opp-1", "--next", "--due", "x", "--due", "y"])
    with pytest.raises(UserError, match="--due given twice"):
        detail_groups(in_order, {"due": params["due"]})
    in_order, params = _parsed(["opp-1", "--for", "a", "--notes", "x", "--notes", "y"])
    with pytest.raises(UserError, match="--notes given twice for a"):
        detail_groups(in_order, {"for_": params["for_"], "notes": params["notes"]})
