"""What a person chooses as an opportunity changes stage, asked the way the product's dialogs
ask: the outcome of the activity completed, whether to cancel the open activities of the stage
left, and the details of the activities the new stage creates.

In a terminal each is asked when not given on the command line; elsewhere the outcome and the
cancel choice must be given (a one-line error says how), and the activities get the process's
details unless given."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import typer
from typer.core import TyperCommand

from runtime.escaping import escaped
from sales.opportunity import ActionState, Opportunity
from sales.process import CalendarAction
from sales.stage_rules import active_calendar_activities, creates_on_entry
from sales.validation import out_of_range
from starter.cli.common import UserError, console, counted

DETAIL_OPTIONS = {
    "due": "--due", "duration": "--duration", "subject": "--subject", "assignee": "--assignee",
    "notes": "--notes", "location": "--location",
}  # fmt: skip
"""The parameters of a calendar activity's details, and their options."""
FOR = "for_"
"""The parameter of `--for ACTION`, which the details after it belong to."""


def interactive() -> bool:
    return sys.stdin.isatty()


# --- the order options are given in ------------------------------------------------------------


class OptionsInOrder(TyperCommand):
    """A command that keeps the order its options were given in (`ctx.meta["in_order"]`, the
    parameter names), so that `--for ACTION` can own the details that follow it."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["in_order"] = _in_order(self.params, args)
        return super().parse_args(ctx, args)


def _in_order(params: Sequence[Any], args: list[str]) -> list[str]:
    """The parameter names of the options in `args`, in order, skipping their values as the
    parser does (an option that takes a value takes the next argument, whatever it is)."""
    options: dict[str, tuple[str, bool]] = {}
    for param in params:
        if getattr(param, "param_type_name", "") == "option":
            takes_value = not param.is_flag and not param.count
            for name in [*param.opts, *param.secondary_opts]:
                options[name] = (param.name, takes_value)
    order: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--":
            break
        name, equals, _ = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in options:
            param, takes_value = options[name]
            order.append(param)
            if takes_value and not equals:
                index += 1
        index += 1
    return order


Group = tuple[str | None, dict[str, Any]]
"""An action id given with `--for` (None: none given) and the details given after it."""


def detail_groups(in_order: list[str], given: dict[str, list[Any] | None]) -> list[Group]:
    """The details given, grouped by the `--for ACTION` before them (None: before any
    `--for`), from the options' values in the order given."""
    values = {name: list(given.get(name) or []) for name in [FOR, *DETAIL_OPTIONS]}
    groups: list[Group] = []
    current: Group | None = None
    for name in in_order:
        if name == FOR:
            current = (values[FOR].pop(0), {})
            groups.append(current)
        elif name in DETAIL_OPTIONS:
            if current is None:
                current = (None, {})
                groups.append(current)
            action, details = current
            if name in details:
                where = f" for {action}" if action else ""
                raise UserError(f"{DETAIL_OPTIONS[name]} given twice{where}; give "
                                "--for ACTION before the details of each activity")  # fmt: skip
            details[name] = values[name].pop(0)
    return groups


# --- the details of a calendar activity --------------------------------------------------------


def when(option: str, text: str | None) -> datetime | None:
    """A date and time given as `option`; without a zone, in this machine's time zone."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"{option} {text!r} is not a date and time; give it as 2027-01-05T10:00 "
            "(local time) or 2027-01-05T10:00+01:00"
        ) from None
    moment = moment if moment.tzinfo else moment.astimezone()
    problem = out_of_range(moment)
    if problem is not None:
        raise UserError(f"{option} {text!r}: {problem}")
    return moment


def details_of(given: dict[str, Any]) -> dict[str, Any]:
    """The calendar activity details given on the command line, as a payload's fields."""
    fields = {
        "due": when("--due", given.get("due")), "duration_minutes": given.get("duration"),
        "subject": given.get("subject"), "assignee": given.get("assignee"),
        "notes": given.get("notes"), "location": given.get("location"),
    }  # fmt: skip
    return {field: value for field, value in fields.items() if value is not None}


def entry_overrides(
    state: Opportunity, target: str, groups: list[Group]
) -> dict[str, dict[str, Any]]:
    """Per action, the details given for the activities entering `target` creates (`--for`
    may be left out when it creates exactly one), checked against what it creates."""
    created = creates_on_entry(state, target)
    ids = [action.action_id for action in created]
    overrides: dict[str, dict[str, Any]] = {}
    for action_id, given in groups:
        if action_id is None:
            if len(ids) != 1:
                what = f"activities for {', '.join(ids)}" if ids else "no calendar activity"
                how = "say which with --for ACTION" if ids else "give no details"
                raise UserError(f"entering {target!r} creates {what}: {how}")
            action_id = ids[0]
        if action_id not in ids:
            what = f"activities only for {', '.join(ids)}" if ids else "no calendar activity"
            raise UserError(f"--for {action_id}: entering {target!r} creates {what}")
        if action_id in overrides:
            raise UserError(f"the details of {action_id} are given twice")
        overrides[action_id] = details_of(given)
    return overrides


def ask_the_rest(
    state: Opportunity, target: str, overrides: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """In a terminal, the details of each activity entering `target` creates that were not
    given, asked one activity after the other."""
    if not interactive():
        return overrides
    asked = dict(overrides)
    for action in creates_on_entry(state, target):
        if action.action_id not in asked:
            answers = ask_details(state, target, action)
            if answers:
                asked[action.action_id] = answers
    return asked


def ask_details(state: Opportunity, target: str, action: ActionState) -> dict[str, Any]:
    """The Activity dialog: the details the activity would get, and what the user changes."""
    definition = action.definition
    assert isinstance(definition, CalendarAction)
    due = (datetime.now().astimezone() + timedelta(days=definition.activity.due_in_days)).replace(
        second=0, microsecond=0
    )
    shown = {
        "subject": definition.title,
        "due": due.strftime("%Y-%m-%dT%H:%M"),
        "duration": str(definition.activity.duration_minutes),
        "assignee": state.member(definition.role) or "",
        "notes": "",
        "location": "",
    }
    console.print(
        escaped(
            f"Entering {target!r} creates a {definition.activity.kind} for {action.action_id}: "
            f"{shown['subject']}, {shown['due'].replace('T', ' ')}, {shown['duration']} min"
            + (f", {shown['assignee']}" if shown["assignee"] else "")
        ),
        highlight=False,
    )
    if not typer.confirm("Change its details?", default=False):
        return {}
    changed: dict[str, Any] = {}
    for name, label in ASKED:
        while True:
            answer = str(typer.prompt(label, default=shown[name], show_default=bool(shown[name])))
            if answer == shown[name]:
                break
            try:
                changed.update(_checked(name, answer))
                break
            except UserError as error:
                console.print(str(error), highlight=False)
    return changed


ASKED = [
    ("subject", "Subject"), ("due", "Due"), ("duration", "Duration (minutes)"),
    ("assignee", "Assignee"), ("notes", "Notes"), ("location", "Location"),
]  # fmt: skip
"""The details the Activity dialog asks for, in order, with their labels."""


def _checked(name: str, answer: str) -> dict[str, Any]:
    """One detail as typed, checked as the option would be."""
    if name == "due":
        return {"due": when("Due", answer)}
    if name == "duration":
        if not answer.isdigit() or not 1 <= int(answer) <= 7 * 24 * 60:
            raise UserError("the duration is a number of minutes from 1 to 10080")
        return {"duration_minutes": int(answer)}
    return {name: answer} if answer else {}


# --- the outcome and the cancel choice ---------------------------------------------------------


def outcome_wanted(state: Opportunity, action: ActionState) -> bool:
    """Whether completing `action` needs an outcome: its activity tracks outcomes and is
    active."""
    definition = action.definition
    return (
        isinstance(definition, CalendarAction)
        and definition.activity.track_outcome
        and action.activity_status == "active"
    )


def ask_outcome(state: Opportunity, action: ActionState) -> str:
    """The Activity Outcome dialog: one of the process's outcomes for the activity's kind
    (numbered), or any text when it lists none."""
    definition = action.definition
    assert isinstance(definition, CalendarAction)
    listed = state.process.outcomes_of(definition.activity.kind)
    if listed is None:
        return str(typer.prompt("Outcome"))
    console.print(escaped(f"Outcome of calendar activity {action.activity_id}:"), highlight=False)
    for n, choice in enumerate(listed, start=1):
        console.print(escaped(f"  {n}. {choice}"), highlight=False)
    while not 1 <= (answer := typer.prompt("Outcome (number)", type=int)) <= len(listed):
        console.print(f"choose a number from 1 to {len(listed)}")
    return listed[answer - 1]


def cancel_choice(
    state: Opportunity,
    target: str | None,
    given: bool | None,
    *,
    yes: bool = False,
    done: frozenset[str] = frozenset(),
) -> bool | None:
    """Whether to cancel the open activities of the stage left: as given; else asked in a
    terminal (the process's `cancel_on_advance` the default answer) when the stage changes,
    the stage left has open activities (but those in `done`, which the command itself marks
    done) and the process allows cancelling them; None when there is nothing to choose."""
    if given is not None or target is None:
        return given
    open_ids = [
        a.activity_id
        for a in active_calendar_activities(state, state.current_stage)
        if a.activity_id not in done
    ]
    if not open_ids or not state.process.allow_cancel_activities:
        return None
    if yes:
        return True
    question = (
        f"Stage {state.current_stage!r} has {counted(len(open_ids), 'open activity')} "
        f"({', '.join(map(str, open_ids))}). Cancel them?"
    )
    if not interactive():
        raise UserError(
            f"{question} Answer with --cancel-open-activities or --keep-open-activities"
        )
    return typer.confirm(escaped(question), default=state.process.cancel_on_advance)
