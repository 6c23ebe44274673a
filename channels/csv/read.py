"""Read a CSV file as spreadsheets write it: guess the encoding and delimiter, take the header.

Handles UTF-8 with or without BOM, UTF-16 ("Unicode text" from Excel), and German Excel's
cp1252 with `;` separators, including Excel's optional first line `sep=;`. A stray quote
that would swallow the following contacts into one cell is cut back at its line end, with a
note naming the line (`_records`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass

_DELIMITERS = ";,\t"
_SNIFF_CHARS = 16_384


class CsvError(ValueError):
    """The file cannot be read as a table; the message says why."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    number: int  # record number as a spreadsheet shows it: the header is 1
    values: Mapping[str, str]  # header → stripped cell; cells past the header as "column N"
    notes: tuple[str, ...] = ()  # how the row was read when the file was broken there


@dataclass(frozen=True, slots=True)
class CsvTable:
    headers: tuple[str, ...]
    rows: tuple[CsvRow, ...]  # blank rows left out
    encoding: str
    delimiter: str


def read_csv(data: bytes) -> CsvTable:
    """Parse `data`; raises `CsvError` when it is empty, binary or not CSV at all."""
    text, encoding = _decode(data)
    first_line = text.split("\n", 1)[0].rstrip("\r")
    delimiter = None
    if first_line[:4].casefold() == "sep=" and first_line[4:] in (*_DELIMITERS, "|"):  # Excel hint
        delimiter = first_line[4]
        text = text.split("\n", 1)[1] if "\n" in text else ""
    if not text.strip():
        raise CsvError("the file has no rows")
    skipped = 1 if delimiter else 0  # the "sep=" line, for line numbers in notes
    delimiter = delimiter or _delimiter(text)
    try:
        records = _records(text, delimiter, skipped)
    except csv.Error as exc:
        raise CsvError(f"not a readable CSV file: {exc}") from None
    numbered = [
        (n, cells, note)
        for n, (cells, note) in enumerate(records, 1)
        if any(c.strip() for c in cells)
    ]
    if not numbered:
        raise CsvError("the file has no rows")
    (_, header_cells, _), *body = numbered
    headers = _headers(header_cells)
    rows = tuple(
        CsvRow(n, _row_values(headers, cells), (note,) if note else ()) for n, cells, note in body
    )
    return CsvTable(headers, rows, encoding, delimiter)


class _Lines:
    """The file's lines from `start` on, counting how many the csv reader has taken."""

    def __init__(self, lines: list[str], start: int) -> None:
        self.lines, self.taken = lines, start

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.taken >= len(self.lines):
            raise StopIteration
        self.taken += 1
        return self.lines[self.taken - 1]


def _records(text: str, delimiter: str, skipped: int) -> list[tuple[list[str], str | None]]:
    """Every record with a note when its quoting was broken and the record was cut back.

    A quote that opens a cell and is never closed on its line makes the csv module read the
    following lines, whole contacts, into that one cell. When lines inside such a cell look
    like records of their own, the cell is ended at its line end instead, the line is read on
    its own and reading goes on with the next line.
    """
    lines = list(io.StringIO(text, newline=""))
    records: list[tuple[list[str], str | None]] = []
    width: int | None = None  # the header's cell count, once read
    start, feed, reader = 0, None, None
    while start < len(lines):
        if feed is None or reader is None:
            feed = _Lines(lines, start)
            reader = csv.reader(feed, delimiter=delimiter)
        first = start
        error: csv.Error | None = None
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. the swallowed lines outgrew csv's field size limit
            cells, error = [], exc
        start = feed.taken
        if start - first > 1 and _swallows_records(lines[first:start], delimiter, width):
            records.append(_cut_back(lines[first], delimiter, width, first + 1 + skipped))
            start, feed, reader = first + 1, None, None  # read on from the next line
            continue
        if error is not None:
            raise error
        if width is None and any(c.strip() for c in cells):
            width = len(cells)
        records.append((cells, None))
    return records


def _swallows_records(chunk: list[str], delimiter: str, width: int | None) -> bool:
    """Whether a record read over several lines holds lines that look like records."""
    needed = max(1, (width or 2) - 1)
    inside = [*chunk[1:-1], chunk[-1].split('"', 1)[0]]  # the last line up to the closing quote
    return any(line.count(delimiter) >= needed for line in inside)


def _cut_back(line: str, delimiter: str, width: int | None, line_no: int) -> tuple[list[str], str]:
    """The line alone: the quote taken literally when that gives the header's cell count,
    else the open cell ended at the line end."""
    bare = line.rstrip("\r\n")
    literal = next(csv.reader([bare], delimiter=delimiter, quoting=csv.QUOTE_NONE), [])
    note = f"line {line_no}: a quote opens a cell and is not closed on that line"
    if width is not None and len(literal) == width:
        cells = [_unquote(c) for c in literal]
        return cells, f"{note}; the line was read with the quote as a character"
    cells = next(csv.reader([bare], delimiter=delimiter), [])
    return cells, f"{note}; the cell was ended at the line end"


def _unquote(cell: str) -> str:
    if len(cell) > 1 and cell[0] == cell[-1] == '"':
        return cell[1:-1].replace('""', '"')
    return cell.removeprefix('"')


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return _strict(data, "utf-8-sig"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _strict(data, "utf-16"), "utf-16"
    if b"\x00" in data:
        raise CsvError("the file is binary, not CSV")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:  # what German (Western European) Excel writes for "CSV (Trennzeichen-getrennt)"
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _strict(data: bytes, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise CsvError(f"the file claims {encoding} but is not: {exc.reason}") from None
    if "\x00" in text:
        raise CsvError("the file is binary, not CSV")
    return text


def _delimiter(text: str) -> str:
    header = next(line for line in text.splitlines() if line.strip())
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # a cut-off quoted cell confuses the sniffer
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        sniffed = ""
    if sniffed and sniffed in header:
        return sniffed
    # The sniffer gives up on short or irregular files; the header line is the best witness.
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _headers(cells: list[str]) -> tuple[str, ...]:
    """Stripped header names; blanks become "column N", repeats get " (2)", " (3)"…"""
    headers: list[str] = []
    taken: set[str] = set()
    next_suffix: dict[str, int] = {}  # keeps a file of 5,000 equal headers linear
    for index, cell in enumerate(cells, 1):
        name = unique = cell.strip() or f"column {index}"
        while unique in taken:
            next_suffix[name] = next_suffix.get(name, 1) + 1
            unique = f"{name} ({next_suffix[name]})"
        headers.append(unique)
        taken.add(unique)
    return tuple(headers)


def _row_values(headers: tuple[str, ...], cells: list[str]) -> dict[str, str]:
    values = {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(headers)}
    for index in range(len(headers), len(cells)):
        if cells[index].strip():
            values.setdefault(f"column {index + 1}", cells[index].strip())
    return values
