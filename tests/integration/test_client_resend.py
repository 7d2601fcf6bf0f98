"""Which refused updates and signals the client sends again (they were not applied, and the
request id makes a resend harmless) and which it reports."""

from __future__ import annotations

import pytest
from google.protobuf.any_pb2 import Any
from temporalio.api.common.v1 import GrpcStatus
from temporalio.api.errordetails.v1 import WorkflowNotReadyFailure
from temporalio.service import RPCError, RPCStatusCode

from starter.client import SIGNAL_LIMIT, _resendable, _signal_resendable

pytestmark = pytest.mark.usefixtures("verified")


def _error(status: RPCStatusCode, *details: Any, message: str = "refused") -> RPCError:
    raw = GrpcStatus(code=int(status), message=message, details=list(details))
    return RPCError(message, status, raw.SerializeToString())


def _packed(message: WorkflowNotReadyFailure) -> Any:
    packed = Any()
    packed.Pack(message)
    return packed


def test_busy_aborted_and_not_ready_are_sent_again() -> None:
    assert _resendable(_error(RPCStatusCode.RESOURCE_EXHAUSTED))  # 10 updates in flight
    assert _resendable(_error(RPCStatusCode.UNAVAILABLE))  # aborted by continue-as-new
    # The workflow task carrying it failed before accepting it.
    not_ready = _packed(WorkflowNotReadyFailure())
    assert _resendable(_error(RPCStatusCode.FAILED_PRECONDITION, not_ready))


def test_other_refusals_are_reported() -> None:
    assert not _resendable(_error(RPCStatusCode.FAILED_PRECONDITION))
    assert not _resendable(_error(RPCStatusCode.NOT_FOUND))
    assert not _resendable(_error(RPCStatusCode.INVALID_ARGUMENT))
    not_ready = _packed(WorkflowNotReadyFailure())
    assert not _resendable(_error(RPCStatusCode.INVALID_ARGUMENT, not_ready))


def test_a_signal_past_the_runs_limit_is_sent_again_and_an_update_is_not() -> None:
    """A storm that kept a run from continuing as new: the run refuses signals past its
    10,000th until it continues (a status and a message, nothing else to tell it by)."""
    past_limit = _error(RPCStatusCode.INVALID_ARGUMENT, message=SIGNAL_LIMIT)
    assert _signal_resendable(past_limit)
    assert not _resendable(past_limit)
    assert _signal_resendable(_error(RPCStatusCode.UNAVAILABLE))
    assert not _signal_resendable(_error(RPCStatusCode.INVALID_ARGUMENT))
