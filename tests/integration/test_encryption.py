"""Payload encryption: history on the server is unreadable without the key; the codec server
lets the Temporal CLI read it; keys rotate without losing old payloads; a payload in clear, or
one that cannot be opened, becomes a marker instead of an error."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowUpdateFailedError

from runtime import codec_server, embedded
from runtime.codec import (
    ALLOW_PLAINTEXT_VARIABLE,
    ENCODING,
    KEY_ID,
    KEY_VARIABLE,
    PLAINTEXT_REFUSED_REASON,
    REASON,
    REFUSED_PLAINTEXT,
    UNDECODABLE,
    EncryptionCodec,
    Keyring,
    KeySettingError,
    codec_from_environment,
    data_converter,
)
from starter.client import OpportunitiesClient
from tests.support.helpers import TEST_KEYS, setup_contact, setup_process
from tests.support.servers import Servers
from worker import build_worker

pytestmark = pytest.mark.usefixtures("verified")

KEY_1 = TEST_KEYS.partition(":")[2]
KEY_2 = base64.b64encode(os.urandom(32)).decode()
SECRET = "Zebulon-Quixote"


def test_a_key_setting_that_cannot_work_says_why_without_the_key() -> None:
    assert Keyring.parse(f"new:{KEY_2}, old:{KEY_1}").current == "new"
    for text, message in [
        ("", "holds no key"),
        ("nocolon", "is not ID:BASE64"),
        ("k:not base64!", "key 'k' is not valid base64"),
        (f"k:{base64.b64encode(b'short').decode()}", "key 'k' has 5 bytes"),
        (f"k:{KEY_1},k:{KEY_2}", "key id 'k' is given twice"),
    ]:
        with pytest.raises(KeySettingError, match=message) as raised:
            Keyring.parse(text)
        assert KEY_1 not in str(raised.value) and KEY_2 not in str(raised.value)


async def test_rotation_keeps_old_payloads_readable_and_plain_ones_pass_when_allowed() -> None:
    old = EncryptionCodec(Keyring.parse(f"old:{KEY_1}"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"name": "x"}')
    [sealed] = await old.encode([plain])
    assert sealed.metadata["encoding"] == ENCODING and b"name" not in sealed.data
    rotated = EncryptionCodec(Keyring.parse(f"new:{KEY_2},old:{KEY_1}"), allow_plaintext=True)
    [resealed] = await rotated.encode([plain])
    assert resealed.metadata["encryption-key-id"] == b"new"
    assert await rotated.decode([sealed, resealed, plain]) == [plain, plain, plain]
    [unknown] = await old.decode([resealed])
    assert unknown.metadata["encoding"] == UNDECODABLE
    assert b"encrypted with key 'new', which" in unknown.metadata[REASON]


async def test_a_plaintext_payload_is_refused_unless_a_migration_allows_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=f'"{SECRET}"'.encode())
    null = Payload(metadata={"encoding": b"binary/null"})
    monkeypatch.setenv("OPPORTUNITIES_LOCAL_ENV", str(tmp_path / "none.env"))
    monkeypatch.setenv(KEY_VARIABLE, TEST_KEYS)
    monkeypatch.delenv(ALLOW_PLAINTEXT_VARIABLE, raising=False)
    strict = codec_from_environment()
    assert strict is not None and not strict.allow_plaintext
    [refused, passed] = await strict.decode([plain, null])
    assert refused == Payload(
        metadata={"encoding": REFUSED_PLAINTEXT, REASON: PLAINTEXT_REFUSED_REASON.encode()}
    )
    assert passed == null  # not data

    monkeypatch.setenv(ALLOW_PLAINTEXT_VARIABLE, "true")
    migrating = codec_from_environment()
    assert migrating is not None and await migrating.decode([plain, null]) == [plain, null]
    monkeypatch.setenv(ALLOW_PLAINTEXT_VARIABLE, "yes")
    with pytest.raises(KeySettingError, match="must be true or false, not 'yes'"):
        codec_from_environment()


async def test_a_payload_that_cannot_be_opened_becomes_a_marker_naming_the_problem() -> None:
    codec = EncryptionCodec(Keyring.parse(f"test:{KEY_1}"))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=f'"{SECRET}"'.encode())
    [sealed] = await codec.encode([plain])
    [other_key] = await EncryptionCodec(Keyring.parse(f"test:{KEY_2}")).encode([plain])
    [unknown_id] = await EncryptionCodec(Keyring.parse(f"new:{KEY_2}")).encode([plain])
    nonce = os.urandom(12)
    not_a_payload = AESGCM(base64.b64decode(KEY_1)).encrypt(nonce, b"\xff\xff", b"test")

    def sealed_with(data: bytes, key_id: bytes | None = b"test") -> Payload:
        metadata = {"encoding": ENCODING} | ({KEY_ID: key_id} if key_id is not None else {})
        return Payload(metadata=metadata, data=data)

    tampered = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    broken = {
        "tampered": (sealed_with(tampered), "fails authentication with key 'test'"),
        "truncated": (sealed_with(sealed.data[:20]), "is truncated (20 bytes"),
        "empty": (sealed_with(b""), "is truncated (0 bytes"),
        "another key, same id": (other_key, "fails authentication"),
        "unknown key id": (unknown_id, "encrypted with key 'new', which"),
        "no key id": (sealed_with(sealed.data, None), "names no key id"),
        "key id not text": (sealed_with(sealed.data, b"\xff"), "key id is not UTF-8"),
        "not a payload inside": (sealed_with(nonce + not_a_payload), "bytes that are no payload"),
    }
    opened = await codec.decode([sealed, *(payload for payload, _ in broken.values())])
    assert opened[0] == plain  # the batch's good payload still opens
    for (case, (_, reason)), marker in zip(broken.items(), opened[1:], strict=True):
        text = marker.metadata[REASON].decode()
        assert marker.metadata["encoding"] == UNDECODABLE and marker.data == b"", case
        assert reason in text and "\n" not in text, (case, text)
        assert SECRET not in text and KEY_1 not in text and KEY_2 not in text, case


@pytest.fixture
async def sealed_client(servers: Servers) -> AsyncIterator[Client]:
    codec = EncryptionCodec(Keyring.parse(f"test:{KEY_1}"))
    yield await Client.connect(servers.temporal_address, data_converter=data_converter(codec))


@pytest.fixture
async def codec_endpoint() -> AsyncIterator[str]:
    port = embedded.free_port()
    codec = EncryptionCodec(Keyring.parse(f"test:{KEY_1}"))
    runner = await codec_server.start(
        codec, "127.0.0.1", port, ["http://ui.example"], token="s3cret"
    )
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def temporal_cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        embedded.temporal_binary(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_history_is_sealed_on_the_server_and_the_codec_server_opens_it(
    sealed_client: Client,
    client: Client,
    pool: asyncpg.Pool,
    servers: Servers,
    task_queue: str,
    uid: str,
    codec_endpoint: str,
) -> None:
    process_id = await setup_process(pool, uid)
    contact_id = await setup_contact(pool, uid, first_name=SECRET)
    opportunities = OpportunitiesClient(sealed_client, task_queue)
    async with build_worker(sealed_client, pool, task_queue):
        await opportunities.create(
            contact_id, opportunity_id=f"e-{uid}", process_id=process_id, name=f"{SECRET} deal"
        )
        result = await opportunities.change_stage(f"e-{uid}", "Proposal", by=SECRET)
        assert result.current_stage == "Proposal"
        state = await opportunities.state(f"e-{uid}")
        assert state.contact_name is not None and SECRET in state.contact_name
        description = await sealed_client.get_workflow_handle(f"opportunity-e-{uid}").describe()
        assert SECRET in (await description.static_summary() or "")  # sealed below

    # Read raw from the server, without the key: every payload sealed, the name nowhere.
    history = await client.get_workflow_handle(f"opportunity-e-{uid}").fetch_history()
    raw = history.to_json()
    assert SECRET not in raw and base64.b64encode(SECRET.encode()).decode() not in raw
    encodings = {
        base64.b64decode(m["encoding"]).decode()
        for m in _metadata(json.loads(raw))
        if "encoding" in m
    }
    assert encodings == {"binary/encrypted"}, encodings

    # The Temporal CLI shows it decoded through the codec server, and only with the token.
    show = ["workflow", "show", "--address", servers.temporal_address, "-w", f"opportunity-e-{uid}",
            "--output", "json"]  # fmt: skip
    code, out = await temporal_cli(*show)
    assert code == 0 and SECRET not in _payload_texts(out)
    code, out = await temporal_cli(
        *show, "--codec-endpoint", codec_endpoint, "--codec-auth", "Bearer s3cret"
    )
    assert code == 0 and SECRET in _payload_texts(out), out[-2000:]
    code, out = await temporal_cli(*show, "--codec-endpoint", codec_endpoint)
    assert SECRET not in out


async def test_a_plaintext_command_to_an_encrypting_worker_is_rejected(
    sealed_client: Client, client: Client, pool: asyncpg.Pool, task_queue: str, uid: str
) -> None:
    """A client that sends in clear (here one that can still read sealed answers): the
    opportunity refuses its commands with a reason, records them, and goes on."""

    class SendsInClear(EncryptionCodec):
        async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
            return list(payloads)

    process_id = await setup_process(pool, uid)
    contact_id = await setup_contact(pool, uid)
    opportunities = OpportunitiesClient(sealed_client, task_queue)
    config = client.config()
    config["data_converter"] = data_converter(SendsInClear(Keyring.parse(f"test:{KEY_1}")))
    in_clear = Client(**config)
    async with build_worker(sealed_client, pool, task_queue):
        await opportunities.create(contact_id, opportunity_id=f"p-{uid}", process_id=process_id)
        plain = in_clear.get_workflow_handle(f"opportunity-p-{uid}")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await plain.execute_update("change_owner", {"owner": "eve"})
        assert "a plaintext payload was refused: encryption is on" in str(refused.value.cause)
        await plain.signal("change_owner", {"owner": "eve"})
        await opportunities.change_owner(f"p-{uid}", "ann")
        state = await opportunities.state(f"p-{uid}")
        assert state.owner == "ann"
        assert [(r.code, "plaintext" in r.reason) for r in state.rejected] == [
            ("invalid_payload", True)
        ]


async def test_the_codec_server_answers_the_ui_origin_only_and_wants_its_token(
    codec_endpoint: str,
) -> None:
    async with aiohttp.ClientSession() as http:
        preflight = await http.options(
            f"{codec_endpoint}/default/decode",
            headers={"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://ui.example"
        other = await http.options(
            f"{codec_endpoint}/decode", headers={"Origin": "http://elsewhere.example"}
        )
        assert "Access-Control-Allow-Origin" not in other.headers
        refused = await http.post(f"{codec_endpoint}/decode", json={"payloads": []})
        assert refused.status == 401
        garbage = await http.post(
            f"{codec_endpoint}/decode",
            data="not json",
            headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
        )
        assert garbage.status == 400 and "error" in await garbage.json()
        plain = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                 "data": base64.b64encode(b'"hello"').decode()}  # fmt: skip
        auth = {"Authorization": "Bearer s3cret"}
        encoded = await (
            await http.post(f"{codec_endpoint}/encode", json={"payloads": [plain]}, headers=auth)
        ).json()
        assert encoded["payloads"][0]["data"] != plain["data"]
        decoded = await (
            await http.post(f"{codec_endpoint}/decode", json=encoded, headers=auth)
        ).json()
        assert decoded == {"payloads": [plain]}


async def test_the_codec_server_answers_a_bad_request_with_its_status_never_its_data(
    codec_endpoint: str,
) -> None:
    url = f"{codec_endpoint}/decode"
    empty = b'{"payloads": []}'
    as_json = b"Content-Type: application/json\r\n"
    for authorization in [b"Bearer s3cr\xc3\xa9t", b"Bearer \xff\xfe", b"s3cret", b"Basic s3cret",
                          b"Bearer wrong", b"Bearer  s3cret", b""]:  # fmt: skip
        header = b"Authorization: " + authorization + b"\r\n"
        assert await _raw_post(url, header + as_json, empty) == 401, authorization
    assert await _raw_post(url, as_json, empty) == 401  # no header at all

    auth = {"Authorization": "Bearer s3cret"}
    json_auth = {**auth, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        sent = await http.post(
            url, data=empty, headers={**auth, "Content-Type": "application/json; charset=UTF-8"}
        )
        assert sent.status == 200  # what the UI and the CLI send, with or without a charset
        for content_type in [
            "text/plain",
            "application/octet-stream",
            "application/x-www-form-urlencoded",
            "application/json; charset=latin-1",
        ]:
            headers = {**auth, "Content-Type": content_type}
            assert (await http.post(url, data=empty, headers=headers)).status == 415, content_type

        big = b'{"payloads": [], "x": "' + b"a" * codec_server.MAX_REQUEST_BYTES + b'"}'
        assert (await http.post(url, data=big, headers=json_auth)).status == 413

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit while reading
            for start in range(0, len(big), 1 << 20):
                yield big[start : start + (1 << 20)]

        assert (await http.post(url, data=chunked(), headers=json_auth)).status == 413

        for body in [b"not json", b'{"payloads": "Zebulon-Quixote"}', b'{"Zebulon-Quixote": 1}',
                     b'{"payloads": [{"data": 7}]}', b"\xff\xfe"]:  # fmt: skip
            bad = await http.post(url, data=body, headers=json_auth)
            assert bad.status == 400, body
            assert SECRET not in await bad.text() and "error" in await bad.json()

        # A payload that cannot be opened comes back as a marker; the rest of the batch opens.
        plain = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                 "data": base64.b64encode(b'"hello"').decode()}  # fmt: skip
        encoded = await (
            await http.post(f"{codec_endpoint}/encode", json={"payloads": [plain]}, headers=auth)
        ).json()
        [sealed] = encoded["payloads"]
        tampered = {**sealed, "data": base64.b64encode(b"x" * 40).decode()}
        decoded = await http.post(url, json={"payloads": [sealed, tampered]}, headers=auth)
        assert decoded.status == 200
        [opened, marker] = (await decoded.json())["payloads"]
        assert opened == plain
        assert base64.b64decode(marker["metadata"]["encoding"]) == UNDECODABLE
        assert b"fails authentication" in base64.b64decode(marker["metadata"][REASON])


async def _raw_post(url: str, headers: bytes, body: bytes) -> int:
    """The status of a POST whose header bytes go out exactly as given (clients refuse to send
    non-ASCII ones)."""
    return (await _raw_exchange(url, headers, body))[0]


async def _raw_exchange(url: str, headers: bytes, body: bytes) -> tuple[int, bytes]:
    """The status and the whole answer (headers and body) of such a POST."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode()
        + headers
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1]), answer


async def test_a_request_that_is_not_http_is_answered_in_one_line_quoting_nothing(
    codec_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{codec_endpoint}/decode"
    as_json = b"Content-Type: application/json\r\n"
    secret = SECRET.encode()
    statuses = []
    for authorization in [b"Bearer s3cret\x01" + secret, b"Bearer " + secret + b"\x1b[31m",
                          b"Bearer \x7f" + secret, b"Bearer s3cret\x00"]:  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            status, answer = await _raw_exchange(
                url, b"Authorization: " + authorization + b"\r\n" + as_json, b'{"payloads": []}'
            )
        statuses.append(status)
        body = answer.partition(b"\r\n\r\n")[2]
        assert secret not in answer and b"\x1b" not in answer and b"\x01" not in answer
        assert b"\n" not in body and "error" in json.loads(body), body
        logged = [record.getMessage() for record in caplog.records]
        assert all(r.exc_info is None and r.exc_text is None for r in caplog.records), logged
        assert not [m for m in logged if SECRET in m or "\n" in m], logged
        if status == 400:
            assert json.loads(body) == {
                "error": "the request cannot be parsed as HTTP (a header with a control character?)"
            }
            assert logged == ["codec request refused: not valid HTTP (BadHttpMessage)"]
    assert statuses[0] == 400, statuses
    assert set(statuses) <= {400, 401}, statuses


async def test_the_codec_server_refuses_to_listen_beyond_loopback_without_a_token(
    tmp_path: Path,
) -> None:
    for host in ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]:
        codec_server.check_exposure(host, None)
    codec_server.check_exposure("0.0.0.0", "s3cret")
    for host in ["0.0.0.0", "::", "192.0.2.1", "codec.example"]:
        with pytest.raises(codec_server.Unprotected, match=re.escape(f"listens on {host} without")):
            codec_server.check_exposure(host, None)
    codec = EncryptionCodec(Keyring.parse(TEST_KEYS))
    with pytest.raises(codec_server.Unprotected):
        await codec_server.start(codec, "0.0.0.0", embedded.free_port())

    env = {name: value for name, value in os.environ.items() if "OPPORTUNITIES_" not in name}
    env |= {KEY_VARIABLE: TEST_KEYS, "OPPORTUNITIES_LOCAL_ENV": str(tmp_path / "none.env"),
            "COLUMNS": "60"}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "opportunities"),
        *("codec-server", "--host", "0.0.0.0", "--port", str(embedded.free_port())),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert (process.returncode, out) == (1, b"")
    assert err.decode() == (
        "error: the codec server listens on 0.0.0.0 without OPPORTUNITIES_CODEC_TOKEN: set a "
        "token or listen on 127.0.0.1\n"
    )


def _payload_texts(output: str) -> str:
    """The data of every payload the CLI printed (protobuf JSON: base64), as text."""
    node = json.loads(output)
    texts = []
    for payload in _payloads(node):
        texts.append(base64.b64decode(payload.get("data", "")).decode(errors="replace"))
    return "\n".join(texts)


def _payloads(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        if "metadata" in node and "data" in node:
            found.append(node)
        for value in node.values():
            found.extend(_payloads(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_payloads(value))
    return found


PLAIN_BY_DESIGN = {"searchAttributes", "markerRecordedEventAttributes"}
"""Search attributes (the server indexes them: ids and stage names) and the SDK's patch
markers (a patch id) are never encoded; neither holds contact data."""


def _metadata(node: object) -> list[dict[str, str]]:
    """Every payload's metadata in a history's JSON, but for what is plain by design."""
    found: list[dict[str, str]] = []
    if isinstance(node, dict):
        if "metadata" in node and "data" in node and isinstance(node["metadata"], dict):
            found.append(node["metadata"])
        for key, value in node.items():
            if key not in PLAIN_BY_DESIGN:
                found.extend(_metadata(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_metadata(value))
    return found
