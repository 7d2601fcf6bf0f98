"""The README's walkthrough, typed as written against `make run`'s stack: every command runs
from a folder outside the repository, shows the output the README shows, and the opportunity
ends won with every letter filed or sent.

The stack is `make run`'s own program (`starter.dev`) in a temporary folder (its data there,
its ports free ones, the user's state directory there), so the test never touches a
developer's `.data`. In the README's output, `…` stands for any text and runs of spaces and
table borders are compared loosely; a command whose output starts with `error:` must fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from runtime import embedded

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 120.0
COMMAND_SECONDS = 60.0


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def walkthrough(readme: str) -> list[Step]:
    """The `$ ` commands of the README's Walkthrough section after `make run`, each with the
    output lines shown under it (a trailing `\\` continues a command)."""
    section = readme.split("## Walkthrough", 1)[1].split("\n## ", 1)[0]
    steps: list[Step] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", section, re.S):
        lines = iter(block.splitlines())
        for line in lines:
            if line.startswith("$ "):
                command = line[2:]
                while command.endswith("\\"):
                    command = command[:-1] + next(lines).strip()
                steps.append(Step(command.strip()))
            elif steps and line.strip():
                steps[-1].expected.append(line)
    return [step for step in steps if step.command != "make run"]


def _loose(text: str) -> str:
    """Each line with its box drawing and runs of spaces made one space, so that column
    widths do not matter."""
    return "\n".join(
        re.sub(r"[ \t│┃|─━┏┓┗┛┡┩└┘┌┐╭╮╰╯┳┻╇╋┣┫]+", " ", line).strip() for line in text.splitlines()
    )


def _pattern(expected: str) -> re.Pattern[str]:
    """`…` stands for any text on the line (or none: an empty cell)."""
    parts = [re.escape(part.strip()) for part in _loose(expected).split("…")]
    return re.compile("[^\n]*".join(parts))


def shown_in_order(expected: list[str], output: str) -> Iterator[str]:
    """The expected lines that are not found, in order, in the output."""
    text = _loose(output)
    position = 0
    for line in expected:
        match = _pattern(line).search(text, position)
        if match is None:
            yield line
        else:
            position = match.end()


def test_the_walkthrough_is_parsed_with_its_commands_and_outputs() -> None:
    steps = walkthrough((ROOT / "README.md").read_text())
    commands = [step.command for step in steps]
    assert commands[0].startswith("alias opportunities=")
    assert any(c.startswith("opportunities create") for c in commands)
    assert sum(1 for step in steps if step.expected) >= 5
    assert list(shown_in_order(["a │ b", "c…e"], "x a   b\nc d e")) == []
    assert list(shown_in_order(["c…e", "a b"], "a b\nc d e")) == ["a b"]
    assert list(shown_in_order(["a … b"], "a b")) == []  # an empty cell
    assert list(shown_in_order(["a…b"], "a\nb")) == ["a…b"]  # within one line


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`make run` in a temporary folder; yields the environment of a second terminal."""
    home = tmp_path / "repository"
    home.mkdir()
    (home / "examples").symlink_to(ROOT / "examples")
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "TEMPORAL_ADDRESS", "OPPORTUNITIES_LOCAL_ENV",
                        "OPPORTUNITIES_HOME", "OPPORTUNITIES_ENCRYPTION_KEY"}}  # fmt: skip
    env |= {
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # a user's remembered layouts: none
        "OPPORTUNITIES_TEMPORAL_PORT": str(embedded.free_port()),
        "OPPORTUNITIES_UI_PORT": str(embedded.free_port()),
        "OPPORTUNITIES_HTTP_PORT": str(embedded.free_port()),
        "COLUMNS": "160",
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "make-run.log").open("w+b")
    process = subprocess.Popen(
        [sys.executable, "-m", "starter.dev"], cwd=home, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for(log, process, "worker running")
        yield env
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_for(log: object, process: subprocess.Popen[bytes], text: str) -> None:
    import time

    deadline = time.monotonic() + STARTUP_SECONDS
    path = Path(log.name)  # type: ignore[attr-defined]
    while text not in (output := path.read_text(errors="replace")):
        if process.poll() is not None:
            raise AssertionError(f"make run ended with {process.returncode}:\n{output}")
        if time.monotonic() > deadline:
            raise AssertionError(f"make run not ready in {STARTUP_SECONDS:.0f} s:\n{output}")
        time.sleep(0.2)


async def test_the_readme_walkthrough_reaches_closed_won(
    stack: dict[str, str], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # the CLI finds the stack from any folder
    elsewhere.mkdir()
    aliases: dict[str, str] = {}

    async def shell(command: str) -> tuple[int, str]:
        words = command.split(maxsplit=1)
        if words and words[0] in aliases:
            command = aliases[words[0]] + (" " + words[1] if len(words) > 1 else "")
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", command, cwd=elsewhere, env=stack,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), COMMAND_SECONDS)
        return process.returncode or 0, output.decode()

    for step in walkthrough((ROOT / "README.md").read_text()):
        if step.command.startswith("alias "):
            name, _, target = step.command.removeprefix("alias ").partition("=")
            target = target.strip("'\"").removeprefix("$PWD/")  # typed in the repository
            aliases[name] = str(ROOT / target) if target.startswith(".venv/") else target
            continue
        code, output = await shell(step.command)
        fails = bool(step.expected) and step.expected[0].startswith("error:")
        assert (code != 0) == fails, f"$ {step.command}\nexit code {code}:\n{output}"
        missing = list(shown_in_order(step.expected, output))
        assert not missing, f"$ {step.command}\nnot shown: {missing}\noutput:\n{output}"

    opportunity = aliases["opportunities"]
    code, shown = await shell(f"{opportunity} show opp-1001 --json")
    assert code == 0, shown
    state = json.loads(shown)
    assert (state["status"], state["current_stage"]) == ("won", "Closed won")
    code, listed = await shell(f"{opportunity} letter list --opportunity opp-1001 --json")
    letters = json.loads(listed)
    assert len(letters) >= 2 and {letter["status"] for letter in letters} <= {"filed", "sent"}

    # Each part connects with its own login: the CLI as the administrator, the worker with
    # only the worker's rights.
    local = (tmp_path / "repository" / ".data" / "local.env").read_text().splitlines()
    cli_url = dict(line.split("=", 1) for line in local)["DATABASE_URL"]
    conn = await asyncpg.connect(cli_url)
    try:
        me = await conn.fetchval("SELECT current_user")
        sessions = await conn.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
        )
        worker_may_write_keys = await conn.fetchval(
            "SELECT has_table_privilege('opportunities_worker', 'signing_keys', 'INSERT')"
        )
    finally:
        await conn.close()
    assert me == "opportunities_admin"
    assert "opportunities_worker" in {row["usename"] for row in sessions}
    assert worker_may_write_keys is False
