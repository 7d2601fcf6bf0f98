"""Every collection and text in what a workflow holds, carries and returns has a declared bound,
so that a new field cannot forget one: the walk goes through every model reachable from the
workflows' inputs, states and results, nested ones included, and fails on any `str`, `list`,
`dict`, `set` or `tuple` without a `max_length` (or a `Literal`), and on any `Any` without a
`Bounded` size."""

from __future__ import annotations

import types
import typing
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from activities.opportunity_activities import ProjectionWrite
from sales.opportunity import Opportunity
from sales.results import CommandOutcome, CommandResult
from sales.validation import Bounded
from workflows.mass_messages import MassModifyInput, Progress
from workflows.messages import OpportunityInput

MODELS: list[type[BaseModel]] = [
    OpportunityInput,  # its state, the commands it carries, the write it carries
    Opportunity,  # the `state` query and the run's result
    ProjectionWrite,
    CommandResult,
    CommandOutcome,
    MassModifyInput,
    Progress,
]


def _bounded(metadata: list[Any]) -> bool:
    return any(isinstance(m, annotated_types.MaxLen | Bounded) for m in metadata) or any(
        isinstance(m, FieldInfo) and _bounded(m.metadata) for m in metadata
    )


def _unbounded(annotation: Any, metadata: list[Any], place: str, seen: set[type]) -> list[str]:
    """The places under `annotation` that lack a bound (`metadata`: the bounds that apply)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        return _unbounded(inner, [*metadata, *extra], place, seen)
    if origin in (Union, types.UnionType):
        found = []
        for arm in typing.get_args(annotation):
            found += _unbounded(arm, metadata, place, seen)
        return found
    if origin is Literal or annotation in (int, float, bool, type(None), datetime, date):
        return []
    if annotation is Decimal:  # an `Amount`: at most 16 digits and 3 decimals (its validator)
        return []
    if annotation is str:
        return [] if _bounded(metadata) else [f"{place}: str"]
    if annotation is Any:
        return [] if _bounded(metadata) else [f"{place}: Any"]
    if origin in (list, set, frozenset, tuple, dict):
        args = typing.get_args(annotation)
        fixed_tuple = origin is tuple and args and args[-1] is not Ellipsis
        found = [] if fixed_tuple or _bounded(metadata) else [f"{place}: {origin.__name__}"]
        items = args if fixed_tuple else [a for a in args if a is not Ellipsis]
        for n, arg in enumerate(items):
            part = "key" if origin is dict and n == 0 else "item"
            found += _unbounded(arg, [], f"{place}[{part}]", seen)
        return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return walk(annotation, seen, place)
    return [f"{place}: {annotation!r} (unknown to the walk)"]


def walk(model: type[BaseModel], seen: set[type] | None = None, place: str = "") -> list[str]:
    seen = set() if seen is None else seen
    if model in seen:
        return []
    seen.add(model)
    found = []
    for name, field in model.model_fields.items():
        found += _unbounded(
            field.annotation, list(field.metadata), f"{place or model.__name__}.{name}", seen
        )
    return found


def test_every_collection_and_text_has_a_bound() -> None:
    found = []
    for model in MODELS:
        found += walk(model)
    assert found == [], "\n".join(found)


def test_the_walk_finds_what_lacks_a_bound() -> None:
    class Inner(BaseModel):
        text: str

    class Outer(BaseModel):
        items: list[Inner]
        tags: dict[str, int]

    assert sorted(walk(Outer)) == [
        "Outer.items: list",
        "Outer.items[item].text: str",
        "Outer.tags: dict",
        "Outer.tags[key]: str",
    ]
