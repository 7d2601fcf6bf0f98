"""Letter rendering within limits: a template can fail, but cannot stall or exhaust the worker,
nor starve the other templates.

Templates run in Jinja's immutable sandbox, in `CHILDREN` child processes started lazily and
shared by the whole process, never in the event loop. Each child holds at most `MEMORY_LIMIT` of
address space; a render that takes longer than `OPPORTUNITIES_TEMPLATE_SECONDS` has its child
killed and replaced; a letter stops growing at `OPPORTUNITIES_LETTER_MAX_BYTES`; the subject is
one line of at most `MAX_SUBJECT` characters and the body free text (newlines and tabs, no
other control character).

Renders of one template hold at most `OPPORTUNITIES_TEMPLATE_CONCURRENCY` children at once
(fewer than `CHILDREN`, so the other templates always have one), a template marked slow only
one; the others wait in the event loop, not in the pool, for at most the time they are given.

Whatever goes wrong inside a template is a `TemplateError` (bad data, never retried), a
timeout a `TemplateTimeout`; a child that dies on its own is `RendererUnavailable`, a render
that found no free slot in time `RendererBusy` (both retried).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import functools
import math
import multiprocessing
import os
import queue
import resource
import signal
import threading
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from pydantic import BaseModel, TypeAdapter, ValidationError

from runtime import settings
from sales.contact import Contact
from sales.validation import Line, free_text

CHILDREN = 4
"""Renders that run at once, over all templates (see `concurrency` for one template's share)."""
MEMORY_LIMIT = 512 * 2**20
"""Address space of a render child; past it a template gets MemoryError, the worker nothing."""
MAX_RANGE = 10_000
MAX_EXPONENT = 100
MAX_BASE = 10**100
MAX_MESSAGE = 300
"""Characters of an error message: it is stored with the action and shown on one line."""
START_SECONDS = 60.0
"""How long a new child may take to start (its imports are not part of a render's time)."""
MAX_SUBJECT = 500
"""Characters of a subject: one `sales.validation.Line`, as stored and sent in a header."""

_SUBJECT: TypeAdapter[str] = TypeAdapter(Line)

SAMPLE_VARIABLES: dict[str, Any] = {
    "contact": Contact(
        contact_id="c-sample",
        first_name="Grace",
        last_name="Hopper",
        email="grace@example.com",
        street="1 Sample Street",
        city="Arlington",
        postal_code="22201",
        country="US",
    ).model_dump(),
    "opportunity": {
        "opportunity_id": "o-sample",
        "name": "Term life",
        "owner": "ann",
        "current_stage": "Prospect",
    },
    "process": {"process_id": "life-sample", "name": "Life insurance"},
}
"""What a template is tried against before it is stored: the shape `send_letter` merges."""


class TemplateError(Exception):
    """A template that cannot be merged: the message is one line naming the problem."""


class TemplateTimeout(TemplateError):
    """A render that took longer than the time limit; its child was killed."""


class RendererUnavailable(Exception):
    """A render child died unexpectedly; a fresh one is started for the next render."""


class RendererBusy(TimeoutError):
    """No slot of the template (or of the pool) came free within the time the render was
    given. A `TimeoutError`, so `activities.failures` classifies it transient: retried."""


class RenderedLetter(BaseModel):
    subject: str
    body: str


def time_limit() -> float:
    """`OPPORTUNITIES_TEMPLATE_SECONDS`: the wall-clock seconds one render may take."""
    raw = settings.setting("OPPORTUNITIES_TEMPLATE_SECONDS") or "2"
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise settings.BadSetting(
            f"OPPORTUNITIES_TEMPLATE_SECONDS must be a positive number of seconds, not {raw!r}"
        )
    return value


def letter_max_bytes() -> int:
    """`OPPORTUNITIES_LETTER_MAX_BYTES`: the longest letter a template may produce."""
    raw = settings.setting("OPPORTUNITIES_LETTER_MAX_BYTES") or "262144"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise settings.BadSetting(
            f"OPPORTUNITIES_LETTER_MAX_BYTES must be a positive whole number, not {raw!r}"
        )
    return value


def concurrency() -> int:
    """`OPPORTUNITIES_TEMPLATE_CONCURRENCY`: the renders of one template that run at once in
    a worker, 1 to `CHILDREN` - 1 (default half the pool), so that one template never holds
    every child however slow it is."""
    raw = settings.setting("OPPORTUNITIES_TEMPLATE_CONCURRENCY") or str(CHILDREN // 2)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value < CHILDREN:
        raise settings.BadSetting(
            "OPPORTUNITIES_TEMPLATE_CONCURRENCY must be a positive whole number below "
            f"{CHILDREN} (the render children), not {raw!r}"
        )
    return value


def check_settings() -> None:
    """Raise `BadSetting` now rather than at the first letter."""
    time_limit()
    letter_max_bytes()
    concurrency()


class LetterEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with no loader (include, import and extends fail), `range` capped at
    `MAX_RANGE` items, and the two operators that build huge values in one step refused:
    `*` repeating a str, list or tuple beyond `max_length` items, and `**` with an exponent
    over `MAX_EXPONENT` or a base over `MAX_BASE` in absolute value."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, max_length: int) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False)
        self.max_length = max_length
        self.globals["range"] = _range

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(count, int):
                    if len(sequence) * count > self.max_length:
                        raise SecurityError(
                            f"{type(sequence).__name__} * {count} would be longer than "
                            f"{self.max_length:,}"
                        )
        if operator == "**" and isinstance(left, int | float) and isinstance(right, int | float):
            if abs(right) > MAX_EXPONENT or abs(left) > MAX_BASE:
                raise SecurityError(
                    f"powers are limited to exponents up to {MAX_EXPONENT} and bases up to 1e100"
                )
        return super().call_binop(context, operator, left, right)

    def get_template(self, name: Any, *args: Any, **kwargs: Any) -> jinja2.Template:
        raise SecurityError(f"a letter cannot include, import or extend templates ({name!r})")

    def select_template(self, names: Any, *args: Any, **kwargs: Any) -> jinja2.Template:
        raise SecurityError(f"a letter cannot include, import or extend templates ({names!r})")


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE:,} items")
    return numbers


def check_template(body: str) -> None:
    """Refuse a template that does not parse, naming the line (parsing runs no template code)."""
    try:
        LetterEnvironment(0).parse(body)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"line {error.lineno}: {error.message}") from None
    except RecursionError:
        raise TemplateError("nested too deeply") from None


async def render(
    body: str,
    variables: dict[str, Any],
    *,
    default_subject: str,
    template: str | None = None,
    slow: bool = False,
    wait: float | None = None,
) -> RenderedLetter:
    """Merge a template in a render child; a first line `Subject: ...` becomes the subject.

    With `template` (its name), the render takes one of that template's slots first:
    `concurrency()` of them, one if the template is `slow` (or was found slow by this worker
    meanwhile, see `slow_down`). `wait` bounds the seconds spent waiting for a slot and for a
    child, after which it raises `RendererBusy`; the render itself is bounded by the time
    limit. The subject and body are checked (`checked`)."""
    seconds, max_bytes, limit = time_limit(), letter_max_bytes(), concurrency()
    renderers = _renderers()
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    gate = None
    if template is not None:
        gate = _gate(loop, template, 1 if slow else limit)
        await gate.enter(deadline, template)
    try:
        future = renderers.threads.submit(renderers.render, body, variables, seconds, max_bytes)
    except BaseException:
        if gate is not None:
            gate.leave()
        raise
    if gate is not None:  # the slot is the child's until the render ends, even if we leave
        future.add_done_callback(functools.partial(_leave_soon, loop, gate))
    text = await _started_in_time(loop, future, deadline)
    first, _, rest = text.partition("\n")
    if first.lower().startswith("subject:"):
        letter = RenderedLetter(subject=first[len("subject:") :].strip(), body=rest.lstrip("\n"))
    else:
        letter = RenderedLetter(subject=default_subject, body=text)
    return checked(letter)


def checked(letter: RenderedLetter) -> RenderedLetter:
    """The letter if its subject is one `Line` (at most `MAX_SUBJECT` characters, no control
    character) and its body free text; else a one-line `TemplateError` saying which."""
    try:
        _SUBJECT.validate_python(letter.subject)
    except ValidationError as error:
        problem = error.errors()[0]
        if problem["type"] == "string_too_long":
            why = f"is longer than {MAX_SUBJECT} characters ({len(letter.subject):,})"
        elif problem["type"] == "string_too_short":
            why = "is empty"
        else:
            why = str(problem["msg"]).removeprefix("Value error, ")
        raise TemplateError(f"the subject {why}") from None
    try:
        free_text(letter.body)
    except ValueError as error:
        raise TemplateError(f"the letter {error}") from None
    return letter


def slow_down(template: str) -> None:
    """A template just found slow: its renders in this worker that have not started yet get
    one slot, until none is left waiting or running (the next render asks the database)."""
    loop = asyncio.get_running_loop()
    gate = _gates.get((loop, template))
    if gate is not None:
        gate.limit = 1


async def _started_in_time(
    loop: asyncio.AbstractEventLoop, future: Future[str], deadline: float | None
) -> str:
    """The render's text. A render still queued for a child at `deadline` is withdrawn
    (`RendererBusy`); one that has started is awaited, its time limit bounds it."""
    waiting = asyncio.wrap_future(future, loop=loop)
    waiting.add_done_callback(_retrieved)  # an outcome nobody awaits any more is not logged
    try:
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        done, _ = await asyncio.wait({waiting}, timeout=timeout)
        if not done and future.cancel():
            raise RendererBusy("no letter renderer came free in time")
        return await waiting
    except asyncio.CancelledError:
        future.cancel()  # not yet started: never starts; started: runs to its time limit
        raise


def _retrieved(future: asyncio.Future[str]) -> None:
    if not future.cancelled():
        future.exception()


# --- one template's share of the pool ----------------------------------------------------------


class _Gate:
    """The renders of one template in one event loop: at most `limit` hold a child, the rest
    wait in line (first come, first served)."""

    def __init__(self, key: tuple[asyncio.AbstractEventLoop, str], limit: int) -> None:
        self.key = key
        self.limit = limit
        self.running = 0
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def enter(self, deadline: float | None, template: str) -> None:
        if self.running < self.limit and not self.waiting:
            self.running += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            async with asyncio.timeout_at(deadline):
                await turn  # `_admit` counts us in before it wakes us
        except BaseException as error:
            if turn.done() and not turn.cancelled():
                self.leave()  # admitted, but leaving: the slot goes to the next in line
            else:
                turn.cancel()
                with contextlib.suppress(ValueError):  # `_admit` may have passed over it
                    self.waiting.remove(turn)
                self._drop_if_idle()
            if isinstance(error, TimeoutError):
                raise RendererBusy(
                    f"template {template!r} had no free render slot in time "
                    f"({self.running} of its letters rendering, {len(self.waiting)} waiting)"
                ) from None
            raise

    def leave(self) -> None:
        self.running -= 1
        self._admit()
        self._drop_if_idle()

    def _admit(self) -> None:
        while self.waiting and self.running < self.limit:
            turn = self.waiting.popleft()
            if not turn.done():
                self.running += 1
                turn.set_result(None)

    def _drop_if_idle(self) -> None:
        if self.running == 0 and not self.waiting and _gates.get(self.key) is self:
            del _gates[self.key]


_gates: dict[tuple[asyncio.AbstractEventLoop, str], _Gate] = {}
"""The gates of the templates with renders running or waiting, by event loop and name."""


def _gate(loop: asyncio.AbstractEventLoop, template: str, limit: int) -> _Gate:
    """The template's gate; a caller that knows it slow lowers the limit for those behind."""
    key = (loop, template)
    gate = _gates.get(key)
    if gate is None:
        gate = _gates[key] = _Gate(key, limit)
    else:
        gate.limit = min(gate.limit, limit)
    return gate


def _leave_soon(loop: asyncio.AbstractEventLoop, gate: _Gate, _: Future[str]) -> None:
    """Runs in the render thread when a render ends: the slot is given back in the loop."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: its gates went with it
        loop.call_soon_threadsafe(gate.leave)


# --- the children ------------------------------------------------------------------------------

_CONTEXT = multiprocessing.get_context("forkserver")  # never fork: the worker has native threads
_CONTEXT.set_forkserver_preload([__name__])


class _Child:
    """One render process. A single-process executor each, so that killing a runaway render
    touches no other render."""

    def __init__(self) -> None:
        self.executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=_CONTEXT,
            initializer=_prepare_child,
            initargs=(MEMORY_LIMIT,),
        )
        try:
            self.pid = self.executor.submit(os.getpid).result(START_SECONDS)
        except (BrokenProcessPool, FutureTimeout, OSError) as error:
            self.close()
            raise RendererUnavailable(f"a letter renderer did not start: {error!r}") from None

    def kill(self) -> None:
        """Stop a render in progress: SIGKILL, since a render may be stuck in C code."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.close()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class _Renderers:
    """`CHILDREN` slots, each an idle child or None (started when taken), served by as many
    threads: a thread waits for its child's answer or its time limit, the event loop never."""

    def __init__(self) -> None:
        self.threads = ThreadPoolExecutor(CHILDREN, thread_name_prefix="letter-render")
        self.idle: queue.LifoQueue[_Child | None] = queue.LifoQueue()  # the warmest child first
        for _ in range(CHILDREN):
            self.idle.put(None)

    def render(self, body: str, variables: dict[str, Any], seconds: float, max_bytes: int) -> str:
        child = self.idle.get()  # one slot per thread: never waits
        try:
            if child is None:
                child = _Child()
            future = child.executor.submit(_render_in_child, body, variables, max_bytes)
            return future.result(seconds)
        except FutureTimeout:
            assert child is not None
            child.kill()
            child = None
            raise TemplateTimeout(f"took longer than {seconds:g} s") from None
        except BrokenProcessPool:
            assert child is not None
            child.close()
            child = None
            raise RendererUnavailable("a letter renderer stopped unexpectedly") from None
        finally:
            self.idle.put(child)

    def close(self) -> None:
        self.threads.shutdown(wait=True)
        while not self.idle.empty():
            child = self.idle.get()
            if child is not None:
                child.close()


_lock = threading.Lock()
_shared: _Renderers | None = None


def _renderers() -> _Renderers:
    """The process's renderers, started on first use."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = _Renderers()
        return _shared


@atexit.register
def shutdown() -> None:
    """Stop the render children, waiting for renders in progress; the next render starts
    fresh ones. Runs at interpreter exit."""
    global _shared
    with _lock:
        renderers, _shared = _shared, None
    if renderers is not None:
        renderers.close()


def _prepare_child(memory_limit: int) -> None:
    """Runs once in each render child: it leaves when its parent does (a worker killed, or the
    CLI leaving by `os._exit`, runs no clean-up), not on Ctrl-C (the parent stops it after the
    renders in hand), and it gets the memory cap."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory_limit = min(memory_limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, hard))


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(0)


def _render_in_child(body: str, variables: dict[str, Any], max_bytes: int) -> str:
    """Runs in a render child: the letter, or a TemplateError naming what went wrong."""
    try:
        template = LetterEnvironment(max_bytes).from_string(body)
        parts, size = [], 0
        for part in template.generate(**variables):
            size += len(part.encode())
            if size > max_bytes:
                raise TemplateError(f"the letter is longer than {max_bytes:,} bytes")
            parts.append(part)
        return "".join(parts)
    except TemplateError:
        raise
    except Exception as error:
        raise TemplateError(_describe(error)) from None


def _describe(error: Exception) -> str:
    """One line: the template line when known, and the problem."""
    if isinstance(error, jinja2.TemplateSyntaxError):
        line: int | None = error.lineno
        problem = error.message or "syntax error"
    else:
        frames = traceback.extract_tb(error.__traceback__)
        line = next((f.lineno for f in reversed(frames) if f.filename == "<template>"), None)
        if isinstance(error, MemoryError):
            problem = f"needs more than {MEMORY_LIMIT // 2**20} MiB of memory"
        elif isinstance(error, jinja2.TemplateError):
            problem = str(error)
        else:
            problem = f"{type(error).__name__}: {error}".removesuffix(": ")
    text = " ".join(problem.split())
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    return text if line is None else f"line {line}: {text}"
