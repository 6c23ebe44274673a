"""`leadbot import-csv` end to end: real files, the real command in a child process, both DBs.

LEADBOT_CSV_BIG_ROWS sets the size of the big-file test (default 600 rows to keep the suite
fast; the acceptance run uses 10,000).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from crm.config import CrmConfig
from crm.db import Database
from crm.facade import Crm
from crm.models import Contact, Deal, InboundEventLog, Lead
from crm.services.listing import ListFilter
from crm.services.records import ContactInput
from tests.channels.service_helpers import count

# The acceptance size (10,000 rows) takes minutes per database; CI runs a smaller file and
# LEADBOT_CSV_BIG_ROWS=10000 runs the full one.
BIG_ROWS = int(os.environ.get("LEADBOT_CSV_BIG_ROWS", "600"))
_RUN = "import sys\nfrom leadbot import cli\nsys.exit(cli.main(sys.argv[1:]))\n"
_SUMMARY = re.compile(r"^(created|matched|skipped|unchanged) +(\d+)", re.MULTILINE)


@dataclass
class Run:
    code: int
    out: str
    err: str

    def counts(self) -> dict[str, int]:
        return {kind: int(n) for kind, n in _SUMMARY.findall(self.out)}


async def leadbot(db: Database | str, *args: str) -> Run:
    """The real command line in a child process (so `asyncio.run` and tqdm act as in use)."""
    url = db if isinstance(db, str) else db.url.render_as_string(hide_password=False)
    env = {**os.environ, "LEADBOT_DATABASE__URL": url, "LEADBOT_CONFIG": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _RUN,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return Run(proc.returncode or 0, out.decode(), err.decode())


@pytest.fixture
async def crm(db: Database) -> Crm:
    crm = Crm(db, CrmConfig())
    await crm.prepare()
    return crm


GERMAN_EXCEL = (
    "sep=;\r\n"
    "Vorname;Nachname;Firma;Telefon geschäftlich;E-Mail-Adresse;Notizen\r\n"
    "Jürgen;Müller;Müller GmbH;030 1234567;j.mueller@example.de;Messe Köln\r\n"
    "Anna;Schmidt;;0171 2345678, 12;;\r\n"
    "Niemand;;;;;ohne Kontakt\r\n"
    "J.;Müller;;+49 30 1234567;;zweiter Eintrag\r\n"
    "Büro;Eigen;;030 9999999;;\r\n"
).encode("cp1252")


async def test_german_excel_file_imports_once_with_a_problem_report(
    crm: Crm, tmp_path: Path
) -> None:
    await crm.exceptions.add("+49 30 9999999", "our own office")
    path = tmp_path / "Kunden.csv"
    path.write_bytes(GERMAN_EXCEL)

    dry = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--dry-run")
    assert dry.code == 0, dry.err
    assert "row 2: would create (new_lead): no match → new lead" in dry.out
    assert "row 4: would skip (unusable): no usable phone number or email address" in dry.out
    assert "row 5: would match (attached_lead): same person as row 2" in dry.out
    assert "row 6: would skip (ignored): excepted phone +49309999999" in dry.out
    assert "'Telefon geschäftlich' → phone" in dry.err  # the guessed mapping is shown
    assert await count(crm, InboundEventLog) == 0 and await count(crm, Lead) == 0

    real = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--no-progress")
    assert real.code == 0, real.err
    assert (
        real.counts()
        == dry.counts()
        == {
            "created": 2,
            "matched": 1,
            "skipped": 2,
            "unchanged": 0,
        }
    )
    assert await count(crm, Lead) == 2
    leads, _ = await crm.leads.page(ListFilter(limit=100))
    mueller = next(lead for lead in leads if lead.name == "Jürgen Müller")
    assert mueller.source == "IMPORT" and mueller.company_title == "Müller GmbH"
    assert {c.value for c in mueller.comms} == {"+49301234567", "j.mueller@example.de"}

    report = (tmp_path / "Kunden.problems.csv").read_text("utf-8-sig").splitlines()
    assert report[0] == "row;problem;Vorname;Nachname;Firma;Telefon geschäftlich;" + (
        "E-Mail-Adresse;Notizen"
    )
    assert report[1].startswith("3;imported (new_lead), but '12' is not a phone number;Anna")
    assert report[2].startswith("4;no usable phone number or email address;Niemand")
    assert report[3].startswith("6;excepted phone +49309999999 → ignored;Büro")

    again = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--no-progress")
    # Every row that reached intake before is recognised; only the unusable one is left.
    assert again.counts() == {"created": 0, "matched": 0, "skipped": 1, "unchanged": 4}
    assert await count(crm, Lead) == 2


async def test_contact_import_from_utf8_bom_matches_known_contacts_and_makes_no_leads(
    crm: Crm, tmp_path: Path
) -> None:
    known = await crm.records.create_contact(ContactInput(name="Eva Klein", phones=("+4940123",)))
    path = tmp_path / "google.csv"
    path.write_bytes(
        "\ufeffName,Phone 1 - Type,Phone 1 - Value,E-mail 1 - Value\r\n"
        "Eva Klein,Mobile,040 123,eva@klein.de\r\n"
        "Олег Иванов,Work,+7 916 123-45-67,oleg@example.ru\r\n".encode()
    )
    run = await leadbot(crm.db, "import-csv", str(path), "--as", "contact", "--no-progress")
    assert run.code == 0, run.err
    assert "attached_client 1" in run.out and "new_contact 1" in run.out
    eva = await crm.records.get_contact(known.id)
    assert eva.emails == ["eva@klein.de"]
    assert await count(crm, Contact) == 2
    assert await count(crm, Lead) == 0 and await count(crm, Deal) == 0
    assert not (tmp_path / "google.problems.csv").exists()


async def test_columns_that_are_not_guessed_can_be_mapped(crm: Crm, tmp_path: Path) -> None:
    path = tmp_path / "liste.csv"
    path.write_text(
        "Wer,Nummer,Bemerkung,Betreff\nKarl,0221 555666,Rückruf,Angebot Heizung\n",
        encoding="utf-8",
    )
    unmapped = await leadbot(crm.db, "import-csv", str(path), "--as", "lead")
    assert unmapped.code == 2
    assert "no column looks like a phone number" in unmapped.err and "Nummer" in unmapped.err
    bad = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--map", "phone=Tel")
    assert bad.code == 2 and "no column 'Tel'" in bad.err
    mapped = await leadbot(
        crm.db,
        "import-csv",
        str(path),
        "--as",
        "lead",
        "--map",
        "phone=Nummer,name=Wer",
        "--report",
        str(tmp_path / "out" / "r.csv"),
    )
    assert mapped.code == 0 and mapped.counts()["created"] == 1
    leads, _ = await crm.leads.page(ListFilter(limit=100))
    assert [(lead.name, lead.comms[0].value) for lead in leads] == [("Karl", "+49221555666")]
    assert leads[0].title == "Angebot Heizung"  # the file's title column names the lead


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file has no rows"),
        (b"\x00\x01\x02PK\x03\x04", "the file is binary"),
    ],
)
async def test_unreadable_files_are_refused_before_the_database_is_touched(
    tmp_path: Path, content: bytes, message: str
) -> None:
    nowhere = f"sqlite+aiosqlite:///{tmp_path / 'never-created' / 'x.db'}"
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    run = await leadbot(nowhere, "import-csv", str(path), "--as", "lead")
    assert run.code == 2 and message in run.err
    missing = await leadbot(nowhere, "import-csv", str(tmp_path / "nope.csv"), "--as", "lead")
    assert missing.code == 2 and "nope.csv" in missing.err
    assert not (tmp_path / "never-created").exists()


def big_file(rows: int) -> bytes:
    """Semicolon CSV: mostly new people, every 20th a repeat of an earlier row, every 50th
    without any contact data, and a few known or excepted numbers."""
    lines = ["Vorname;Nachname;Telefon;E-Mail;Notiz"]
    for i in range(rows):
        if i % 50 == 7:
            lines.append(f"Kein;Kontakt{i};;;nichts")
        elif i % 20 == 3 and i > 20:
            lines.append(f"Wieder;Person{i - 10};030 {5000000 + i - 10};;zweiter Eintrag")
        elif i % 500 == 11:
            lines.append(f"Bekannt;Kunde{i};040 111;p{i}@example.de;")
        elif i % 1000 == 13:
            lines.append(f"Eigen;Büro{i};030 9999999;;")
        else:
            lines.append(f"Vor{i};Nach{i};030 {5000000 + i};p{i}@example.de;")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


async def test_big_file_dry_run_counts_equal_the_real_run(crm: Crm, tmp_path: Path) -> None:
    await crm.exceptions.add("+49 30 9999999", "our own office")
    await crm.records.create_contact(ContactInput(name="Bekannt", phones=("+4940111",)))
    path = tmp_path / "big.csv"
    path.write_bytes(big_file(BIG_ROWS))

    dry = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--dry-run")
    assert dry.code == 0, dry.err
    real = await leadbot(crm.db, "import-csv", str(path), "--as", "lead")
    assert real.code == 0, real.err
    assert "importing: 100%" in real.err and f"{BIG_ROWS}/{BIG_ROWS}" in real.err
    outcomes = re.findall(r"^(\w+) +\d+  (.*)$", real.out, re.MULTILINE)
    assert outcomes == re.findall(r"^(\w+) +\d+  (.*)$", dry.out, re.MULTILINE)
    counts = real.counts()
    assert sum(counts.values()) == BIG_ROWS and counts["matched"] > 0 and counts["skipped"] > 0
    assert await count(crm, Lead) == counts["created"]


async def test_problem_report_cells_cannot_run_as_formulas(crm: Crm, tmp_path: Path) -> None:
    path = tmp_path / "evil.csv"
    path.write_bytes(
        b"Name;Phone;Notes\r\n"
        b'=HYPERLINK("http://evil.example","click");;+1+cmd|calc\r\n'
        b"@SUM(A1);;-2\r\n"
        b"-Minus;;plain\r\n"
        b"Ctl\x01Name\xc2\x85;+49 30 1234567;ok\r\n"
    )
    run = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--no-progress")
    assert run.code == 0, run.err
    text = (tmp_path / "evil.problems.csv").read_text("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert [(r[0], r[2], r[4]) for r in rows[1:]] == [
        ("2", '\'=HYPERLINK("http://evil.example","click")', "'+1+cmd|calc"),
        ("3", "'@SUM(A1)", "'-2"),
        ("4", "'-Minus", "plain"),
    ]
    # The row with control characters in its name is imported with the name cleaned.
    leads, _ = await crm.leads.page(ListFilter(limit=10))
    assert [lead.name for lead in leads] == ["CtlName"]


SAMPLES = Path(__file__).parent.parent / "samples"


async def test_german_outlook_export_imports_cleanly(crm: Crm, tmp_path: Path) -> None:
    """Outlook's German export: every field quoted, cp1252, a multi-line note, display-name,
    type, assistant, manager, telex and company-main-number columns next to the real ones."""
    path = tmp_path / "Kontakte.csv"
    path.write_bytes((SAMPLES / "outlook_contacts_de.csv").read_bytes())
    run = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--no-progress")
    assert run.code == 0, run.err
    assert "'E-Mail-Adresse' → email" in run.err and "'E-Mail 2: Adresse' → email" in run.err
    assert "Angezeigter Name' →" not in run.err and "Assistent' →" not in run.err
    assert run.counts() == {"created": 4, "matched": 0, "skipped": 0, "unchanged": 0}
    assert not (tmp_path / "Kontakte.problems.csv").exists()
    leads, _ = await crm.leads.page(ListFilter(limit=100))
    comms = {lead.name: {c.value for c in lead.comms} for lead in leads}
    assert comms == {
        "Anna Meier": {"+49301234567", "+491712345678", "anna.meier@meier-haustechnik.de"},
        "Jürgen Müller": {
            "+49897654321",
            "j.mueller@example.de",
            "juergen.mueller@firma-example.de",
        },
        "Günther Weiß": {"g.weiss@weiss-soehne.example"},
        "Olga Iwanowa": {"+79161234567", "olga.iwanowa@example.ru"},
    }


async def test_broken_cells_are_reported_by_line_and_a_dry_run_writes_no_report(
    crm: Crm, tmp_path: Path
) -> None:
    path = tmp_path / "kunden.csv"
    path.write_bytes(
        b"Name;Telefon;E-Mail\r\n"
        b"Anna Meier;;anna meier@example.com\r\n"  # one broken address, not meier@example.com
        b'"Bernd Kurz;030 222222;bernd@example.de\r\n'  # a stray quote
        b"Carl Lang;030 333333;carl@example.de\r\n"
        b"Dora Sommer;030 444444;dora@example.de\r\n"
        b'"Eva Klein";030 555555;eva@example.de\r\n'
    )
    report = tmp_path / "report.csv"
    dry = await leadbot(
        crm.db, "import-csv", str(path), "--as", "lead", "--dry-run", "--report", str(report)
    )
    assert dry.code == 0, dry.err
    assert (
        "row 2: would skip (unusable): no usable phone number or email address "
        "('anna meier@example.com' is not an email address)" in dry.out
    )
    assert "2 rows with problems (shown above); the import will list them in" in dry.out
    assert dry.counts() == {"created": 4, "matched": 0, "skipped": 1, "unchanged": 0}
    assert not report.exists() and not (tmp_path / "kunden.problems.csv").exists()
    assert await count(crm, InboundEventLog) == 0

    real = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--no-progress")
    assert real.counts() == dry.counts()
    leads, _ = await crm.leads.page(ListFilter(limit=100))
    assert sorted(lead.name for lead in leads) == [
        "Bernd Kurz", "Carl Lang", "Dora Sommer", "Eva Klein"
    ]  # fmt: skip
    assert "meier@example.com" not in {c.value for lead in leads for c in lead.comms}
    text = (tmp_path / "kunden.problems.csv").read_text("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert [(r[0], r[1][:50], r[2]) for r in rows[1:]] == [
        ("2", "no usable phone number or email address ('anna mei", "Anna Meier"),
        ("3", "imported (new_lead), but line 3: a quote opens a c", "Bernd Kurz"),
    ]


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_real_import_leaves_postgresql_with_statistics_to_plan_from(
    crm: Crm, tmp_path: Path
) -> None:
    # The machine's server, like many, may not analyze soon after a bulk load: without
    # statistics the planner guesses, and lookups in a freshly filled database go astray.
    path = tmp_path / "Kunden.csv"
    path.write_bytes(GERMAN_EXCEL)
    tables = ("leads", "communications", "inbound_events")

    async def last_analyzed() -> dict[str, Any]:
        async with crm.db.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT relname, last_analyze FROM pg_stat_user_tables"
                    " WHERE relname = ANY(:tables)"
                ),
                {"tables": list(tables)},
            )
            return {name: at for name, at in rows}

    before = await last_analyzed()
    dry = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--dry-run")
    assert dry.code == 0, dry.err
    assert await last_analyzed() == before  # a preview writes nothing, gathers nothing

    real = await leadbot(crm.db, "import-csv", str(path), "--as", "lead", "--no-progress")
    assert real.code == 0, real.err
    after = await last_analyzed()
    assert set(after) == set(tables)
    for table in tables:
        assert after[table] is not None and after[table] != before.get(table), table
