"""The codec server: lets the Temporal UI and CLI show encrypted payloads decoded.

It speaks Temporal's remote codec protocol: `POST /decode` and `POST /encode` (also under a
`/{namespace}/` prefix) take and return `{"payloads": [...]}`, protobuf JSON. The UI calls it
from the browser, so it answers CORS preflights for the origins it is told (the UI's own);
with a token set, every call must carry `Authorization: Bearer <token>` (the Temporal CLI's
`--codec-auth`). Keys never leave this process, and nothing it decodes is logged.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

log = logging.getLogger("opportunities.codec_server")

Handler = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


def build_app(
    codec: PayloadCodec, cors_origins: Sequence[str] = (), token: str | None = None
) -> web.Application:
    allowed = {origin.rstrip("/") for origin in cors_origins}

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

    async def preflight(request: web.Request) -> web.StreamResponse:
        return cors(request, web.Response())

    def endpoint(apply: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if token is not None:
                given = request.headers.get(hdrs.AUTHORIZATION, "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    return cors(request, web.json_response({"error": "unauthorized"}, status=401))
            try:
                payloads = json_format.Parse(await request.read(), Payloads())
                result = Payloads(payloads=await apply(payloads.payloads))
            except Exception as error:  # bad JSON, unknown key: say what, never the data
                log.warning("codec request refused: %s", type(error).__name__)
                return cors(
                    request,
                    web.json_response({"error": f"{type(error).__name__}: {error}"}, status=400),
                )
            response = web.Response(
                text=json_format.MessageToJson(result), content_type="application/json"
            )
            return cors(request, response)

        return handle

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    app = web.Application()
    for prefix in ("", "/{namespace}"):
        app.router.add_post(f"{prefix}/decode", endpoint(codec.decode))
        app.router.add_post(f"{prefix}/encode", endpoint(codec.encode))
        app.router.add_route("OPTIONS", f"{prefix}/decode", preflight)
        app.router.add_route("OPTIONS", f"{prefix}/encode", preflight)
    app.router.add_get("/health", health)
    return app


async def start(
    codec: PayloadCodec,
    host: str,
    port: int,
    cors_origins: Sequence[str] = (),
    token: str | None = None,
) -> web.AppRunner:
    """Serve until the returned runner is cleaned up."""
    runner = web.AppRunner(build_app(codec, cors_origins, token), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
