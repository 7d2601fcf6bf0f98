"""The Worker Versioning settings: a bad value stops the worker with one line naming it."""

from __future__ import annotations

import pytest

import worker
from runtime import deployment, settings


def test_the_default_version_is_the_code_hash_of_the_default_deployment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OPPORTUNITIES_DEPLOYMENT", "OPPORTUNITIES_BUILD_ID",
                 "OPPORTUNITIES_WORKER_VERSIONING"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPPORTUNITIES_LOCAL_ENV", "/nonexistent")
    running = deployment.version()
    assert running is not None and running.deployment_name == "opportunities"
    assert running.build_id == deployment.source_build_id()
    assert deployment.source_build_id().startswith("src-") and len(running.build_id) == 16
    monkeypatch.setenv("OPPORTUNITIES_WORKER_VERSIONING", "off")
    assert deployment.version() is None and deployment.config(None) is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OPPORTUNITIES_BUILD_ID", "has space"),
        ("OPPORTUNITIES_BUILD_ID", "x" * 101),
        ("OPPORTUNITIES_DEPLOYMENT", "-leading"),
        ("OPPORTUNITIES_DEPLOYMENT", "naïve"),
        ("OPPORTUNITIES_WORKER_VERSIONING", "maybe"),
        ("OPPORTUNITIES_SET_CURRENT", "sometimes"),
    ],
)
def test_a_bad_versioning_setting_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("OPPORTUNITIES_WORKER_VERSIONING", "on")
    monkeypatch.setenv(variable, value)
    with pytest.raises(settings.BadSetting) as refused:
        deployment.version()
        deployment.set_current_setting()
    assert variable in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("value", ["many", "0", "1", "10001", "-5"])
def test_a_bad_concurrency_stops_the_worker_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OPPORTUNITIES_MAX_CONCURRENT_WORKFLOW_TASKS", value)
    with pytest.raises(SystemExit, match="OPPORTUNITIES_MAX_CONCURRENT_WORKFLOW_TASKS"):
        worker.concurrency("OPPORTUNITIES_MAX_CONCURRENT_WORKFLOW_TASKS", 2)
    monkeypatch.setenv("OPPORTUNITIES_MAX_CONCURRENT_WORKFLOW_TASKS", "8")
    assert worker.concurrency("OPPORTUNITIES_MAX_CONCURRENT_WORKFLOW_TASKS", 2) == 8
