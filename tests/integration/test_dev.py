"""`make run` (and the compose stack's one-shot service) stores the examples only where they
are missing: an operator's edits stay."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from sales.process import ProcessDefinition
from starter import examples
from store import processes
from tests.support.helpers import example_definition


async def test_an_example_process_is_applied_once_and_never_over_an_edited_version(
    pool: asyncpg.Pool, postgres_url: str, uid: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    process_id = f"dev-{uid}"
    example = tmp_path / f"{process_id}.json"
    example.write_text(json.dumps(example_definition(process_id)))
    await examples.prepare(postgres_url, [example])
    applied = await processes.get_process(pool, process_id)
    assert applied is not None and applied.version == 1

    edited = ProcessDefinition.model_validate(
        example_definition(process_id, name="Life insurance, edited")
    )
    assert (await processes.apply_process(pool, edited))[0].version == 2
    await examples.prepare(postgres_url, [example])
    kept = await processes.get_process(pool, process_id)
    assert kept is not None and kept.version == 2
    assert kept.definition.name == "Life insurance, edited"
    assert f"example process {process_id!r} kept at version 2" in capsys.readouterr().out
