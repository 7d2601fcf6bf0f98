"""Which update refusals the client sends again: those that mean the command was not applied."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from starter.client import NOT_PROCESSED, _says_resend, _signal_resendable, _update_resendable


def test_an_update_the_run_never_took_is_sent_again_and_a_rejection_is_not() -> None:
    server = ApplicationError(
        f"{NOT_PROCESSED}. Probably, Workflow Update is not supported by the worker."
    )
    assert _says_resend(server)
    assert _says_resend(ApplicationError("queue full", {"code": "limit_reached", "resend": True}))
    assert not _says_resend(ApplicationError("already owned", {"code": "already_owned"}))
    assert not _says_resend(ApplicationError(f"a note that quotes it: {NOT_PROCESSED}"))


def test_an_update_call_the_connection_cancelled_is_sent_again_a_signal_is_not() -> None:
    cancelled = RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")
    assert _update_resendable(cancelled)
    assert not _signal_resendable(cancelled)
    refused = RPCError("bad", RPCStatusCode.INVALID_ARGUMENT, b"")
    assert not _update_resendable(refused)
