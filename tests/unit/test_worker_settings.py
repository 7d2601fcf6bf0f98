"""The worker's own settings: read from the environment, with a clear error for bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from runtime.observability import metrics_address
from runtime.settings import redact
from runtime.temporal import connect_config
from worker import cached_workflows, workflow_runner


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


def test_workflow_sandbox_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPPORTUNITIES_WORKFLOW_SANDBOX", raising=False)
    assert isinstance(workflow_runner(), UnsandboxedWorkflowRunner)
    monkeypatch.setenv("OPPORTUNITIES_WORKFLOW_SANDBOX", "ON")
    assert isinstance(workflow_runner(), SandboxedWorkflowRunner)
    monkeypatch.setenv("OPPORTUNITIES_WORKFLOW_SANDBOX", "maybe")
    with pytest.raises(SystemExit, match="must be on or off, not 'maybe'"):
        workflow_runner()


def test_metrics_listen_on_loopback_unless_a_host_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPPORTUNITIES_LOCAL_ENV", str(tmp_path / "none.env"))
    monkeypatch.delenv("OPPORTUNITIES_METRICS_HOST", raising=False)
    monkeypatch.delenv("OPPORTUNITIES_METRICS_PORT", raising=False)
    assert metrics_address() is None
    monkeypatch.setenv("OPPORTUNITIES_METRICS_PORT", "9464")
    assert metrics_address() == "127.0.0.1:9464"
    monkeypatch.setenv("OPPORTUNITIES_METRICS_HOST", "0.0.0.0")
    assert metrics_address() == "0.0.0.0:9464"


def test_urls_are_logged_without_their_password() -> None:
    assert redact("postgresql://app:s3cret@db:5432/x?sslmode=require") == (
        "postgresql://app:***@db:5432/x?sslmode=require"
    )
    assert redact("smtp://mailer:p%40ss@mail.example") == "smtp://mailer:***@mail.example"
    assert redact("postgresql://db/x") == "postgresql://db/x"


def test_temporal_cloud_api_key_and_mtls_come_from_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "sales.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "sales.a1b2c")
    monkeypatch.setenv("TEMPORAL_API_KEY", "key-123")
    config = connect_config()
    assert config["target_host"] == "sales.a1b2c.tmprl.cloud:7233"
    assert config["namespace"] == "sales.a1b2c"
    assert config["api_key"] == "key-123" and config["tls"]

    monkeypatch.delenv("TEMPORAL_API_KEY")
    (tmp_path / "client.pem").write_bytes(b"CERT")
    (tmp_path / "client.key").write_bytes(b"KEY")
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "client.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(tmp_path / "client.key"))
    tls = connect_config()["tls"]
    assert (tls.client_cert, tls.client_private_key) == (b"CERT", b"KEY")


def test_the_cli_finds_make_runs_servers_from_any_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`make run` records its data folder in the user's state directory; without it, the
    error names every way to point the CLI at servers."""
    from runtime import settings

    for name in ("OPPORTUNITIES_LOCAL_ENV", "OPPORTUNITIES_HOME", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)  # no .data here
    assert settings.local_env_file() is None
    with pytest.raises(settings.NotConfigured) as missing:
        settings.database_url()
    for hint in ("make run", "data-folder", "OPPORTUNITIES_HOME", "DATABASE_URL",
                 "TEMPORAL_ADDRESS"):  # fmt: skip
        assert hint in str(missing.value)

    data = tmp_path / "repository" / ".data"
    data.mkdir(parents=True)
    (data / "local.env").write_text("DATABASE_URL=postgresql://x@/db\n")
    settings.data_folder_record().parent.mkdir(parents=True)
    settings.data_folder_record().write_text(f"{data}\n")
    assert settings.local_env_file() == data / "local.env"
    assert settings.database_url() == "postgresql://x@/db"

    elsewhere = tmp_path / "other"
    (elsewhere / ".data").mkdir(parents=True)
    (elsewhere / ".data" / "local.env").write_text("DATABASE_URL=postgresql://y@/db\n")
    monkeypatch.setenv("OPPORTUNITIES_HOME", str(elsewhere / ".data"))
    assert settings.database_url() == "postgresql://y@/db"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot be read"), ("{not json", "cannot be read"),
     ('{"kid": "k", "user": "u", "private_pem": "nope"}', "cannot be read")],
)  # fmt: skip
def test_a_broken_service_key_file_stops_the_worker_and_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, message: str
) -> None:
    from worker import service_key_from_environment

    path = tmp_path / "service.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("OPPORTUNITIES_SERVICE_KEY_FILE", str(path))
    with pytest.raises(SystemExit, match=f"worker not started: the key file {path} {message}"):
        service_key_from_environment()


@pytest.mark.parametrize("raw", ["0", "51", "soon"])
def test_the_authorization_reload_is_bounded(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    from worker import reload_seconds

    monkeypatch.setenv("OPPORTUNITIES_AUTHZ_RELOAD", raw)
    with pytest.raises(SystemExit, match="OPPORTUNITIES_AUTHZ_RELOAD must be"):
        reload_seconds()
