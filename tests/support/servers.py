"""What the tests' servers are, and how tests talk to them as a user would: the addresses of
the session's servers, a real SMTP server's inbox, the `opportunities` console script."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any


@dataclass
class Servers:
    temporal_address: str
    http_port: int
    ui_port: int
    database_url: str
    cli_socket: str | None = None
    """Where `cli_forks` serves `opportunities` commands; without it each starts afresh."""


class Inbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs the `opportunities` console script as a user would, against the test servers.

    Asynchronous, so the test's worker keeps running in the same event loop meanwhile.
    """

    def __init__(self, servers: Servers, task_queue: str) -> None:
        self.socket = servers.cli_socket
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": servers.temporal_address,
            "DATABASE_URL": servers.database_url,
            "OPPORTUNITIES_TASK_QUEUE": task_queue,
            "OPPORTUNITIES_USER": "cli-tester",
            "COLUMNS": "200",
            # the list layouts it remembers: the test's own, never the user's
            "OPPORTUNITIES_CLI_SETTINGS": str(
                Path(tempfile.gettempdir()) / f"cli-settings-{uuid.uuid4().hex}.json"
            ),
        }

    async def __call__(self, *args: str, input: str | None = None) -> CliResult:
        if self.socket is None:
            return await self._started(args, input)
        with tempfile.TemporaryDirectory(prefix="cli-") as directory:
            streams = {name: Path(directory) / name for name in ("stdin", "stdout", "stderr")}
            streams["stdin"].write_text(input or "", encoding="utf-8")
            streams["stdout"].touch()
            streams["stderr"].touch()
            reader, writer = await asyncio.open_unix_connection(self.socket)
            request = {
                "argv": ["opportunities", *args],
                "env": self.env,
                "cwd": os.getcwd(),
                **{name: str(path) for name, path in streams.items()},
            }
            writer.write(json.dumps(request).encode())
            writer.write_eof()
            code = int(await reader.read())
            writer.close()
            out, err = (streams[name].read_text(encoding="utf-8") for name in ("stdout", "stderr"))
            return CliResult(code, out, err)

    async def _started(self, args: tuple[str, ...], input: str | None) -> CliResult:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "opportunities"),
            *args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(input.encode() if input else None)
        assert process.returncode is not None
        return CliResult(process.returncode, out.decode(), err.decode())
