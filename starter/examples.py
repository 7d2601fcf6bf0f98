"""The example process, its letter templates and its event (`examples/`), stored where they
are missing and never over an operator's edits: by `make run`, and in production by the
compose stack's one-shot service (`python -m starter.examples [FOLDER]`, with
`DATABASE_URL`). Applies the database migrations first."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
from pydantic import ValidationError

import store
from activities.letters import put_template
from runtime import settings
from sales.errors import describe_validation_error
from sales.process import ProcessDefinition
from starter.cli.common import load_document
from store import events, letters
from store import processes as stored_processes
from store.schema import migrate

EXAMPLES = Path("examples")


def processes(folder: Path) -> list[Path]:
    """The example process files of a folder of examples (JSON, then YAML)."""
    found = folder / "processes"
    return sorted(found.glob("*.json")) + sorted(found.glob("*.y*ml"))


async def prepare(
    database_url: str, paths: list[Path], *, say: Callable[[str], None] = print
) -> None:
    """Migrate, then store each example that is missing. An example process is applied only
    when no version of it exists: applying it again would make a new version over an
    operator's edits. Its templates and events are stored first, from the folder above its
    own."""
    pool = await store.create_pool(database_url, max_size=2)
    try:
        migrated = await migrate(pool)
        say(f"database migrations: {'applied ' + str(migrated) if migrated else 'up to date'}")
        for folder in sorted({path.parent.parent for path in paths}) or [EXAMPLES]:
            await _references(pool, folder, say)
        for path in paths:
            try:
                definition = ProcessDefinition.model_validate(load_document(path))
            except ValidationError as error:
                say(describe_validation_error(error, f"example {path}"))
                continue
            stored = await stored_processes.get_process(pool, definition.process_id)
            if stored is not None:
                say(f"example process {definition.process_id!r} kept at version {stored.version}")
                continue
            process, _ = await stored_processes.apply_process(pool, definition)
            say(f"example process {definition.process_id!r} applied as version {process.version}")
    finally:
        await pool.close()


async def _references(pool: asyncpg.Pool, folder: Path, say: Callable[[str], None]) -> None:
    """The example letter templates and events the example processes refer to."""
    for path in sorted((folder / "templates").glob("*.j2")):
        if await letters.get_template(pool, path.stem) is None:  # keep an operator's edits
            await put_template(pool, path.stem, path.read_text())
            say(f"example letter template {path.stem!r} stored")
    events_file = folder / "events.json"
    if events_file.exists():
        for document in load_document(events_file):
            event = events.Event.model_validate(document)
            added = await events.add_event(pool, event)
            say(f"example event {event.event_id!r} {'added' if added else 'unchanged'}")


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES
    try:
        asyncio.run(prepare(settings.database_url(), processes(folder)))
    except settings.NotConfigured as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
