"""The wheel holds everything a non-editable install (the Docker image's `pip install .`) needs.

Every file under faithaudit/ that git knows (tracked, or new and not ignored) must be in the wheel: the modules,
the alembic migrations (env.py, script.py.mako, versions/*.py) and any data file. A data file added without a
matching ``[tool.setuptools.package-data]`` pattern fails here. The wheel is built offline from a copy of those
files, so the working tree gets no build/ or egg-info.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _package_files() -> list[str]:
    """faithaudit/ files git tracks or would track, that exist now (a deleted or moved file drops out)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "faithaudit"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    return sorted({p for p in listed if p and (ROOT / p).is_file() and "__pycache__" not in p})


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[zipfile.ZipFile, list[str]]]:
    files = _package_files()
    src = tmp_path_factory.mktemp("src")
    for rel in ["pyproject.toml", "README.md", *files]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    subprocess.run([*cmd, "-w", str(out), str(src)], check=True, capture_output=True, timeout=120)
    (built,) = out.glob("faithaudit-*.whl")
    with zipfile.ZipFile(built) as zf:
        yield zf, files


def test_every_package_file_is_in_the_wheel(wheel):
    zf, files = wheel
    missing = sorted(set(files) - set(zf.namelist()))
    assert not missing, f"not in the wheel (add them to [tool.setuptools.package-data]): {missing}"


def test_wheel_has_the_migrations_and_the_data_files(wheel):
    zf, _ = wheel
    names = set(zf.namelist())
    migrations = "faithaudit/store/migrations/"
    assert {migrations + "env.py", migrations + "script.py.mako", "faithaudit/py.typed"} <= names
    versions = [n for n in names if n.startswith(migrations + "versions/") and n.endswith(".py")]
    assert len(versions) >= 2, versions


def test_wheel_has_the_page_templates(wheel):
    zf, _ = wheel
    names = set(zf.namelist())
    pages = "faithaudit/pages/templates/"
    expected = {"report.html", "report.css", "_scatter.html", "ui/base.html", "ui/audits.html", "ui/compare.html"}
    assert {pages + name for name in expected} <= names


def test_wheel_installs_the_cli(wheel):
    zf, _ = wheel
    (entry_points,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "faithaudit = faithaudit.cli:main" in zf.read(entry_points).decode()
