"""The worker's own settings: read from the environment, with a clear error for bad values."""

from __future__ import annotations

import pytest

from worker import cached_workflows


def test_cached_workflows_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPPORTUNITIES_MAX_CACHED_WORKFLOWS", raising=False)
    assert cached_workflows() == 5000
    monkeypatch.setenv("OPPORTUNITIES_MAX_CACHED_WORKFLOWS", "250")
    assert cached_workflows() == 250


@pytest.mark.parametrize(
    ("raw", "message"),
    [("lots", "must be a whole number, not 'lots'"), ("-1", "must be 0 or more, not -1")],
)
def test_cached_workflows_rejects_bad_values(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv("OPPORTUNITIES_MAX_CACHED_WORKFLOWS", raw)
    with pytest.raises(SystemExit, match=message):
        cached_workflows()
