"""What operators watch: Prometheus metrics and structured logs of the worker.

Metrics: with `OPPORTUNITIES_METRICS_PORT` set, the worker's Temporal runtime serves
Prometheus metrics on that port (`/metrics`), on loopback unless `OPPORTUNITIES_METRICS_HOST`
names another address (a container that publishes them sets `0.0.0.0`): the SDK's own
(`temporal_workflow_task_*`, `temporal_activity_*`, sticky cache, pollers) and the service's,
which the workflows record through Temporal's metric meter, so that replays never count twice:
`opportunities_commands` (by `command` and `result`: applied, duplicate, rejected) and
`opportunities_effects` (by `effect`).

Logs: one JSON object per line, with the workflow id, run id and activity type that the SDK's
workflow and activity loggers attach, and the opportunity id read from the workflow id.
Payloads are never logged. Every record is one line in either format, whatever it quotes (a
command's name, an error): control and bidi characters are escaped (`runtime.escaping`), so
a name cannot forge a line or colour the terminal.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from runtime.escaping import escaped, json_text
from runtime.settings import BadSetting, setting
from runtime.workflow_ids import opportunity_id_of

DEFAULT_METRICS_HOST = "127.0.0.1"
"""Metrics stay on the machine unless an operator names another address."""


def metrics_address() -> str | None:
    """`host:port` the metrics are served on, when a port is configured."""
    port = setting("OPPORTUNITIES_METRICS_PORT")
    if not port:
        return None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadSetting(f"OPPORTUNITIES_METRICS_PORT must be a port number, not {port!r}")
    host = setting("OPPORTUNITIES_METRICS_HOST") or DEFAULT_METRICS_HOST
    return f"{host}:{port}"


def metrics_runtime() -> Runtime | None:
    """A Temporal runtime serving Prometheus metrics, when a port is configured."""
    address = metrics_address()
    if address is None:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, lifting the SDK's workflow and activity context; control
    and bidi characters written as `\\uXXXX`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "temporal_workflow", None) or getattr(
            record, "temporal_activity", None
        )
        if isinstance(context, dict):
            for key in ("workflow_id", "run_id", "workflow_type", "activity_type", "attempt"):
                if key in context:
                    entry[key] = context[key]
            workflow_id = str(context.get("workflow_id", ""))
            opportunity_id = opportunity_id_of(workflow_id)
            if opportunity_id is not None:
                entry["opportunity_id"] = opportunity_id
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json_text(entry, indent=None)


class TextFormatter(logging.Formatter):
    """`time level logger message`, one line per record: control and bidi characters (and a
    traceback's line breaks) escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return escaped(super().format(record))


def configure_logging() -> None:
    """JSON lines on stderr (`OPPORTUNITIES_LOG_FORMAT=text` for plain lines)."""
    handler = logging.StreamHandler()
    if (setting("OPPORTUNITIES_LOG_FORMAT") or "json") == "text":
        handler.setFormatter(TextFormatter())
    else:
        handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
