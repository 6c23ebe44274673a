"""The shipped systemd units are valid for systemd itself (`systemd-analyze verify`: every
directive known and well-formed, the command executable) and start commands Leadbot has."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
INSTALLED = "/opt/leadbot/.venv/bin/leadbot"


def test_there_are_units_for_serve_and_workers() -> None:
    assert [u.name for u in UNITS] == ["leadbot-worker@.service", "leadbot.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_accepts_the_unit_and_it_runs_a_leadbot_command(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text()
    (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0] == INSTALLED
    # The command it starts exists and takes no arguments it does not know.
    here = Path(sys.executable).with_name("leadbot")
    assert subprocess.run([here, *argv[1:], "--help"], capture_output=True).returncode == 0
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # As installed, but with this checkout's leadbot (verify checks it is executable); a
    # template is checked as one of its instances.
    name = unit.name.replace("@.", "@1.")
    (tmp_path / name).write_text(text.replace(INSTALLED, str(here)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
