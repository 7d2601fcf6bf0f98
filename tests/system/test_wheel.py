"""The wheel holds every package of the service: built from a copy of the source, installed
(without its dependencies, which come from the test's own environment) into a fresh virtual
environment, its console script answers `--help` and its worker module imports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ["pyproject.toml", "README.md", "worker.py", "sales", "store", "activities",
          "workflows", "starter", "runtime"]  # fmt: skip


def _run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_installs_the_cli_and_the_worker(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in SOURCE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy(path, source / name)
    built = tmp_path / "wheel"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    _run(*pip, "wheel", "--no-deps", "--wheel-dir", built, source, cwd=tmp_path)
    [wheel] = built.glob("opportunities-*.whl")

    fresh = tmp_path / "fresh"
    _run(sys.executable, "-m", "venv", "--without-pip", fresh, cwd=tmp_path)
    python = fresh / "bin" / "python"
    _run(*pip, "--python", python, "install", "--no-deps", wheel, cwd=tmp_path)
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                        cwd=tmp_path).strip())  # fmt: skip
    # the dependencies, after the wheel's own packages (a .pth line adds no editable install)
    (purelib / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"  # not the source tree: only the wheel's packages count
    elsewhere.mkdir()
    helped = _run(fresh / "bin" / "opportunities", "--help", cwd=elsewhere)
    assert "mass-modify" in helped and "activity" in helped
    where = _run(python, "-c", "import worker, starter.cli, starter.client.read_model; "
                 "print(starter.cli.__file__)", cwd=elsewhere)  # fmt: skip
    assert where.startswith(str(fresh)), where
