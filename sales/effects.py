"""Effects: what the workflow shell must carry out after the core decided a change.

The core never performs I/O; it returns these, and the shell turns each into an activity whose
idempotency key comes from the effect itself, so that a retry never doubles it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from sales.opportunity import HistoryEntry


class RecordHistory(BaseModel):
    kind: Literal["record_history"] = "record_history"
    entry: HistoryEntry


Effect = RecordHistory
"""Becomes a union discriminated by `kind` as effect types are added."""
