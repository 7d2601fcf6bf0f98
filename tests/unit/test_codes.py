"""Every code the service gives is listed in `contract/rejection-codes.json`, and every code
listed there is given somewhere: the service's code is read (its syntax tree) for each place a
code is made (`code=...`, `{"code": ...}`, `BadData(message, code)`, a refused start's code),
so a new code cannot go unpublished and a code nothing gives cannot linger."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from sales.errors import FAILURE_CODES, REJECTION_CODES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["sales", "activities", "workflows", "starter", "store", "runtime"]
CONTRACT = ROOT / "contract" / "rejection-codes.json"
CODE_ARGUMENT = {"BadData": 1, "_refused": 2}
"""Calls whose positional argument at this index is a code."""


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _constant(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def given_codes() -> dict[str, str]:
    """Each code made in the service's code, with one place it is made."""
    found: dict[str, str] = {}
    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            codes: list[str | None] = []
            if isinstance(node, ast.Call):
                codes += [_constant(k.value) for k in node.keywords if k.arg == "code"]
                name = node.func.id if isinstance(node.func, ast.Name) else None
                index = CODE_ARGUMENT.get(name or "")
                if index is not None and len(node.args) > index:
                    codes.append(_constant(node.args[index]))
            elif isinstance(node, ast.Dict):
                codes += [
                    _constant(value)
                    for key, value in zip(node.keys, node.values, strict=True)
                    if _constant(key) == "code"
                ]
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                arguments = node.args.args[-len(node.args.defaults) :] if node.args.defaults else []
                codes += [
                    _constant(default)
                    for argument, default in zip(arguments, node.args.defaults, strict=True)
                    if argument.arg == "code"
                ]
            for code in codes:
                if code is not None:
                    found.setdefault(code, f"{path.relative_to(ROOT)}:{node.lineno}")  # type: ignore[attr-defined]
    return found


def _string_constants() -> set[str]:
    """Every string constant of the service's code, but for the lists of codes themselves."""
    found: set[str] = set()
    for path in _sources():
        if path.name == "errors.py" and path.parent.name == "sales":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (value := _constant(node)) is not None:
                found.add(value)
    return found


def test_every_code_given_is_listed() -> None:
    listed = set(REJECTION_CODES) | set(FAILURE_CODES)
    unlisted = {code: where for code, where in given_codes().items() if code not in listed}
    assert unlisted == {}, "codes given but not in sales.errors (and so not in the contract)"


def test_every_code_listed_is_given_somewhere() -> None:
    constants = _string_constants()
    unused = sorted((set(REJECTION_CODES) | set(FAILURE_CODES)) - constants)
    assert unused == [], "codes listed but given nowhere"


def test_the_contract_lists_exactly_the_codes() -> None:
    published = {entry["const"] for entry in json.loads(CONTRACT.read_text())["oneOf"]}
    assert published == set(REJECTION_CODES) | set(FAILURE_CODES)


def test_the_scan_finds_codes() -> None:
    """The scan sees each form a code takes (so an empty result could not pass by itself)."""
    given = given_codes()
    for code in ("unknown_stage", "already_exists", "template_error", "unclassified", "bad_data"):
        assert code in given, code
