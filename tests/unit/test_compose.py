"""docker-compose.yml is a valid Compose file with the production topology."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from runtime import codec_server, embedded, search_attributes

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "reference" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_validates_against_the_compose_specification(compose: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)  # the draft its `$schema` names
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_has_the_production_topology(compose: dict) -> None:
    services = compose["services"]
    assert {"postgresql", "temporal", "temporal-setup", "temporal-ui", "worker"} <= set(services)
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["worker"]["deploy"]["replicas"] >= 2
    worker_env = services["worker"]["environment"]
    assert worker_env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert worker_env["DATABASE_URL"].startswith("postgresql://")
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_payloads_are_encrypted_and_the_ui_decodes_them(compose: dict) -> None:
    services = compose["services"]
    worker_env = services["worker"]["environment"]
    codec_env = services["codec-server"]["environment"]
    key = worker_env["OPPORTUNITIES_ENCRYPTION_KEY"]
    assert key == codec_env["OPPORTUNITIES_ENCRYPTION_KEY"]
    assert key.startswith("${OPPORTUNITIES_ENCRYPTION_KEY:?"), "no key, no start"
    command = services["codec-server"]["command"]
    assert command[:2] == ["opportunities", "codec-server"]
    origin = command[command.index("--cors-origin") + 1]
    assert origin == "http://localhost:8080"  # the UI's published port
    port = command[command.index("--port") + 1]
    assert f"127.0.0.1:{port}:{port}" in services["codec-server"]["ports"]
    assert services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"] == (
        f"http://localhost:{port}"
    )
    assert worker_env["OPPORTUNITIES_METRICS_PORT"] in services["worker"]["expose"]
    assert worker_env["OPPORTUNITIES_METRICS_HOST"] == "0.0.0.0"  # the default is loopback


def test_the_published_codec_server_cannot_start_without_a_token(compose: dict) -> None:
    service = compose["services"]["codec-server"]
    host = service["command"][service["command"].index("--host") + 1]
    assert not codec_server.is_loopback(host)  # published: the token must protect it
    token = service["environment"][codec_server.TOKEN_VARIABLE]
    assert token.startswith(f"${{{codec_server.TOKEN_VARIABLE}:?"), "no token, no start"


def test_registers_every_search_attribute_of_the_contract_or_fails(compose: dict) -> None:
    setup = compose["services"]["temporal-setup"]
    script = " ".join(setup["command"])
    for key in search_attributes.ALL:
        assert f"{key.name}={key._metadata_type}" in script
    assert setup["entrypoint"] == ["/bin/sh", "-euc"]  # any failing step fails the job
    assert "|| true" not in script  # a registration that fails fails the job
    assert "temporal operator namespace create" in script
    depends = compose["services"]["worker"]["depends_on"]["temporal-setup"]
    assert depends == {"condition": "service_completed_successfully"}


def test_follows_temporals_self_hosted_guidance(compose: dict) -> None:
    """The server image with its schema set up by admin-tools (not the deprecated
    auto-setup), and the UI of the same generation as the dev server's."""
    services = compose["services"]
    images = {name: service.get("image", "") for name, service in services.items()}
    assert not any("auto-setup" in image for image in images.values())
    server = images["temporal"].split(":")
    assert server[0] == "temporalio/server"
    schema = services["temporal-schema"]
    assert schema["image"] == f"temporalio/admin-tools:{server[1]}"
    assert "update-schema" in " ".join(schema["command"])
    assert services["temporal"]["depends_on"]["temporal-schema"] == {
        "condition": "service_completed_successfully"
    }
    version = subprocess.run(
        [embedded.temporal_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    ui = re.search(r"UI ([0-9.]+)", version)
    assert ui is not None and images["temporal-ui"] == f"temporalio/ui:{ui.group(1)}"


def test_publishes_nothing_beyond_loopback_and_has_no_default_password(compose: dict) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    text = (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD: opportunities" not in text
    password = compose["services"]["postgresql"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD:?"), "no password, no start"


def test_has_healthchecks_and_a_job_storing_the_examples(compose: dict) -> None:
    services = compose["services"]
    for name in ("postgresql", "worker", "codec-server"):
        assert "test" in services[name]["healthcheck"], name
    examples = services["examples"]
    assert examples["command"] == ["python", "-m", "starter.examples"]
    assert examples["restart"] == "no"
    assert (ROOT / "examples" / "processes").is_dir()


def test_its_header_tells_the_host_cli_what_to_set() -> None:
    header = (ROOT / "docker-compose.yml").read_text().split("\nname:", 1)[0]
    for variable in ("TEMPORAL_ADDRESS", "DATABASE_URL", "OPPORTUNITIES_ENCRYPTION_KEY",
                     "POSTGRES_PASSWORD", "OPPORTUNITIES_CODEC_TOKEN",
                     "OPPORTUNITIES_SECRETS_KEY"):  # fmt: skip
        assert variable in header


def test_webhooks_reach_only_public_addresses_and_secrets_are_sealed(compose: dict) -> None:
    worker = compose["services"]["worker"]["environment"]
    assert worker["OPPORTUNITIES_WEBHOOK_ADDRESSES"] == "public"
    assert worker["OPPORTUNITIES_SECRETS_KEY"].startswith("${OPPORTUNITIES_SECRETS_KEY:?")


def test_authorization_is_enforced_and_the_ui_cannot_write(compose: dict) -> None:
    assert compose["services"]["worker"]["environment"]["SALES_AUTH"] == "enforce"
    ui = compose["services"]["temporal-ui"]["environment"]
    assert ui["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"


def test_the_database_is_migrated_by_a_setup_step_before_any_worker(compose: dict) -> None:
    services = compose["services"]
    assert services["setup"]["command"][:2] == ["opportunities", "migrate"]
    assert services["setup"]["environment"]["SALES_AUTH"] == "enforce", "the mode is set up"
    logins = dict(
        word.split("=") for word in services["setup"]["command"][2:] if word != "--login"
    )
    assert logins == {"worker": "sales_worker", "office": "sales_office"}
    worker_url = services["worker"]["environment"]["DATABASE_URL"]
    assert worker_url.startswith("postgresql://worker:"), "workers connect as their login"
    for name in ("worker", "examples"):
        assert services[name]["depends_on"]["setup"] == {
            "condition": "service_completed_successfully"
        }
