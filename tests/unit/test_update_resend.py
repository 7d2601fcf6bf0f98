"""Which update refusals the client sends again: those that mean the command was not applied."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from starter.client import NOT_PROCESSED, _says_resend


def test_an_update_the_run_never_took_is_sent_again_and_a_rejection_is_not() -> None:
    server = ApplicationError(
        f"{NOT_PROCESSED}. Probably, Workflow Update is not supported by the worker."
    )
    assert _says_resend(server)
    assert _says_resend(ApplicationError("queue full", {"code": "limit_reached", "resend": True}))
    assert not _says_resend(ApplicationError("already owned", {"code": "already_owned"}))
    assert not _says_resend(ApplicationError(f"a note that quotes it: {NOT_PROCESSED}"))
