"""`leadbot import-csv FILE --as lead|contact`: a spreadsheet's rows through the matcher.

`leadbot.cli` registers it as a sub-command and hands it a `CsvCliHost`. The file is read and mapped
before the database is touched, so a wrong column mapping costs nothing; `--dry-run` then
lists what every row would become (problems included) and writes nothing, and the real run
shows a progress bar and writes the rows with problems to a report file next to the input
(`--report` to choose another place).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from channels.csv.rows import (
    CsvError,
    CsvTable,
    ImportKind,
    MappingError,
    RowProblem,
    apply_override,
    file_digest,
    guess_mapping,
    parse_mapping_option,
    problem_report,
    read_csv,
    row_to_event,
)
from channels.csv.runner import ImportAborted, ImportSummary, RowResult, import_rows
from channels.event import InboundEvent
from crm.facade import Crm

_VERB = {
    "created": "would create",
    "matched": "would match",
    "skipped": "would skip",
    "unchanged": "already imported",
}


class CsvCliHost(Protocol):
    """What the command line's root gives the command (the settings, the database)."""

    def default_region(self, args: argparse.Namespace) -> str:
        """The CRM's region, from the settings the command line names."""
        ...

    def run_with_crm(self, args: argparse.Namespace, fn: Callable[[Crm], Awaitable[None]]) -> None:
        """Run `fn` with a `Crm` on the configured database; problems as `error`."""
        ...

    def error(self, reason: str) -> Exception:
        """The exception the root prints as one line before exiting non-zero."""
        ...


def register_cli(subparsers: Any, host: CsvCliHost) -> None:
    """Add `import-csv` to the `leadbot` command line."""
    p = subparsers.add_parser(
        "import-csv",
        help="import leads or contacts from a CSV file (Excel, Outlook, Google exports)",
        description="Every row goes through the same matcher as live contacts: known people "
        "are matched, never duplicated; rows on the exception list are skipped. Running the "
        "same file again creates nothing new.",
    )
    p.add_argument("file", help="the CSV file (UTF-8, UTF-8 with BOM, Excel's ; or , files)")
    p.add_argument(
        "--as",
        dest="as_kind",
        required=True,
        choices=["lead", "contact"],
        help="what a new person becomes",
    )
    p.add_argument(
        "--map",
        default="",
        metavar="FIELD=COLUMN,...",
        help="override the guessed columns, e.g. 'phone=Tel,phone=Mobil,skip=Notiz'",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would happen, write nothing")
    p.add_argument("--region", help="country of national phone numbers (default: crm region)")
    p.add_argument("--queue", default="", metavar="REP_IDS", help="reps for new records: 3,5")
    p.add_argument("--report", help="where to write the rows with problems")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(fn=partial(cmd_import_csv, host=host))


def cmd_import_csv(args: argparse.Namespace, host: CsvCliHost) -> None:
    fail = host.error  # the root's one-line error (leadbot.cli_common.CliError)
    default_region = host.default_region(args)
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(f"{path}: {exc.strerror or exc}") from None
    region = (args.region or default_region).upper()
    try:
        table = read_csv(data)
        mapping = _mapping(table, args.map)
        queue = [int(part) for part in args.queue.split(",") if part.strip()]
    except (CsvError, MappingError) as exc:
        raise fail(f"{path}: {exc}") from None
    except ValueError:
        raise fail(f"--queue {args.queue!r}: give rep ids like 3,5") from None
    print(_describe_mapping(table, mapping), file=sys.stderr)
    items = _items(table, mapping, data, args.as_kind, region, queue)

    summary = ImportSummary()

    async def run(crm: Crm) -> None:
        nonlocal summary
        with tqdm(
            total=len(items),
            desc="dry run" if args.dry_run else "importing",
            unit="row",
            file=sys.stderr,
            disable=args.no_progress,
        ) as bar:

            def on_row(result: RowResult) -> None:
                bar.update(1)
                if args.dry_run:
                    bar.write(_row_line(result), file=sys.stdout)

            try:
                summary = await import_rows(
                    crm.intake, items, dry_run=args.dry_run, region=region, on_row=on_row
                )
            except ImportAborted as exc:
                raise fail(f"import stopped: {exc}") from None
        if not args.dry_run:
            # An import is a bulk load: PostgreSQL plans from table statistics, which
            # autovacuum may gather much later (or never, where it is off); a new deployment
            # filled from a big file would plan every lookup as if its tables were empty.
            await crm.db.analyze()

    # One log line per row would bury the progress bar; the summary and report say it all.
    logging.getLogger("crm.intake").setLevel(logging.WARNING)
    host.run_with_crm(args, run)
    report = Path(args.report) if args.report else path.with_name(f"{path.stem}.problems.csv")
    print(_summary_text(path, args.as_kind, summary, args.dry_run, report))
    if args.dry_run:  # writes nothing: the row lines above already name every problem
        return
    try:
        _write_report(report, table, summary)
    except OSError as exc:
        raise fail(f"cannot write the report {report}: {exc.strerror or exc}") from None


def _mapping(table: CsvTable, option: str) -> dict[str, str]:
    mapping = guess_mapping(table.headers)
    if option:
        mapping = apply_override(mapping, parse_mapping_option(option), table.headers)
    if not {"phone", "email"} & set(mapping.values()):
        raise MappingError(
            "no column looks like a phone number or an email address; name it with "
            f"--map phone=COLUMN or --map email=COLUMN (columns: {', '.join(table.headers)})"
        )
    return mapping


def _describe_mapping(table: CsvTable, mapping: dict[str, str]) -> str:
    used = ", ".join(f"{header!r} → {field}" for header, field in mapping.items())
    unused = [h for h in table.headers if h not in mapping]
    text = f"{len(table.rows)} rows ({table.encoding}, '{table.delimiter}'); columns: {used}"
    if unused:
        text += f"; kept as extra fields: {', '.join(repr(h) for h in unused)}"
    return text


def _items(
    table: CsvTable,
    mapping: dict[str, str],
    data: bytes,
    as_kind: ImportKind,
    region: str,
    queue: list[int],
) -> list[InboundEvent | RowProblem]:
    digest, now = file_digest(data), datetime.now(UTC)
    items: list[InboundEvent | RowProblem] = []
    for row in table.rows:
        item = row_to_event(
            row.number,
            row.values,
            mapping,
            file_digest=digest,
            as_kind=as_kind,
            region=region,
            now=now,
            notes=row.notes,
        )
        if queue and isinstance(item, InboundEvent):
            item = replace(item, meta={**item.meta, "queue": queue})
        items.append(item)
    return items


def _row_line(result: RowResult) -> str:
    return f"row {result.row_no}: {_VERB[result.kind]} ({result.outcome}): {result.reason}"


def _write_report(report: Path, table: CsvTable, summary: ImportSummary) -> None:
    if not summary.problems:
        return
    values = {row.number: row.values for row in table.rows}
    problems = [RowProblem(p.row_no, p.reason, values.get(p.row_no, {})) for p in summary.problems]
    text = problem_report(table.headers, problems, table.delimiter)
    # With a BOM, Excel opens the report with the umlauts intact.
    report.write_text(text, encoding="utf-8-sig", newline="")


def _summary_text(
    path: Path, as_kind: str, summary: ImportSummary, dry_run: bool, report: Path
) -> str:
    head = f"{'dry run of ' if dry_run else ''}import of {path.name} as {as_kind}"
    lines = [f"{head}: {summary.rows} rows" + (" (nothing was written)" if dry_run else "")]
    for kind, outcomes in summary.by_kind().items():
        detail = ", ".join(f"{outcome} {n}" for outcome, n in sorted(outcomes.items()))
        lines.append(f"{kind:<10}{sum(outcomes.values()):>7}  {detail}".rstrip())
    if summary.problems:
        n = len(summary.problems)
        rows = f"{n} row{'s' if n > 1 else ''} with problems"
        if dry_run:
            lines.append(f"{rows} (shown above); the import will list them in {report}")
        else:
            lines.append(f"{rows} listed in {report}")
    return "\n".join(lines)
