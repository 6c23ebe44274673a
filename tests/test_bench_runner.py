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


def measured(quick: bool) -> object:
    from benchmarks.goals import Goal, Section

    return Section(
        "### measured\n\nfigures",
        [
            Goal("webhook, req/s", 5_000.0, "bare 10,000", 0.5, "≥ 0.5×", True),
            Goal("lookup p99, ms", "4.1 – 7.9", "bare 2.6 ms", 3.04, "< 5 ms", False),
        ],
    )


_GOALS = textwrap.dedent(
    """
    import sys
    from benchmarks import run

    run.SECTIONS = {"phone": ("tests.test_bench_runner", "measured"),
                    "mail": ("tests.test_bench_runner", "broken"),
                    "memory": ("tests.test_bench_runner", "first")}
    run.NEEDS = {"memory": (("no-such-tool-here", "nowhere"),)}
    sys.argv = ["run", "--only", "phone", "mail", "memory", "--out", sys.argv[1]]
    run.main()
    """
)


def test_the_report_opens_with_every_goal_met_or_not_or_not_run(tmp_path: Path) -> None:
    report = _report(_GOALS, tmp_path, timeout=60)
    goals = report.split("### Goals", 1)[1].split("### ", 1)[0]
    assert report.index("### Goals") < report.index("### measured")
    assert "| webhook, req/s | 5,000 | bare 10,000 | 0.50× | ≥ 0.5× | ✓ |" in goals
    assert "| lookup p99, ms | 4.1 – 7.9 | bare 2.6 ms | 3.04× | < 5 ms | ✗ |" in goals
    # A failed section's and a skipped section's goals are named, not left out.
    assert "| mail parse + classify, mails/s | not run (mail failed) |" in goals
    assert "| peak RSS, `leadbot serve`, MB | not run (skipped: needs no-such-tool-here" in goals


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
    report = _report(_CONSOLE, tmp_path, timeout=120)
    assert "### Web console: `/app/board` and record pages over HTTP" in report, report
    for page in ("lead board", "deal board", "lead page", "contact page", "deal page"):
        assert f"| sqlite | 300 | {page} |" in report, report
    assert "Baseline: a bare aiohttp handler" in report
    assert "failed" not in report


def _report(script: str, tmp_path: Path, *, timeout: float) -> str:
    """The report `script` (a `benchmarks.run` with test sections) writes."""
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return out.read_text()


_PART = textwrap.dedent(
    """
    import sys
    from benchmarks import run

    run.PARTS = {"phone.lookup": ("tests.test_bench_runner", "measured")}
    run.NEEDS = {}
    sys.argv = ["run", "--only", "phone.lookup", "--out", sys.argv[1]]
    run.main()
    """
)


def test_a_part_of_a_section_runs_alone_when_named(tmp_path: Path) -> None:
    report = _report(_PART, tmp_path, timeout=60)
    goals = report.split("### Goals", 1)[1].split("### ", 1)[0]
    assert "| lookup p99, ms | 4.1 – 7.9 |" in goals
    assert "generic webhook" not in report and "intake" not in report  # nothing else ran


def test_an_unknown_section_is_refused_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--only", "phone.lookups", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "no section phone.lookups" in done.stderr
    assert not out.exists()
