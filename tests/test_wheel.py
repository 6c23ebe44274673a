"""A wheel built from the repository installs and runs where there is no `tests/` (nor
`benchmarks/`): the packages import nothing of the source checkout.

Offline and fast: the wheel is built without build isolation by this venv's setuptools, from a
copy of the packaged sources (so the checkout gets no build/ or egg-info); it goes into a fresh
venv whose only view of this venv is a .pth line naming its site-packages for the third-party
dependencies. A .pth line only adds a path, it does not run that directory's .pth files, so the
editable install of the checkout stays out; and it comes after the fresh venv's own
site-packages, so the wheel's packages win.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = (
    "leadbot.cli",
    "bot.component",
    "channels.mail.component",
    "channels.phone.component",
    "crm.facade",
    "matching.decide",
)
IMPORTS_TESTS = re.compile(rb"^\s*(from|import)\s+(tests|benchmarks)\b", re.M)


def run(*args: str | Path, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def packaged_sources(dest: Path) -> Path:
    """The files the wheel is built from: pyproject, README and the packages it includes."""
    dest.mkdir()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    shutil.copy(ROOT / "pyproject.toml", dest)
    shutil.copy(ROOT / project["project"]["readme"], dest)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for top in {pattern.rstrip("*") for pattern in include}:
        shutil.copytree(ROOT / top, dest / top, ignore=skip)
    return dest


def test_the_wheel_runs_without_the_source_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LEADBOT_"))}
    src = packaged_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, ".", cwd=src, env=env)
    (wheel,) = dist.glob("leadbot-*.whl")

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        sources = {n: z.read(n) for n in names if n.endswith(".py")}
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    assert [n for n, text in sources.items() if IMPORTS_TESTS.search(text)] == []
    assert [n for n in names if n.startswith("crm/migrations/versions/")]  # data came along

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    target = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                      cwd=tmp_path, env=env).strip())  # fmt: skip
    (target / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(*pip, "--python", python, "install", "-q", "--no-deps", "--no-index", wheel,
        cwd=tmp_path, env=env)  # fmt: skip

    elsewhere = tmp_path / "elsewhere"  # no tests/ or benchmarks/ to import from here
    elsewhere.mkdir()
    probe = (
        f"import importlib, importlib.util; mods = {MODULES!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "print(importlib.import_module('leadbot').__file__)\n"
        "print(importlib.util.find_spec('tests'), importlib.util.find_spec('benchmarks'))\n"
    )
    where, missing = run(python, "-c", probe, cwd=elsewhere, env=env).splitlines()
    assert Path(where).is_relative_to(target)  # the wheel's copy, not the checkout
    assert missing == "None None"
    usage = run(venv / "bin" / "leadbot", "--help", cwd=elsewhere, env=env)
    assert "serve" in usage and "import-csv" in usage
