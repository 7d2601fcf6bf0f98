"""The codec server: lets the Temporal UI and CLI show encrypted payloads decoded.

It speaks Temporal's remote codec protocol: `POST /decode` and `POST /encode` (also under a
`/{namespace}/` prefix) take and return `{"payloads": [...]}`, protobuf JSON. The UI calls it
from the browser, so it answers CORS preflights for the origins it is told (the UI's own);
with a token set, every call must carry `Authorization: Bearer <token>` (the Temporal CLI's
`--codec-auth`). Keys never leave this process, and nothing it decodes is logged.

A request is answered 401 without the right `Authorization` (whatever bytes it holds), 415
unless its body is `application/json` (what the UI and the CLI send; a UTF-8 charset is
accepted), 413 over `MAX_REQUEST_BYTES`, and 400 when the body is not Payloads JSON or the
request is not valid HTTP (a header holding a control character); an error body never quotes
the request, and a refusal is logged as one line without a traceback. `/decode` follows the
codec's rules: a payload it cannot open, or plaintext it refuses, comes back as a marker
payload (`runtime.codec.REFUSED_PLAINTEXT`, `UNDECODABLE`) with its reason, so the UI shows
what the workers see and the rest of the batch stays readable.

Without a token it listens only on loopback: anyone who reaches it could read every payload.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from runtime.settings import BadSetting

log = logging.getLogger("opportunities.codec_server")

Handler = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]

TOKEN_VARIABLE = "OPPORTUNITIES_CODEC_TOKEN"
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""The largest request body (aiohttp's `client_max_size`): Temporal refuses payloads over
2 MB by default, about 2.7 MB once base64 in this protocol's JSON."""
JSON = "application/json"
LOOPBACK_NAMES = {"localhost"}


class Unprotected(BadSetting):
    """The codec server would listen beyond this machine without a token."""


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen on an address other machines reach without a token."""
    if not token and not is_loopback(host):
        raise Unprotected(
            f"the codec server listens on {host or 'every address'} without {TOKEN_VARIABLE}: "
            "set a token or listen on 127.0.0.1"
        )


def _authorized(header: str, expected: bytes) -> bool:
    try:
        given = header.encode("utf-8", "surrogateescape")  # the bytes as sent
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(given, expected)


def build_app(
    codec: PayloadCodec, cors_origins: Sequence[str] = (), token: str | None = None
) -> web.Application:
    allowed = {origin.rstrip("/") for origin in cors_origins}
    expected = f"Bearer {token}".encode() if token else None

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin and origin.rstrip("/") in allowed:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST, OPTIONS"
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = (
                "content-type, x-namespace, authorization"
            )
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
            response.headers[hdrs.VARY] = "Origin"
        return response

    def refuse(request: web.Request, status: int, error: str) -> web.StreamResponse:
        return cors(request, web.json_response({"error": error}, status=status))

    async def preflight(request: web.Request) -> web.StreamResponse:
        return cors(request, web.Response())

    def endpoint(apply: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if expected is not None:
                if not _authorized(request.headers.get(hdrs.AUTHORIZATION, ""), expected):
                    return refuse(request, 401, "unauthorized")
            charset = (request.charset or "utf-8").lower()
            if request.content_type != JSON or charset != "utf-8":
                return refuse(request, 415, f"the body must be {JSON}")
            too_large = f"the body must be at most {MAX_REQUEST_BYTES} bytes"
            if (request.content_length or 0) > MAX_REQUEST_BYTES:
                return refuse(request, 413, too_large)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:  # a chunked body past the limit
                return refuse(request, 413, too_large)
            try:
                payloads = json_format.Parse(body, Payloads())
            except (json_format.ParseError, UnicodeDecodeError):
                log.warning("codec request refused: the body is not Payloads JSON")
                return refuse(request, 400, "the body is not Temporal's Payloads protobuf JSON")
            try:
                result = Payloads(payloads=await apply(payloads.payloads))
            except Exception as error:  # say what, never the data
                log.warning("codec request refused: %s", type(error).__name__)
                return refuse(request, 400, f"the payloads cannot be coded: {type(error).__name__}")
            response = web.Response(text=json_format.MessageToJson(result), content_type=JSON)
            return cors(request, response)

        return handle

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    for prefix in ("", "/{namespace}"):
        app.router.add_post(f"{prefix}/decode", endpoint(codec.decode))
        app.router.add_post(f"{prefix}/encode", endpoint(codec.encode))
        app.router.add_route("OPTIONS", f"{prefix}/decode", preflight)
        app.router.add_route("OPTIONS", f"{prefix}/encode", preflight)
    app.router.add_get("/health", health)
    return app


class _Connection(web.RequestHandler):
    """aiohttp's handler of one connection, but for a request it cannot parse as HTTP (a
    header holding a control character, say): its answer quotes nothing of the request, and
    its log is one line without a traceback; the header may hold a token."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400:
            return super().handle_error(request, status, exc, message)
        log.warning("codec request refused: not valid HTTP (%s)", type(exc).__name__)
        response = web.json_response(
            {"error": "the request cannot be parsed as HTTP (a header with a control character?)"},
            status=400,
        )
        response.force_close()
        return response


class _Server(web.Server):
    """aiohttp's server, with `_Connection` for each connection."""

    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **self._kwargs,
        )


async def start(
    codec: PayloadCodec,
    host: str,
    port: int,
    cors_origins: Sequence[str] = (),
    token: str | None = None,
) -> web.AppRunner:
    """Serve until the returned runner is cleaned up. Raises `Unprotected` for an address
    beyond loopback without a token."""
    check_exposure(host, token)
    runner = _Runner(build_app(codec, cors_origins, token), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
