"""`opportunities codec-server`: decrypted payloads for the Temporal UI and CLI."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer

from runtime import codec, codec_server
from runtime.settings import setting
from starter.cli.common import UserError, console, new_app, run

app = new_app("The codec server.")


@app.command("codec-server")
def serve(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8081,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="Origin of a Temporal UI allowed to call it (repeatable; default the local "
            "dev server's UI, http://localhost:8233, and OPPORTUNITIES_CODEC_CORS_ORIGINS).",
        ),
    ] = None,
) -> None:
    """Decode (and encode) payloads with OPPORTUNITIES_ENCRYPTION_KEY for the Temporal UI
    (its codec endpoint setting, or TEMPORAL_CODEC_ENDPOINT) and CLI (`--codec-endpoint`).
    With OPPORTUNITIES_CODEC_TOKEN set, callers must send `Authorization: Bearer <token>`;
    without it, only a loopback --host is allowed."""
    payload_codec = codec.codec_from_environment()
    if payload_codec is None:
        raise UserError(
            f"{codec.KEY_VARIABLE} is not set: there is nothing to decode without the key"
        )
    origins = list(cors_origin or [])
    extra = setting("OPPORTUNITIES_CODEC_CORS_ORIGINS")
    origins += [o.strip() for o in (extra or "").split(",") if o.strip()]
    if not cors_origin:
        origins += ["http://localhost:8233", "http://127.0.0.1:8233"]
    token = setting(codec_server.TOKEN_VARIABLE) or None
    try:
        codec_server.check_exposure(host, token)
    except codec_server.Unprotected as error:
        raise UserError(str(error)) from None

    async def work() -> None:
        runner = await codec_server.start(payload_codec, host, port, origins, token)
        console.print(
            f"codec server on http://{host}:{port} (keys {sorted(payload_codec.keyring.keys)}, "
            f"current {payload_codec.keyring.current!r}; CORS for {', '.join(origins)}; "
            f"{'bearer token required' if token else 'no token'})",
            highlight=False,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    run(work)
