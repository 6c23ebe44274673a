"""The figures of the last chaos run as the Markdown table of docs/operations/reliability.md:
`python -m tests.chaos.table [results.jsonl]` (the newest line of each scenario counts)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.chaos.harness import RESULTS

TITLES = {
    "a-kill-worker": "a. kill -9 one of 2 workers (Redis)",
    "b-restart-redis": "b. Redis kill -9, back 8 s later (AOF)",
    "c-postgres-down-redis": "c. PostgreSQL down 10 s (Redis, 2 workers)",
    "d-postgres-down-journal": "d. PostgreSQL down 10 s (in-process queue + journal)",
    "e-kill-serve-redis": "e. kill -9 serve, restart (Redis)",
    "e-kill-serve-journal-sqlite": "e. kill -9 serve, restart (journal, SQLite)",
}


def _row(r: dict[str, Any]) -> str:
    recovery = "never" if r["recovery_s"] is None else f"{r['recovery_s']:.1f} s"
    held = "yes" if not (r["lost"] or r["doubled"] or r["incomplete"] or r["gave_up"]) else "NO"
    others = [f"{a} ×{n}" for a, n in sorted(r["answers"].items()) if not a.startswith("2")]
    retried = ", ".join(others) or "all 2xx at once"
    notes = f"{r['gave_up']} calls never acknowledged" if r["gave_up"] else ""
    return (
        f"| {TITLES.get(r['scenario'], r['scenario'])} | {r['acknowledged']} | "
        f"{r['processed']} | {r['lost']} | {r['doubled']} | {recovery} | {held} | "
        f"{'; '.join(x for x in (retried, notes) if x)} |"
    )


def table(path: Path) -> str:
    newest: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            newest[r["scenario"]] = r
    rows = [newest[name] for name in TITLES if name in newest]
    rows += [r for name, r in newest.items() if name not in TITLES]
    head = [
        "| scenario | acknowledged | processed | lost | doubled | recovery | promise held "
        "| other answers to the PBX |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    times = sorted(r["at"] for r in rows)
    commits = ", ".join(sorted({r["commit"] for r in rows}))
    run = f"Run {times[0]} to {times[-1]} (UTC), commit {commits}." if rows else "No results."
    return "\n".join([*head, *map(_row, rows), "", run])


if __name__ == "__main__":
    print(table(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS))
