"""When a run continues as new, and what it may carry (shared by `Opportunity` and
`MassModify`).

A run continues when the server suggests it, or at its own limit of history events: a
workflow task that fails is retried by replaying the whole run, so runs stay short enough to
replay in a moment. What a run carries is one payload, under Temporal's 2 MB limit: the state
is kept within `CARRIED_BUDGET` (the oldest rejections, request ids and history entries
left out past it) and the commands still queued within `PENDING_BUDGET` (past it, the run
applies more before it continues, and takes no more commands meanwhile: `command_queue`).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sales import core
    from sales.opportunity import Opportunity
    from sales.validation import json_size
    from workflows.messages import MAX_PENDING

MAX_RUN_EVENTS = 4000
"""An opportunity's run continues at this history length even without the server's
suggestion (which comes at 4 MB of history). Updates that arrive while a run continues are
refused to be sent again, so runs are not shorter than they need be; 4,000 events hold at
most about 1,200 updates (the server allows 2,000 a run)."""
MAX_RUN_EVENTS_UNDER_SIGNALS = 1500
"""The length at which a run that has taken `MANY_SIGNALS` signals continues. A signal that
arrives during the task continuing as new fails that task, and its retry replays the whole
run while the server holds what arrives meanwhile: under a storm of signals the replay must
take a fraction of a second, or more than 100 signals pile up, the server fails the retry
too, and the run never continues."""
MANY_SIGNALS = 300
CARRIED_BUDGET = 1024 * 1024
"""The most the state carried to the next run (and the `state` query) may take as JSON."""
PENDING_BUDGET = 256 * 1024
"""The most the queued commands carried to the next run may take as JSON."""


def run_limit(given: int | None, signals: int) -> int:
    """The history length at which an opportunity's run continues: `given` (tests and
    operators), else by how many signals the run has taken."""
    if given is not None:
        return given
    return MAX_RUN_EVENTS_UNDER_SIGNALS if signals >= MANY_SIGNALS else MAX_RUN_EVENTS


def due(limit: int | None) -> bool:
    """Whether the run should continue as new now: the server suggests it, or its history
    has `limit` events (None: only at the server's suggestion)."""
    info = workflow.info()
    if info.is_continue_as_new_suggested():
        return True
    return limit is not None and info.get_current_history_length() >= limit


def within_budget(state: Opportunity) -> Opportunity:
    """The state, or a copy without its oldest rejections, request ids and history entries
    when it would not fit `CARRIED_BUDGET`."""
    size = json_size(state.model_dump(mode="json"))
    return state if size <= CARRIED_BUDGET else core.trim(state, size - CARRIED_BUDGET)


ITEM_OVERHEAD = 200
"""What a carried command takes as JSON beside its payload (its name, ids, problem)."""


def carries(count: int, payload_bytes: int) -> bool:
    """Whether `count` queued commands with payloads of `payload_bytes` in all (as they
    arrived) fit `MAX_PENDING` and `PENDING_BUDGET`."""
    return count <= MAX_PENDING and payload_bytes + count * ITEM_OVERHEAD <= PENDING_BUDGET
