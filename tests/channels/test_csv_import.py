"""CSV import: reading spreadsheet exports, guessing columns, rows → events or problems."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import pytest

from channels.csv.rows import (
    CsvError,
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
from channels.event import Channel, InboundEvent

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def german_excel_file() -> bytes:
    """What German Excel writes for "CSV (Trennzeichen-getrennt)": cp1252, `;`, CRLF."""
    rows = [
        ["Vorname", "Nachname", "Firma", "Telefon", "Mobil", "E-Mail", "Bemerkung", "Fax"],
        ["Jürgen", "Müller", "Müller & Söhne GmbH", "030 1234567", "0171 1234567",
         "j.mueller@example.de", "Grüße; bitte zurückrufen", "030 7654321"],
        ["", "", "", "", "", "", "", ""],
        ["Anna", "Schäfer", "", "n/a", "", "", "Messe", ""],
        ["Björn", "Weiß", "", "", "", "bjoern@example.de", "€ 500 Budget", ""],
    ]  # fmt: skip
    with_crlf = "\r\n".join(";".join(_quote(c) for c in row) for row in rows) + "\r\n"
    return with_crlf.encode("cp1252")


def _quote(cell: str) -> str:
    return f'"{cell}"' if ";" in cell else cell


def convert(
    row_no: int, row: dict[str, str], mapping: dict[str, str], *, region: str | None = "DE"
) -> InboundEvent | RowProblem:
    return row_to_event(
        row_no, row, mapping, file_digest="d1", as_kind="lead", region=region, now=NOW
    )


def events_of(data: bytes, *, as_kind: ImportKind = "lead") -> list[InboundEvent | RowProblem]:
    table = read_csv(data)
    mapping = guess_mapping(table.headers)
    digest = file_digest(data)
    return [
        row_to_event(
            r.number, r.values, mapping, file_digest=digest, as_kind=as_kind, region="DE", now=NOW
        )
        for r in table.rows
    ]


# --- reading -----------------------------------------------------------------------------------


def test_german_excel_file_is_read_with_umlauts_and_semicolons() -> None:
    table = read_csv(german_excel_file())
    assert table.encoding == "cp1252"
    assert table.delimiter == ";"
    assert table.headers[:3] == ("Vorname", "Nachname", "Firma")
    assert [r.number for r in table.rows] == [2, 4, 5]  # the blank row 3 is skipped
    first = table.rows[0].values
    assert first["Firma"] == "Müller & Söhne GmbH"
    assert first["Bemerkung"] == "Grüße; bitte zurückrufen"
    assert table.rows[2].values["Bemerkung"] == "€ 500 Budget"


def test_utf8_with_and_without_bom() -> None:
    text = "Name,Phone,Email\nЗоя Иванова,+7 916 123-45-67,zoya@example.ru\n"
    plain, bom = read_csv(text.encode()), read_csv(b"\xef\xbb\xbf" + text.encode())
    assert plain.encoding == "utf-8"
    assert bom.encoding == "utf-8-sig"
    assert plain.headers == bom.headers == ("Name", "Phone", "Email")  # no BOM glued to "Name"
    assert plain.rows == bom.rows
    assert plain.rows[0].values["Name"] == "Зоя Иванова"


def test_utf16_tab_separated_unicode_text_export() -> None:
    data = "Name\tTelefon\nÅsa\t030 1234567\n".encode("utf-16")
    table = read_csv(data)
    assert table.delimiter == "\t"
    assert table.rows[0].values == {"Name": "Åsa", "Telefon": "030 1234567"}


def test_excel_sep_hint_line_sets_the_delimiter() -> None:
    table = read_csv(b"sep=,\r\nName,Notiz\r\nA,x;y;z\r\n")
    assert table.delimiter == ","
    assert table.headers == ("Name", "Notiz")
    assert table.rows[0].values["Notiz"] == "x;y;z"


def test_comma_file_with_semicolons_in_text_is_still_comma_separated() -> None:
    data = b'Name,Phone,Note\nA,030 1,"a;b;c;d"\nB,030 2,"e;f;g;h"\n'
    assert read_csv(data).delimiter == ","


def test_single_column_file() -> None:
    table = read_csv(b"email\na@b.de\nc@d.de\n")
    assert table.headers == ("email",)
    assert [r.values["email"] for r in table.rows] == ["a@b.de", "c@d.de"]


def test_ragged_rows_and_repeated_or_blank_headers() -> None:
    table = read_csv(b"Telefon;Telefon;;Name\n030 1;030 2\n030 3;030 4;x;B;extra\n")
    assert table.headers == ("Telefon", "Telefon (2)", "column 3", "Name")
    short, long = table.rows
    assert short.values["Name"] == ""
    assert long.values["column 5"] == "extra"


@pytest.mark.timeout(10)
def test_thousands_of_equal_headers_stay_fast() -> None:
    data = ("Telefon;" * 20_000 + "\n" + "030 1234567;" * 20_000).encode()
    table = read_csv(data)
    assert len(set(table.headers)) == 20_001
    assert len(guess_mapping(table.headers)) == 20_000


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no rows"),
        (b"\r\n \r\n", "no rows"),
        (b"sep=;\r\n", "no rows"),
        (b"PK\x03\x04\x00\x00binary", "binary"),
        (b"\xef\xbb\xbf\xff\xfe", "utf-8-sig"),
        (b'a,b\n"' + b"x" * 200_000 + b'"\n', "not a readable CSV"),
    ],
)
def test_unreadable_files_raise_csv_error(data: bytes, reason: str) -> None:
    with pytest.raises(CsvError, match=reason):
        read_csv(data)


# --- column mapping ----------------------------------------------------------------------------


def test_german_headers_are_recognised_and_fax_is_not_a_phone() -> None:
    headers = ("Vorname", "Nachname", "Firma", "Telefon", "Mobil", "E-Mail", "Bemerkung", "Fax")
    assert guess_mapping(headers) == {
        "Vorname": "first_name",
        "Nachname": "last_name",
        "Firma": "company",
        "Telefon": "phone",
        "Mobil": "phone",
        "E-Mail": "email",
        "Bemerkung": "comment",
    }


def test_russian_headers_are_recognised() -> None:
    headers = ("Имя", "Фамилия", "Отчество", "Телефон", "Компания", "Эл. почта", "Комментарий")
    assert guess_mapping(headers) == {
        "Имя": "first_name",
        "Фамилия": "last_name",
        "Телефон": "phone",
        "Компания": "company",
        "Эл. почта": "email",
        "Комментарий": "comment",
    }


def test_outlook_and_google_export_headers() -> None:
    outlook = ("First Name", "Middle Name", "Last Name", "Company", "E-mail Address",
               "Business Phone", "Home Phone", "Mobile Phone", "Business Fax", "Notes")  # fmt: skip
    assert guess_mapping(outlook) == {
        "First Name": "first_name",
        "Last Name": "last_name",
        "Company": "company",
        "E-mail Address": "email",
        "Business Phone": "phone",
        "Home Phone": "phone",
        "Mobile Phone": "phone",
        "Notes": "comment",
    }
    google = ("Name", "Given Name", "Additional Name", "Phone 1 - Type", "Phone 1 - Value")
    assert guess_mapping(google) == {
        "Name": "name",
        "Given Name": "first_name",
        "Phone 1 - Value": "phone",
    }


def test_single_fields_take_the_first_matching_column_only() -> None:
    assert guess_mapping(("Firma", "Company", "Name", "Full name")) == {
        "Firma": "company",
        "Name": "name",
    }


def test_mapping_override_replaces_guesses_for_the_named_fields() -> None:
    headers = ("Name", "Tel", "Handy", "Mail", "Notiz", "Kanal")
    guessed = guess_mapping(headers)
    assert guessed["Tel"] == guessed["Handy"] == "phone"
    override = parse_mapping_option("phone=Handy, source=kanal, skip=Notiz")
    mapping = apply_override(guessed, override, headers)
    assert mapping == {"Name": "name", "Handy": "phone", "Mail": "email", "Kanal": "source"}


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("phone", "field=Column"),
        ("phone=", "field=Column"),
        ("fax=Fax", "unknown field"),
        ("name=A,name=B", "one column only"),
        ("phone=A,email=A", "mapped twice"),
    ],
)
def test_bad_mapping_options_are_explained(option: str, reason: str) -> None:
    with pytest.raises(MappingError, match=reason):
        parse_mapping_option(option)


def test_override_naming_a_missing_column_lists_the_real_ones() -> None:
    with pytest.raises(MappingError, match="the file has: Name, Tel"):
        apply_override({}, {"Telefon": "phone"}, ("Name", "Tel"))


# --- rows → events -----------------------------------------------------------------------------


def test_rows_become_import_events_or_problems() -> None:
    jurgen, anna, bjorn = events_of(german_excel_file())
    assert isinstance(jurgen, InboundEvent)
    assert jurgen.channel is Channel.IMPORT
    assert jurgen.source == "IMPORT"
    assert jurgen.display_name == "Jürgen Müller"
    assert jurgen.company_name == "Müller & Söhne GmbH"
    assert jurgen.phones == ("030 1234567", "0171 1234567")  # not the fax
    assert jurgen.emails == ("j.mueller@example.de",)
    assert jurgen.text == "Grüße; bitte zurückrufen"
    assert jurgen.phone_region == "DE"
    assert jurgen.meta["import_as"] == "lead"
    assert jurgen.meta["fields"] == {"Fax": "030 7654321"}
    assert isinstance(anna, RowProblem)
    assert anna.row_no == 4
    assert "no usable phone number or email" in anna.reason
    assert "'n/a'" in anna.reason
    assert isinstance(bjorn, InboundEvent)
    assert bjorn.phones == ()


def test_import_as_contact_is_recorded() -> None:
    (event, *_rest) = events_of(german_excel_file(), as_kind="contact")
    assert isinstance(event, InboundEvent)
    assert event.meta["import_as"] == "contact"


def test_rerunning_the_same_file_gives_the_same_ids() -> None:
    data = german_excel_file()
    first = [e.external_id for e in events_of(data) if isinstance(e, InboundEvent)]
    again = [e.external_id for e in events_of(data) if isinstance(e, InboundEvent)]
    assert first == again
    assert len(set(first)) == len(first) == 2
    assert all(i.startswith(file_digest(data) + ":") for i in first)


def test_changed_row_content_changes_the_id() -> None:
    row = {"Name": "A", "Telefon": "030 1234567"}
    mapping = {"Name": "name", "Telefon": "phone"}
    one, other = convert(2, row, mapping), convert(2, {**row, "Name": "B"}, mapping)
    assert isinstance(one, InboundEvent)
    assert isinstance(other, InboundEvent)
    assert one.external_id != other.external_id


def test_several_numbers_in_one_cell_and_bad_parts_as_warnings() -> None:
    row = {"Tel": "030 1234567, 0171 1234567; 030 1234567", "Mail": "a@b.de x@"}
    mapping = {"Tel": "phone", "Mail": "email"}
    event = convert(7, row, mapping)
    assert isinstance(event, InboundEvent)
    assert event.phones == ("030 1234567", "0171 1234567")
    assert event.emails == ("a@b.de",)
    assert event.meta["warnings"] == ["'x@' is not an email address"]


def test_region_decides_whether_a_national_number_is_usable() -> None:
    row, mapping = {"Telefon": "0171 1234567"}, {"Telefon": "phone"}
    assert isinstance(convert(2, row, mapping, region="DE"), InboundEvent)
    problem = convert(2, row, mapping, region=None)
    assert isinstance(problem, RowProblem)
    assert problem.values == row


def test_problem_report_lists_rows_with_their_values() -> None:
    problems = [RowProblem(4, "no usable phone", {"Name": "Anna", "Tel": "n/a"})]
    text = problem_report(("Name", "Tel"), problems)
    assert list(csv.reader(text.splitlines())) == [
        ["row", "problem", "Name", "Tel"],
        ["4", "no usable phone", "Anna", "n/a"],
    ]
