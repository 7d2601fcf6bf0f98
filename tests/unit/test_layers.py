"""Dependencies point down: each package imports only the packages below it (sales and
runtime at the bottom, then store, activities, workflows, the worker, and the client and CLI
on top), so there are no cycles and the core stays free of I/O."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED: dict[str, set[str]] = {
    "sales": set(),
    "runtime": set(),
    "store": {"sales", "runtime"},
    "activities": {"sales", "runtime", "store"},
    "workflows": {"sales", "runtime", "store", "activities"},
    "worker": {"sales", "runtime", "store", "activities", "workflows"},
    "starter": {"sales", "runtime", "store", "activities", "workflows", "worker"},
}
"""What each package may import besides itself."""


def imported(path: Path) -> set[str]:
    """The top-level names of the service's packages a module imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


def test_every_package_imports_only_what_lies_below_it() -> None:
    wrong = []
    for package, allowed in ALLOWED.items():
        paths = [ROOT / "worker.py"] if package == "worker" else (ROOT / package).rglob("*.py")
        for path in paths:
            for name in imported(path) - allowed - {package}:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_the_core_does_no_io() -> None:
    """`sales` imports neither Temporal nor a database or mail library."""
    io = {"temporalio", "asyncpg", "aiosmtplib", "aiohttp", "asyncio", "jinja2"}
    found = []
    for path in (ROOT / "sales").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                found += [f"{path.name}: {m}" for m in modules if m.split(".")[0] in io]
    assert found == []
