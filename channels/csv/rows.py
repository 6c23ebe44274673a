"""CSV import (`leadbot import-csv FILE --as lead|contact`): rows → events or row problems.

The CLI reads the file with `read_csv`, builds the mapping with `guess_mapping` and
`apply_override(guessed, parse_mapping_option(opt), table.headers)`, then calls `row_to_event`
for every row and hands the events to the same intake every channel uses. An event's
`external_id` depends only on the file bytes, the row number and the row's content, so running
the same file again yields the same ids and intake creates nothing new.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from channels.csv.mapping import (
    IMPORT_FIELDS,
    MappingError,
    apply_override,
    guess_mapping,
    parse_mapping_option,
)
from channels.csv.read import CsvError, CsvRow, CsvTable, read_csv
from channels.event import Channel, EventMeta, InboundEvent
from matching.normalize import normalize_email, normalize_phone
from matching.text import clean_event

__all__ = [
    "IMPORT_FIELDS",
    "CsvError",
    "CsvRow",
    "CsvTable",
    "ImportKind",
    "MappingError",
    "RowProblem",
    "apply_override",
    "file_digest",
    "guess_mapping",
    "parse_mapping_option",
    "problem_report",
    "read_csv",
    "row_to_event",
]

ImportKind = Literal["lead", "contact"]
# Several numbers or addresses in one cell: "030 1234567, 0171 1234567". A slash is not a
# separator here: Germans write "030/1234567" for one number.
_PHONE_SPLIT = re.compile(r"[,;\n|]+")
# Addresses are split on list separators only: a space is no separator of its own, since
# "anna meier@example.com" is one broken address, not "anna" and "meier@example.com".
_EMAIL_SPLIT = re.compile(r"[,;\n|]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row that was not imported (or, for the report, imported with a warning)."""

    row_no: int
    reason: str
    values: Mapping[str, str] = field(default_factory=dict)


def file_digest(data: bytes) -> str:
    """Short sha256 of the file bytes: identifies "this exact file" in event ids."""
    return hashlib.sha256(data).hexdigest()[:16]


def row_to_event(
    row_no: int,
    row: Mapping[str, str],
    mapping: Mapping[str, str],
    *,
    file_digest: str,
    as_kind: ImportKind,
    region: str | None,
    now: datetime,
    notes: Sequence[str] = (),
) -> InboundEvent | RowProblem:
    """The event for one row, or why it cannot be imported (no usable phone or email).

    `notes` (`CsvRow.notes`: how a broken line was read) become warnings, so the row is in
    the problem report either way."""
    if as_kind not in ("lead", "contact"):
        raise ValueError(f"as_kind must be 'lead' or 'contact', not {as_kind!r}")
    cells = _cells_by_field(row, mapping)
    phones, bad_phones = _split_valid(cells.get("phone", []), _PHONE_SPLIT, _phone_check(region))
    emails, bad_emails = _split_valid(cells.get("email", []), _EMAIL_SPLIT, _is_email, _spaced)
    warnings = [*notes, *(f"{p[:60]!r} is not a phone number" for p in bad_phones)]
    warnings += [f"{e[:60]!r} is not an email address" for e in bad_emails]
    if not phones and not emails:
        reason = "no usable phone number or email address"
        reason += f" ({'; '.join(warnings)})" if warnings else ""
        return RowProblem(row_no, reason, dict(row))

    first, last = _one(cells, "first_name"), _one(cells, "last_name")
    meta: EventMeta = {
        "import_as": as_kind,
        "file": file_digest,
        "row": row_no,
        "fields": {h: v for h, v in row.items() if v.strip() and h not in mapping},
    }
    if source := _one(cells, "source"):
        meta["source_label"] = source  # the file's own lead source, e.g. "Messe 2024"
    if title := _one(cells, "title"):
        meta["title"] = title  # intake names a new lead after it
    if warnings:
        meta["warnings"] = warnings
    # The import hands events to intake itself, not through Service.submit: cleaned here.
    return clean_event(
        InboundEvent(
            channel=Channel.IMPORT,
            external_id=f"{file_digest}:{row_no}:{_row_hash(row)}",
            occurred_at=now,
            display_name=_one(cells, "name") or " ".join(p for p in (first, last) if p) or None,
            first_name=first,
            last_name=last,
            company_name=_one(cells, "company"),
            phones=phones,
            emails=emails,
            subject=_one(cells, "title"),
            text=_one(cells, "comment"),
            source="IMPORT",
            phone_region=region,
            raw_ref=f"{file_digest}:{row_no}",
            meta=meta,
        )
    )


def _cells_by_field(row: Mapping[str, str], mapping: Mapping[str, str]) -> dict[str, list[str]]:
    cells: dict[str, list[str]] = {}
    for header, our_field in mapping.items():
        value = row.get(header, "").strip()
        if value:
            cells.setdefault(our_field, []).append(value)
    return cells


def _one(cells: Mapping[str, list[str]], our_field: str) -> str | None:
    values = cells.get(our_field)
    return values[0] if values else None


def _phone_check(region: str | None) -> Callable[[str], bool]:
    return lambda raw: normalize_phone(raw, region).valid


def _is_email(raw: str) -> bool:
    return normalize_email(raw) is not None


def _spaced(part: str) -> list[str]:
    """ "a@x.de b@y.de": addresses separated by spaces only, when every word is one."""
    words = _SPACES.split(part)
    return words if len(words) > 1 and all(map(_is_email, words)) else []


def _split_valid(
    values: Iterable[str],
    separator: re.Pattern[str],
    is_valid: Callable[[str], bool],
    resplit: Callable[[str], list[str]] = lambda _: [],
) -> tuple[tuple[str, ...], list[str]]:
    """The distinct pieces of `values` that `is_valid` accepts, and the rejected pieces.

    A piece `is_valid` refuses is tried once more as the valid pieces `resplit` gives; when
    that gives none, the piece is rejected whole, never cut down to a part that looks valid.
    """
    kept: dict[str, None] = {}
    rejected: list[str] = []
    for value in values:
        for part in filter(None, (p.strip() for p in separator.split(value))):
            if is_valid(part):
                kept.setdefault(part)
            elif pieces := resplit(part):
                kept.update(dict.fromkeys(pieces))
            else:
                rejected.append(part)
    return tuple(kept), rejected


def _row_hash(row: Mapping[str, str]) -> str:
    canonical = json.dumps(sorted(row.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# A spreadsheet reads a cell starting with one of these as a formula (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert_cell(value: str) -> str:
    """`value` as a spreadsheet shows it but never runs it: a leading `'` before a formula
    start (the OWASP rule; "+49 30 …" then shows as text, which a phone number is)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def problem_report(
    headers: Iterable[str], problems: Iterable[RowProblem], delimiter: str = ","
) -> str:
    """CSV text for the report file: row number, problem, then the row as it was, every cell
    made inert (`inert_cell`): the rows are untrusted input and the file is opened in Excel.

    Pass the input's delimiter so the report opens in the same spreadsheet the same way.
    """
    columns = list(headers)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([inert_cell(c) for c in ["row", "problem", *columns]])
    for problem in problems:
        cells = [problem.reason, *(problem.values.get(c, "") for c in columns)]
        writer.writerow([problem.row_no, *(inert_cell(c) for c in cells)])
    return out.getvalue()
