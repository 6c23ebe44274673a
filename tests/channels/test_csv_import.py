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
    google_2024 = ("First Name", "Phonetic First Name", "Phonetic Last Name", "Last Name",
                   "Organization Name", "E-mail 1 - Label", "E-mail 1 - Value",
                   "Phone 1 - Label", "Phone 1 - Value")  # fmt: skip
    assert guess_mapping(google_2024) == {
        "First Name": "first_name",
        "Last Name": "last_name",
        "Organization Name": "company",
        "E-mail 1 - Value": "email",
        "Phone 1 - Value": "phone",
    }


def test_outlook_display_name_assistant_and_manager_columns_are_not_contact_data() -> None:
    english = ("First Name", "Last Name", "Assistant's Phone", "Company Main Phone",
               "Telex", "E-mail Address", "E-mail Type", "E-mail Display Name",
               "E-mail 2 Address", "E-mail 2 Display Name", "Assistant's Name",
               "Manager's Name")  # fmt: skip
    assert guess_mapping(english) == {
        "First Name": "first_name",
        "Last Name": "last_name",
        "E-mail Address": "email",
        "E-mail 2 Address": "email",
    }
    german = ("Vorname", "Nachname", "Telefon Assistent", "Telefon Firma", "Telex",
              "E-Mail-Adresse", "E-Mail-Typ", "E-Mail: Angezeigter Name", "E-Mail 2: Adresse",
              "E-Mail 2: Angezeigter Name", "Name Assistent",
              "Name des/der Vorgesetzten")  # fmt: skip
    assert guess_mapping(german) == {
        "Vorname": "first_name",
        "Nachname": "last_name",
        "E-Mail-Adresse": "email",
        "E-Mail 2: Adresse": "email",
    }
    # Thunderbird's lone "Display Name" is the person's name.
    thunderbird = ("First Name", "Last Name", "Display Name", "Primary Email", "Mobile Number")
    assert guess_mapping(thunderbird)["Display Name"] == "name"


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
    row = {"Tel": "030 1234567, 0171 1234567; 030 1234567", "Mail": "a@b.de; x@"}
    mapping = {"Tel": "phone", "Mail": "email"}
    event = convert(7, row, mapping)
    assert isinstance(event, InboundEvent)
    assert event.phones == ("030 1234567", "0171 1234567")
    assert event.emails == ("a@b.de",)
    assert event.meta["warnings"] == ["'x@' is not an email address"]


@pytest.mark.parametrize(
    ("cell", "emails", "bad"),
    [
        ("anna meier@example.com", (), ["'anna meier@example.com' is not an email address"]),
        ("a@b.de x@", (), ["'a@b.de x@' is not an email address"]),
        ("Anna Meier (anna@example.com)", (), ["'Anna Meier (anna@example.com)' is not an e"]),
        ("a@b.de c@d.de", ("a@b.de", "c@d.de"), []),
        ("Anna Meier <anna@example.com>", ("Anna Meier <anna@example.com>",), []),
    ],
)
def test_an_address_with_spaces_is_never_cut_down_to_a_part_that_looks_valid(
    cell: str, emails: tuple[str, ...], bad: list[str]
) -> None:
    event = convert(3, {"Tel": "030 1234567", "Mail": cell}, {"Tel": "phone", "Mail": "email"})
    assert isinstance(event, InboundEvent)
    assert event.emails == emails
    assert [w[: len(b)] for w, b in zip(event.meta.get("warnings", []), bad, strict=True)] == bad
    alone = convert(3, {"Mail": cell}, {"Mail": "email"})
    assert isinstance(alone, RowProblem if bad else InboundEvent)


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


def test_a_stray_quote_no_longer_swallows_the_following_contacts() -> None:
    data = (
        b"Name;Telefon;E-Mail\r\n"
        b'"Anna Meier;030 111111;anna@example.de\r\n'  # a quote opened, never closed on the line
        b"Bernd Kurz;030 222222;bernd@example.de\r\n"
        b"Carl Lang;030 333333;carl@example.de\r\n"
        b'"Eva Klein";030 555555;eva@example.de\r\n'  # the quote the broken cell would end at
        b'Fritz Roth;030 666666;"f@example.de"\r\n'
    )
    table = read_csv(data)
    assert [r.values["Name"] for r in table.rows] == [
        "Anna Meier", "Bernd Kurz", "Carl Lang", "Eva Klein", "Fritz Roth"
    ]  # fmt: skip
    assert table.rows[0].values["E-Mail"] == "anna@example.de"
    assert table.rows[0].notes == (
        "line 2: a quote opens a cell and is not closed on that line; "
        "the line was read with the quote as a character",
    )
    assert all(not r.notes for r in table.rows[1:])


def test_a_broken_cell_is_ended_at_its_line_end_and_line_numbers_count_the_sep_line() -> None:
    data = b'sep=;\r\nName;Telefon;Notiz\r\nAnna;030 111111;"Meier; Anna\r\nBernd;030 2;x\r\n'
    anna, bernd = read_csv(data).rows
    assert anna.values == {"Name": "Anna", "Telefon": "030 111111", "Notiz": "Meier; Anna"}
    assert anna.notes[0].startswith("line 3: ") and "ended at the line end" in anna.notes[0]
    assert bernd.values["Name"] == "Bernd"


def test_a_note_over_several_lines_is_kept_whole() -> None:
    data = b'Name,Telefon,Notiz\r\nAnna,030 1,"Rueckruf, bitte\r\nab 14 Uhr"\r\nBernd,030 2,\r\n'
    anna, bernd = read_csv(data).rows
    assert anna.values["Notiz"] == "Rueckruf, bitte\r\nab 14 Uhr" and not anna.notes
    assert bernd.values["Name"] == "Bernd"


def test_a_stray_quote_in_a_big_file_does_not_outgrow_the_field_limit() -> None:
    rows = "".join(f"P{i};030 {100000 + i};p{i}@example.de\r\n" for i in range(6000))
    table = read_csv(('Name;Telefon;E-Mail\r\n"Anna;030 111111;a@example.de\r\n' + rows).encode())
    assert len(table.rows) == 6001 and table.rows[-1].values["Name"] == "P5999"
    assert table.rows[0].notes


def test_notes_of_a_broken_line_make_the_row_a_reported_one() -> None:
    event = row_to_event(
        2,
        {"Tel": "030 1234567"},
        {"Tel": "phone"},
        file_digest="f",
        as_kind="lead",
        region="DE",
        now=NOW,
        notes=("line 2: a quote opens a cell",),
    )
    assert isinstance(event, InboundEvent)
    assert event.meta["warnings"] == ["line 2: a quote opens a cell"]
