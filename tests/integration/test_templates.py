"""Letter templates cannot hurt the worker: the limits of `activities.rendering`, with real
render children (time, size, the subject and body, one template's share of the children), the
slowness record in `store.letters`, and a failing template through the CLI and through a
letter action."""

from __future__ import annotations

import asyncio
import functools
import itertools
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from temporalio.worker import Worker

from activities import rendering
from activities.failures import classify
from activities.letters import SLOW_AFTER, put_template
from activities.rendering import (
    SAMPLE_VARIABLES,
    RendererBusy,
    RendererUnavailable,
    TemplateError,
    TemplateTimeout,
    check_template,
    render,
)
from runtime.settings import BadSetting
from sales.contact import Contact
from sales.validation import Line, free_text
from starter.client import OpportunitiesClient
from store import letters
from tests.support.helpers import ROOT, open_one, store_unchecked_template
from tests.support.servers import Cli
from worker import serve

RUNAWAY = (
    "{% for i in range(10000) %}{% for j in range(10000) %}{% for k in range(10000) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)

merge = functools.partial(render, variables=SAMPLE_VARIABLES, default_subject="Hello")


@pytest.fixture
def half_a_second(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("OPPORTUNITIES_TEMPLATE_SECONDS", "0.5")
    return 0.5


@pytest.fixture
async def warm() -> AsyncIterator[None]:
    """A render child already started, so that timings measure renders, not start-up."""
    await merge("warm")
    yield


async def refused(body: str) -> str:
    with pytest.raises(TemplateError) as raised:
        await merge(body)
    message = str(raised.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{{ 1/0 }}", "line 1: ZeroDivisionError: division by zero"),
        ('{{ 1 + "a" }}', "line 1: TypeError: unsupported operand type(s) for +: 'int' and 'str'"),
        ('{% include "x" %}', "line 1: a letter cannot include, import or extend templates ('x')"),
        ('{% extends "x" %}', "cannot include, import or extend templates"),
        ('{% import "x" as x %}', "cannot include, import or extend templates"),
        ('{{ "A" * 20000000 }}', "line 1: str * 20000000 would be longer than 262,144"),
        ("{{ [1] * 10**9 }}", "line 1: list * 1000000000 would be longer than 262,144"),
        ("{{ 10**(10**10) }}", "line 1: powers are limited to exponents up to 100"),
        ("{{ (10**101)**2 }}", "powers are limited"),
        ("{% for i in range(100000) %}{% endfor %}", "line 1: range() is limited to 10,000 items"),
        ("Hi\n\n{{ contact.nickname }}", "line 3: 'dict object' has no attribute 'nickname'"),
        ('{{ "a" | center(10**9) }}', "line 1: needs more than 512 MiB of memory"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError: maximum recursion"),
        ('{{ "".__class__ }}', "access to attribute '__class__' of 'str' object is unsafe"),
        ("{% set x = [] %}{{ x.append(1) }}", "access to attribute 'append' of 'list' object"),
        ("Hi\n{{ contact.first_name ", "line 2: unexpected end of template"),
    ],
)
async def test_a_hostile_template_ends_in_a_one_line_template_error(
    body: str, expected: str
) -> None:
    assert expected in await refused(body)


async def test_powers_group_to_the_left_in_jinja() -> None:
    """`10**10**10` is (10**10)**10 in Jinja: 10^100, harmless, so it renders."""
    letter = await merge("{{ 10**10**10 }} {{ 2**100 }}")
    assert letter.body == f"{10**100} {2**100}"


async def test_a_runaway_loop_stops_at_the_time_limit_and_the_next_render_works(
    warm: None, half_a_second: float
) -> None:
    started = time.monotonic()
    assert await refused(RUNAWAY) == "took longer than 0.5 s"
    assert half_a_second <= time.monotonic() - started < half_a_second + 1.5
    assert (await merge("Dear {{ contact.first_name }}")).body == "Dear Grace"
    assert len(multiprocessing.active_children()) <= rendering.CHILDREN


async def test_a_runaway_render_holds_up_neither_the_event_loop_nor_other_renders(
    warm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPPORTUNITIES_TEMPLATE_SECONDS", "1.5")
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    ticking = asyncio.create_task(ticker())
    runaway = asyncio.create_task(merge(RUNAWAY))
    try:
        good = await merge("Dear {{ contact.first_name }}")
        assert good.body == "Dear Grace"
        assert not runaway.done(), "the good letter did not wait for the runaway one"
        with pytest.raises(TemplateError) as raised:
            await runaway
        assert str(raised.value) == "took longer than 1.5 s"
    finally:
        ticking.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert len(ticks) >= 20 and max(gaps) < 0.25, f"longest gap {max(gaps):.3f} s"


async def test_a_renderer_that_dies_is_unavailable_once_then_replaced() -> None:
    rendering.shutdown()  # start from no children: the render below starts the only one
    await merge("warm")
    [child] = multiprocessing.active_children()
    os.kill(child.pid or 0, signal.SIGKILL)
    with pytest.raises(RendererUnavailable, match="stopped unexpectedly"):
        await merge("Dear {{ contact.first_name }}")
    assert (await merge("Dear {{ contact.first_name }}")).body == "Dear Grace"
    assert len(multiprocessing.active_children()) == 1


async def test_a_good_template_renders_with_its_subject_line() -> None:
    letter = await merge("Subject: Welcome, {{ contact.first_name }}\nDear {{ contact.last_name }}")
    assert (letter.subject, letter.body) == ("Welcome, Grace", "Dear Hopper")
    plain = await merge("Dear {{ contact.first_name }}")
    assert (plain.subject, plain.body) == ("Hello", "Dear Grace")


async def test_a_letter_stops_at_the_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPPORTUNITIES_LETTER_MAX_BYTES", "1000")
    exactly = await merge('{% for i in range(100) %}{{ "0123456789" }}{% endfor %}')
    assert len(exactly.body) == 1000
    over = '{% for i in range(101) %}{{ "0123456789" }}{% endfor %}'
    assert await refused(over) == "the letter is longer than 1,000 bytes"
    assert await refused('{{ "é" * 600 }}') == "the letter is longer than 1,000 bytes"
    assert "str * 1001 would be longer than 1,000" in await refused('{{ "A" * 1001 }}')


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPPORTUNITIES_TEMPLATE_SECONDS", "0"),
        ("OPPORTUNITIES_TEMPLATE_SECONDS", "-1"),
        ("OPPORTUNITIES_TEMPLATE_SECONDS", "soon"),
        ("OPPORTUNITIES_TEMPLATE_SECONDS", "inf"),
        ("OPPORTUNITIES_LETTER_MAX_BYTES", "0"),
        ("OPPORTUNITIES_LETTER_MAX_BYTES", "1.5"),
        ("OPPORTUNITIES_LETTER_MAX_BYTES", "lots"),
        ("OPPORTUNITIES_TEMPLATE_CONCURRENCY", "0"),
        ("OPPORTUNITIES_TEMPLATE_CONCURRENCY", "4"),
        ("OPPORTUNITIES_TEMPLATE_CONCURRENCY", "1.5"),
        ("OPPORTUNITIES_TEMPLATE_CONCURRENCY", "all"),
    ],
)
async def test_a_bad_limit_setting_stops_the_worker_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(BadSetting, match=f"^{name} must be a positive .*, not '{value}'$"):
        await serve(asyncio.Event())


# --- one template's share of the children ------------------------------------------------------


async def test_one_template_holds_at_most_its_share_and_the_others_go_on(
    warm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four runaway renders of one template: two run at a time (the default share), so the
    whole batch takes two rounds of the time limit, while another template's letters go
    through at once."""
    monkeypatch.setenv("OPPORTUNITIES_TEMPLATE_SECONDS", "1")
    assert rendering.concurrency() == 2
    started = time.monotonic()
    heavy = [asyncio.create_task(merge(RUNAWAY, template="heavy")) for _ in range(4)]
    await asyncio.sleep(0)  # all four have asked for a slot
    for _ in range(5):
        good = await merge("Dear {{ contact.first_name }}", template="light")
        assert good.body == "Dear Grace"
    light_done = time.monotonic() - started
    assert not any(task.done() for task in heavy), "the light letters waited for a runaway"
    outcomes = await asyncio.gather(*heavy, return_exceptions=True)
    heavy_done = time.monotonic() - started
    assert all(isinstance(outcome, TemplateTimeout) for outcome in outcomes), outcomes
    assert light_done < 0.9 and 2.0 <= heavy_done < 2.0 + 1.5, (light_done, heavy_done)
    assert rendering._gates == {}, "no gate is left behind"


async def test_a_slow_template_renders_one_at_a_time(
    warm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPPORTUNITIES_TEMPLATE_SECONDS", "0.5")
    started = time.monotonic()
    heavy = [merge(RUNAWAY, template="slow", slow=True) for _ in range(3)]
    outcomes = await asyncio.gather(*heavy, return_exceptions=True)
    assert all(isinstance(outcome, TemplateTimeout) for outcome in outcomes), outcomes
    assert 1.5 <= time.monotonic() - started < 1.5 + 1.5


async def test_a_template_found_slow_meanwhile_gives_those_waiting_one_slot(
    warm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`slow_down` while renders wait: those not yet started run one at a time."""
    monkeypatch.setenv("OPPORTUNITIES_TEMPLATE_SECONDS", "0.5")
    started = time.monotonic()
    heavy = [asyncio.create_task(merge(RUNAWAY, template="found")) for _ in range(4)]
    await asyncio.sleep(0)  # all four have asked for a slot: two run, two wait
    rendering.slow_down("found")
    outcomes = await asyncio.gather(*heavy, return_exceptions=True)
    assert all(isinstance(outcome, TemplateTimeout) for outcome in outcomes), outcomes
    assert 1.5 <= time.monotonic() - started < 1.5 + 1.5  # 2 at once, then 1, then 1


async def test_a_render_that_gets_no_slot_in_time_is_busy_and_leaves_the_line(
    warm: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A render waits for its template's slot at most `wait` seconds, then `RendererBusy` (a
    `TimeoutError`: classified transient, retried); a waiting render that is cancelled leaves
    the line too. The renders in hand are not disturbed."""
    monkeypatch.setenv("OPPORTUNITIES_TEMPLATE_SECONDS", "1")
    heavy = [asyncio.create_task(merge(RUNAWAY, template="busy")) for _ in range(2)]
    cancelled = asyncio.create_task(merge(RUNAWAY, template="busy"))
    await asyncio.sleep(0)  # two run, one waits
    started = time.monotonic()
    with pytest.raises(RendererBusy, match="template 'busy' had no free render slot in time"):
        await merge("Dear {{ contact.first_name }}", template="busy", wait=0.3)
    assert 0.3 <= time.monotonic() - started < 0.9
    assert classify(RendererBusy("busy")) == "transient"
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    outcomes = await asyncio.gather(*heavy, return_exceptions=True)
    assert all(isinstance(outcome, TemplateTimeout) for outcome in outcomes), outcomes
    assert rendering._gates == {}


# --- what a render may produce -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('Subject: {{ "x" * 501 }}\nText', "the subject is longer than 500 characters (501)"),
        ('Subject: {{ "x" * 200000 }}\nText', "the subject is longer than 500 characters"),
        ("Subject: {{ '' }}\nText", "the subject is empty"),
        ('Subject: a{{ "\\r" }}Bcc: x\nText', "the subject must be one line of text; it "
         "contains a line break"),
        ('Subject: a{{ "\\x1b" }}[31m\nText', "the subject must be one line of text; it "
         "contains a control character (U+001B)"),
        ('Subject: Hi\nText{{ "\\x00" }}', "the letter contains a control character (U+0000); "
         "only newlines and tabs are allowed"),
        ('Text{{ "\\r" }}', "the letter contains a line break; only newlines and tabs"),
    ],
)  # fmt: skip
async def test_a_subject_or_body_past_its_bound_is_a_template_error(
    body: str, expected: str
) -> None:
    assert expected in await refused(body)


async def test_a_subject_at_its_bound_renders() -> None:
    letter = await merge('Subject: {{ "x" * 500 }}\nText')
    assert (len(letter.subject), letter.body) == (500, "Text")


_LINE: TypeAdapter[str] = TypeAdapter(Line)

_any_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.builds(lambda c, n: c * n, st.characters(exclude_categories=()), st.integers(0, 700)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(subject=_any_text, body=_any_text)
def test_whatever_a_template_renders_is_stored_bounded_or_refused(subject: str, body: str) -> None:
    """Any text a template may produce, control characters, lone surrogates and lengths past
    the bounds included: the render is a letter whose subject is one `Line` and whose body
    is free text, or a one-line `TemplateError`; and a valid subject and body always pass."""
    template = "Subject: {{ subject }}\n{{ body }}"
    variables = {**SAMPLE_VARIABLES, "subject": subject, "body": body}
    valid = subject.strip() == subject and "\n" not in subject
    try:
        _LINE.validate_python(subject)
        free_text(body)
    except ValueError:
        valid = False
    try:
        letter = asyncio.run(render(template, variables, default_subject="Hello"))
    except TemplateError as error:
        assert "\n" not in str(error) and not valid, (subject, body, str(error))
        return
    _LINE.validate_python(letter.subject)
    free_text(letter.body)
    if valid:
        assert (letter.subject, letter.body) == (subject, body.lstrip("\n"))


# --- the slowness record -----------------------------------------------------------------------


async def test_timeouts_in_a_row_mark_a_template_slow_until_a_new_body_or_a_success(
    pool: asyncpg.Pool, uid: str
) -> None:
    name, body = f"slow-{uid}", "Dear {{ contact.first_name }}"
    await put_template(pool, name, body)
    for count in range(1, SLOW_AFTER + 2):
        marked = await letters.record_timeout(pool, name, body, slow_after=SLOW_AFTER)
        assert marked is not None and marked.timeouts == count
        assert marked.slow == (count >= SLOW_AFTER)
    first = await letters.get_template(pool, name)
    assert first is not None and first.slow_since is not None and first.timeouts == SLOW_AFTER + 1
    # a timeout of a body that was replaced meanwhile counts for nothing
    assert await letters.record_timeout(pool, name, "other", slow_after=SLOW_AFTER) is None
    # the same body again keeps the record; a new body clears it
    await put_template(pool, name, body)
    again = await letters.get_template(pool, name)
    assert again is not None and (again.timeouts, again.slow_since) == (
        first.timeouts,
        first.slow_since,
    )
    await put_template(pool, name, body + ".")
    fresh = await letters.get_template(pool, name)
    assert fresh is not None and (fresh.timeouts, fresh.slow, fresh.last_timeout_at) == (
        0,
        False,
        None,
    )
    # a render in time clears it too
    for _ in range(SLOW_AFTER):
        await letters.record_timeout(pool, name, body + ".", slow_after=SLOW_AFTER)
    await letters.clear_timeouts(pool, name, body + ".")
    cleared = await letters.get_template(pool, name)
    assert cleared is not None and (cleared.timeouts, cleared.slow) == (0, False)


def test_check_template_only_parses_and_names_the_line() -> None:
    check_template("{{ 1/0 }}")
    with pytest.raises(TemplateError, match=r"^line 2: unexpected end of template"):
        check_template("Hi\n{{ contact.first_name ")
    with pytest.raises(TemplateError, match="nested too deeply"):
        check_template("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")


async def test_the_sample_has_every_contact_field_and_the_examples_merge() -> None:
    assert set(SAMPLE_VARIABLES["contact"]) == set(Contact.model_fields)
    for path in sorted((ROOT / "examples" / "templates").glob("*.j2")):
        letter = await merge(path.read_text())
        assert "Grace Hopper" in letter.body, path


async def test_put_template_refuses_a_template_that_fails_and_stores_nothing(
    pool: asyncpg.Pool, uid: str
) -> None:
    with pytest.raises(TemplateError, match="division by zero"):
        await put_template(pool, f"bad-{uid}", "Dear {{ 1/0 }}")
    with pytest.raises(TemplateError, match="65,537 bytes, over the limit of 65,536"):
        await put_template(pool, f"big-{uid}", "x" * (64 * 1024 + 1))
    assert await letters.get_template(pool, f"bad-{uid}") is None
    assert await letters.get_template(pool, f"big-{uid}") is None


async def test_template_add_refuses_a_template_that_fails_at_render_time(
    cli: Cli, pool: asyncpg.Pool, tmp_path: Path, uid: str
) -> None:
    path = tmp_path / "bad.j2"
    path.write_text("Subject: Hello\nDear {{ contact.first_name / 0 }}\n")
    result = await cli("template", "add", f"bad-{uid}", str(path))
    assert result.code == 1
    assert result.stderr.splitlines() == [
        f"error: template {path} cannot be used: line 2: "
        "TypeError: unsupported operand type(s) for /: 'str' and 'int'"
    ]
    assert await letters.get_template(pool, f"bad-{uid}") is None


async def test_a_letter_whose_template_divides_by_zero_fails_without_retrying(
    worker: Worker, pool: asyncpg.Pool, opportunities: OpportunitiesClient, uid: str
) -> None:
    await open_one(pool, opportunities, uid, contact={"email": "ada@example.com"}, on_entry=False)
    await store_unchecked_template(pool, f"welcome-{uid}", "Dear {{ 1/0 }}")
    result = await opportunities.perform_actions(f"o-{uid}", ["welcome-letter"])
    [failed] = result.actions
    assert failed.outcome == "failed"
    assert failed.message == (
        f"letter template 'welcome-{uid}' cannot be merged: line 1: "
        "ZeroDivisionError: division by zero"
    )
    history = [event async for event in opportunities.handle(f"o-{uid}").fetch_history_events()]
    sends = {
        event.event_id
        for event in history
        if event.activity_task_scheduled_event_attributes.activity_type.name == "send_letter"
    }
    attempts = [
        event.activity_task_started_event_attributes.attempt
        for event in history
        if event.activity_task_started_event_attributes.scheduled_event_id in sends
    ]
    assert attempts == [1], "one attempt: the failure is not retried"
    state = await opportunities.state(f"o-{uid}")
    _, action = state.find_action("welcome-letter") or (None, None)
    assert action is not None and not action.completed
    assert await letters.list_letters(pool, f"o-{uid}") == []
