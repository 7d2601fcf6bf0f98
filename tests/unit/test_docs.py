"""Every relative link in the docs resolves, and the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", ".git", ".data", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def documents() -> list[Path]:
    return sorted(
        path for path in ROOT.rglob("*.md") if not SKIP & set(path.relative_to(ROOT).parts)
    )


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def broken_links(path: Path) -> list[str]:
    broken = []
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code is not linked
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor}")
    return broken


def test_every_relative_link_in_the_docs_resolves() -> None:
    found = documents()
    assert ROOT / "README.md" in found and len(found) >= 10
    broken = {str(p.relative_to(ROOT)): b for p in found if (b := broken_links(p))}
    assert broken == {}


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# A heading\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-heading) [gone](nowhere.md) [anchor](other.md#no-such)\n")
    assert [b.split(":")[0] for b in broken_links(page)] == ["nowhere.md", "other.md#no-such"]


PARENT_PATH = re.compile(r"(?:\.\./)+[\w.-][\w./-]*")
"""A relative path that climbs out of its folder, linked or merely named."""


def paths_outside(path: Path, root: Path = ROOT) -> list[str]:
    """The relative paths a document names that lead outside the repository (a user's clone
    has nothing there)."""
    outside = []
    for named in PARENT_PATH.findall(path.read_text()):
        if not (path.parent / named).resolve().is_relative_to(root):
            outside.append(named)
    return outside


def test_the_readme_is_short_and_nothing_points_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 8 * 1024
    assert {str(p.relative_to(ROOT)): o for p in documents() if (o := paths_outside(p))} == {}


def test_a_path_outside_the_repository_is_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text("[in](../README.md) see `../../elsewhere/SPEC.md`\n")
    assert paths_outside(page, root=tmp_path) == ["../../elsewhere/SPEC.md"]


NAMED_PATH = re.compile(r"`([\w.-]+(?:/[\w.-]+)*/?)`")
"""A path written in backticks, such as `workflows/lookups.py` or `tests/histories/`."""
EXTENSIONS = {".py", ".md", ".json", ".sql", ".yml", ".yaml", ".toml", ".txt", ".png", ".sh"}


def missing_paths(path: Path, root: Path = ROOT) -> list[str]:
    """The paths of the repository a document names in backticks that do not exist (relative
    to the repository or to the document): a slash in them, and a known extension, a
    trailing slash or a top-level folder of the repository as their first part. A path in
    another repository is named with the repository (`compose-spec: schema/...`) or not in
    backticks."""
    top = {p.name for p in root.iterdir()}
    missing = []
    for named in NAMED_PATH.findall(path.read_text()):
        if "/" not in named or named.startswith("."):  # .venv/, .data/: made at run time
            continue
        looks_like_path = (
            named.endswith("/") or Path(named).suffix in EXTENSIONS or named.split("/")[0] in top
        )
        if looks_like_path and not (root / named).exists() and not (path.parent / named).exists():
            missing.append(named)
    return missing


def test_every_path_the_docs_name_exists() -> None:
    assert {str(p.relative_to(ROOT)): m for p in documents() if (m := missing_paths(p))} == {}


def test_a_missing_path_is_found(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "here.py").write_text("")
    page = tmp_path / "page.md"
    page.write_text("`workflows/here.py` `workflows/gone.py` `o/intro-call/1` `old/`\n")
    assert missing_paths(page, root=tmp_path) == ["workflows/gone.py", "old/"]


def test_the_receiver_in_the_docs_is_the_example_the_tests_run() -> None:
    example = (ROOT / "examples" / "webhook_receiver.py").read_text()
    assert f"```python\n{example}```" in (ROOT / "docs" / "integrate.md").read_text()
