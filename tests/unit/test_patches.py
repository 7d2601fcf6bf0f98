"""The patch register (`workflows/patches.py`) and the code agree: every patch id the code
passes to the SDK's `patched` or `deprecate_patch` is registered, and every registered id
names a recorded history under tests/histories/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from workflows.patches import PATCHES, Patch

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = ROOT / "tests" / "histories"
PATCH_CALLS = {"patched", "deprecate_patch"}


def patch_ids_in(source: str) -> list[str]:
    """The ids a module passes to a call named in `PATCH_CALLS`: string literals, or names of
    the module's string constants. Any other argument is reported as `<unresolved ...>`, so
    it cannot slip past the register."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in PATCH_CALLS
            and node.args
        ):
            continue
        argument = node.args[0]
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            found.append(argument.value)
        elif isinstance(argument, ast.Name) and argument.id in constants:
            found.append(constants[argument.id])
        else:
            found.append(f"<unresolved {ast.unparse(argument)}>")
    return found


def used_patch_ids() -> dict[str, str]:
    """Patch id to the file using it, over every module of the service."""
    used = {}
    for package in ("workflows", "sales", "activities", "starter", "runtime"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for patch_id in patch_ids_in(path.read_text()):
                used[patch_id] = str(path.relative_to(ROOT))
    return used


def check(patches: tuple[Patch, ...], used: dict[str, str]) -> list[str]:
    """What is wrong between the register and the code (empty: nothing)."""
    problems = []
    registered = {patch.id: patch for patch in patches}
    for patch_id, where in sorted(used.items()):
        if patch_id not in registered:
            problems.append(f"{where} uses patch {patch_id!r}, which workflows/patches.py lacks")
    for patch in patches:
        if not (HISTORIES / patch.history).is_file():
            problems.append(f"patch {patch.id!r}: no recorded history {patch.history}")
    return problems


def test_the_register_and_the_code_agree() -> None:
    assert check(PATCHES, used_patch_ids()) == []


def test_the_check_finds_an_unregistered_patch_and_a_missing_history() -> None:
    check_call, deprecate_call = sorted(PATCH_CALLS, reverse=True)
    source = f'ID = "fix-a"\nworkflow.{check_call}(ID)\nworkflow.{deprecate_call}("fix-b")\n'
    used = {patch_id: "x.py" for patch_id in patch_ids_in(source)}
    assert used == {"fix-a": "x.py", "fix-b": "x.py"}
    problems = check((Patch("fix-a", "why", "no-such-file.json"),), used)
    assert problems == [
        "x.py uses patch 'fix-b', which workflows/patches.py lacks",
        "patch 'fix-a': no recorded history no-such-file.json",
    ]


@pytest.mark.parametrize("argument", ["make_id()", "other.ID"])
@pytest.mark.parametrize("call", sorted(PATCH_CALLS))
def test_an_id_that_cannot_be_read_is_reported(call: str, argument: str) -> None:
    assert patch_ids_in(f"workflow.{call}({argument})")[0].startswith("<unresolved")
