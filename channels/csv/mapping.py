"""Which CSV column holds which of our fields: guessed from headers, overridable on the CLI.

A mapping is `{column header: our field}`, so several columns may feed `phone` or `email`
(Outlook exports have "Business Phone", "Home Phone", "Mobile Phone"). Headers are recognised
in English, German and Russian, including the Outlook (English and German), Google Contacts
and Thunderbird export names; their display-name, type and label columns are left out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

IMPORT_FIELDS = (
    "first_name",
    "last_name",
    "name",
    "company",
    "phone",
    "email",
    "comment",
    "source",
    "title",
)
MULTI_FIELDS = frozenset({"phone", "email"})
SKIP = "skip"  # `--map skip=Notes` leaves a guessed column out

# Checked first: columns that look like contact data but are not the person's own (fax
# numbers, type labels of Google's "Phone 1 - Type", middle names, patronymics, dates;
# Outlook's assistant, manager, telex and company main number; Google's phonetic and
# Japanese reading names).
_NOT_DATA: tuple[str, ...] = (
    *("fax", "typ", "label", "middle", "additional", "nick", "prefix", "suffix"),
    *("date", "datum", "дата", "отчество", "telegram", "телеграм"),
    *("assistent", "assistant", "vorgesetzt", "manager", "telex", "phonetic", "yomi"),
    *("companymain", "telefonfirma"),
)
# Outlook's "E-mail Display Name" / "E-Mail: Angezeigter Name" (and "E-Mail 2: …") hold a
# label such as "Anna Meier (anna@example.de)", not an address; a lone "Display Name" column
# (Thunderbird) is the person's name and stays a name.
_DISPLAY_NAME = ("displayname", "angezeigtername", "anzeigename", "отображаемоеимя")
# Short prefixes that mark a phone column ("Tel. privat", "Моб. тел."), tried after fragments.
_PHONE_PREFIXES = ("tel", "тел", "моб")

# (field, exact normalized names, fragments); exact names of every field win over fragments,
# and fragments are tried in this order ("Firmentelefon" is a phone, "Vorname" not a name).
_RULES: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = (
    (
        "email",
        frozenset({"email", "mail", "emailaddress", "emailadresse", "почта", "емейл", "имейл"}),
        ("mail", "почт"),
    ),
    (
        "phone",
        frozenset({"tel", "telnr", "phone", "mobile", "mobil", "handy", "cell", "тел", "моб"}),
        ("phone", "telefon", "telephone", "mobil", "handy", "cell", "телефон", "мобил", "сотов"),
    ),
    (
        "first_name",
        frozenset({"first", "firstname", "givenname", "forename", "vorname", "имя"}),
        ("firstname", "givenname", "vorname"),
    ),
    (
        "last_name",
        frozenset({"last", "lastname", "surname", "familyname", "nachname", "фамилия"}),
        ("lastname", "surname", "familyname", "nachname", "familienname", "фамилия"),
    ),
    (
        "company",
        frozenset({"company", "org", "firma", "unternehmen", "компания", "организация", "фирма"}),
        ("company", "organi", "firma", "firmen", "unternehmen", "компан", "организац"),
    ),
    (
        "name",
        frozenset(
            {"name", "fullname", "contact", "kontakt", "ansprechpartner", "фио", "полноеимя"}
            | {"контакт", "контактноелицо", "клиент", "customer", "kunde", "kontaktperson"}
            | {"contactperson"}
        ),
        ("fullname", "contactname", "ansprechpartner", "kundenname", "фио", "name", "имя"),
    ),
    (
        "comment",
        frozenset({"note", "notes", "message", "nachricht", "info", "remarks", "description"})
        | frozenset({"beschreibung", "сообщение", "заметка", "заметки", "описание"}),
        ("comment", "kommentar", "notiz", "bemerk", "anmerk", "коммент", "примеч"),
    ),
    (
        "source",
        frozenset({"source", "leadsource", "quelle", "herkunft", "источник"}),
        ("source", "quelle", "herkunft", "источник"),
    ),
    (
        "title",
        frozenset({"title", "subject", "betreff", "titel", "тема", "заголовок", "название"}),
        ("betreff", "subject", "название"),
    ),
)
_NON_WORD = re.compile(r"[\W_]+")


class MappingError(ValueError):
    """A `--map` option names an unknown field or column; the message says which."""


def _key(header: str) -> str:
    return _NON_WORD.sub("", header.casefold().replace("ё", "е"))


def _guess_field(header: str) -> str | None:
    key = _key(header)
    if not key or any(word in key for word in _NOT_DATA):
        return None
    if "mail" in key and any(word in key for word in _DISPLAY_NAME):
        return None
    for field, exact, _fragments in _RULES:
        if key in exact:
            return field
    for field, _exact, fragments in _RULES:
        if any(fragment in key for fragment in fragments):
            return field
    return "phone" if key.startswith(_PHONE_PREFIXES) else None


def guess_mapping(headers: Iterable[str]) -> dict[str, str]:
    """`{header: field}` for every recognised column; single fields take the first column."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for header in headers:
        field = _guess_field(header)
        if field and (field in MULTI_FIELDS or field not in taken):
            mapping[header] = field
            taken.add(field)
    return mapping


def parse_mapping_option(option: str) -> dict[str, str]:
    """`"phone=Tel,phone=Mobil,email=Mail,skip=Notes"` → `{header: field}`."""
    mapping: dict[str, str] = {}
    for part in option.split(","):
        if not part.strip():
            continue
        field, eq, header = part.partition("=")
        field, header = field.strip().casefold(), header.strip()
        if not eq or not header:
            raise MappingError(f"{part.strip()!r}: write field=Column header")
        if field not in IMPORT_FIELDS and field != SKIP:
            raise MappingError(f"unknown field {field!r}; use one of {', '.join(IMPORT_FIELDS)}")
        if header in mapping:
            raise MappingError(f"column {header!r} is mapped twice")
        mapping[header] = field
    _check_single(mapping)
    return mapping


def apply_override(
    guessed: Mapping[str, str], override: Mapping[str, str], headers: Iterable[str]
) -> dict[str, str]:
    """The guessed mapping with `override` applied: a field named there loses its guesses."""
    actual = list(headers)
    resolved = {_resolve_header(h, actual): field for h, field in override.items()}
    replaced = set(resolved.values())
    mapping = {h: f for h, f in guessed.items() if f not in replaced and h not in resolved}
    mapping.update({h: f for h, f in resolved.items() if f != SKIP})
    _check_single(mapping)
    return mapping


def _resolve_header(header: str, headers: list[str]) -> str:
    if header in headers:
        return header
    folded = [h for h in headers if h.casefold() == header.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise MappingError(f"no column {header!r}; the file has: {', '.join(headers)}")


def _check_single(mapping: Mapping[str, str]) -> None:
    counts = Counter(f for f in mapping.values() if f not in MULTI_FIELDS and f != SKIP)
    repeated = sorted(f for f, n in counts.items() if n > 1)
    if repeated:
        raise MappingError(f"{', '.join(repeated)} can come from one column only")
