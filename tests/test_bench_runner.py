"""`make bench`'s runner: what a section needs is checked before anything starts, and a
section that fails never throws away the ones that finished."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent(
    """
    import sys
    from benchmarks import run

    run.SECTIONS = {"first": ("tests.test_bench_runner", "first"),
                    "broken": ("tests.test_bench_runner", "broken"),
                    "phone": ("tests.test_bench_runner", "first")}
    sys.argv = ["run", "--only", "first", "broken", "phone", "--out", sys.argv[1]]
    run.main()
    """
)


def first(quick: bool) -> str:
    return "### first\n\n| measure | figure |\n|---|---:|\n| done | 1 |"


def broken(quick: bool) -> str:
    raise RuntimeError("the database went away")


def test_a_failed_section_and_a_missing_tool_leave_the_rest_of_the_report(
    tmp_path: Path,
) -> None:
    out = tmp_path / "RESULTS.md"
    # A PATH with the interpreter and nothing else: no wrk.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    assert "| done | 1 |" in report
    assert "failed: RuntimeError: the database went away" in report
    assert "### phone\n\nskipped: needs wrk" in report
    assert "phone is skipped, it needs wrk" in done.stderr


_CONSOLE = textwrap.dedent(
    """
    import sys
    from benchmarks import console, run

    console.SIZES = {True: [300], False: [300]}
    console.BACKENDS = ("sqlite",)
    console.REQUESTS = {True: 3, False: 3}
    sys.argv = ["run", "--quick", "--only", "console", "--out", sys.argv[1]]
    run.main()
    """
)


def test_the_console_section_times_its_pages_against_a_bare_handler(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-c", _CONSOLE, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    assert "### Web console: `/app/board` and record pages over HTTP" in report, report
    for page in ("lead board", "deal board", "lead page", "contact page", "deal page"):
        assert f"| sqlite | 300 | {page} |" in report, report
    assert "Baseline: a bare aiohttp handler" in report
    assert "failed" not in report
