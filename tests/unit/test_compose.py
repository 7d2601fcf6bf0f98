"""docker-compose.yml is a valid Compose file with the production topology."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from runtime import codec_server, search_attributes

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
    assert f"{port}:{port}" in services["codec-server"]["ports"]
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


def test_registers_every_search_attribute_of_the_contract(compose: dict) -> None:
    setup = " ".join(compose["services"]["temporal-setup"]["command"])
    for key in search_attributes.ALL:
        assert f"{key.name}={key._metadata_type}" in setup
