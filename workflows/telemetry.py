"""The service's own metrics, recorded from workflow code through Temporal's metric meter
(which skips replays, so a command counts once however often its history is replayed), and
served with the SDK's metrics on `OPPORTUNITIES_METRICS_PORT`."""

from __future__ import annotations

from temporalio import workflow

COMMANDS = "opportunities_commands"
EFFECTS = "opportunities_effects"
EFFECT_FAILURES = "opportunities_effect_failures"
DEAD_LETTERS = "opportunities_dead_letters"
UNVERIFIED = "opportunities_unverified_commands"


def count_command(command: str, result: str, count: int = 1) -> None:
    """Commands handled: `result` is applied, duplicate or rejected."""
    workflow.metric_meter().create_counter(
        COMMANDS, "Commands handled by opportunities, by command and result"
    ).add(count, {"command": command, "result": result})


def count_effect(effect: str) -> None:
    """One effect carried out as an activity (create_calendar_activity, send_letter, ...)."""
    workflow.metric_meter().create_counter(
        EFFECTS, "Effects carried out by opportunities, by effect"
    ).add(1, {"effect": effect})


def count_effect_failure(effect: str, code: str) -> None:
    """An effect that failed for good (after its retries), by effect and code."""
    workflow.metric_meter().create_counter(
        EFFECT_FAILURES, "Effects of opportunities that failed for good, by effect and code"
    ).add(1, {"effect": effect, "code": code})


def count_dead_letter(part: str) -> None:
    """A part of a projection the read model refused (`calendar`, `history`, `remark`,
    `opportunity`), kept in its `dead_letters` table."""
    workflow.metric_meter().create_counter(
        DEAD_LETTERS, "Parts of projections the read model refused, by part"
    ).add(1, {"part": part})


def count_unverified(command: str) -> None:
    """A command applied without a signature while authorization records (`record`)."""
    workflow.metric_meter().create_counter(
        UNVERIFIED, "Commands applied unsigned while authorization records, by command"
    ).add(1, {"command": command})
