"""Turn raw phones, emails and names into the canonical forms identities are compared in.

Phones become E.164 (extension kept apart, never part of the match key) when they are valid
numbers of their country: a possible but unassigned one (`0000000`) is as unusable as an
unparseable one, or every customer who types zeros would be one person. Emails become
lower-case with an ASCII (IDNA 2008, punycode) domain, the form they are matched in;
`display_email` gives a rep the Unicode form back. Nothing here raises on bad input: what
cannot be normalized is reported as "not usable" (e164 None / None) so a caller can keep the
raw value for display.
"""

from __future__ import annotations

import re
import unicodedata
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

import idna
import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat, ValidationResult
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from matching.model import PhoneNumber
from matching.phonevalid import is_valid_number

# What phone systems send instead of a number when the caller hides it.
_WITHHELD = frozenset(
    {"", "anonymous", "unknown", "private", "restricted", "withheld", "unavailable", "blocked"}
)
_ANGLE_ADDR = re.compile(r"<([^<>]*)>\s*$")
_WHITESPACE = re.compile(r"\s+")
# A bare ASCII dot-atom address ("anna.meier+x@example.de"), the common form: parseaddr gives
# it back as it is, so it is taken without parseaddr's tokenizing.
_BARE_ADDR = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)


def is_withheld(raw: str | None) -> bool:
    """True when the "number" is a placeholder for a hidden caller id (or empty)."""
    return raw is None or raw.strip().casefold() in _WITHHELD


def _region(region: str | None) -> str | None:
    return (region.strip().upper() or None) if region else None


# "+" and digits, the form a PBX sends: `_plus_number` reads it without phonenumbers' search for
# a number in free text, extensions and non-ASCII digits. From 3 digits on (shorter ones take
# phonenumbers' own path); a leading 0 is no country code.
_PLUS_DIGITS = re.compile(r"\+[1-9][0-9]{2,16}")
# phonenumbers' own steps that `parse` takes for such a number: private, so a version without
# them sends every number through `phonenumbers.parse`.
try:
    from phonenumbers.phonenumberutil import (
        _MAX_LENGTH_COUNTRY_CODE,
        _MAX_LENGTH_FOR_NSN,
        _MIN_LENGTH_FOR_NSN,
        _maybe_strip_national_prefix_carrier_code,
        _set_italian_leading_zeros_for_phone_number,
        _test_number_length,
    )
except ImportError:  # pragma: no cover - another phonenumbers
    _PLUS_PATH = False
else:
    _PLUS_PATH = True
_SHORT_LENGTHS = (
    ValidationResult.TOO_SHORT,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ValidationResult.INVALID_LENGTH,
)


def _split_code(text: str) -> tuple[int, str] | None:
    """ "+" and digits as (country code, national digits): the first prefix that is a code."""
    digits = text[1:]
    for size in range(1, _MAX_LENGTH_COUNTRY_CODE + 1):
        country_code = int(digits[:size])
        if country_code in COUNTRY_CODE_TO_REGION_CODE:
            return country_code, digits[size:]
    return None


def _plus_metadata(country_code: int, region: str | None) -> Any:
    """The metadata `phonenumbers.parse` reads a "+" number of `country_code` with."""
    number_region = phonenumbers.region_code_for_country_code(country_code)
    if number_region != region:
        return PhoneMetadata.metadata_for_region_or_calling_code(country_code, number_region)
    return PhoneMetadata.metadata_for_region(number_region, None)


def _parse_plus(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    """`phonenumbers.parse(text, region)` for "+" and digits, by the same steps it takes for
    them, without its generic reading of free text; None where that path does not apply or
    the number would be refused (then `phonenumbers.parse` answers, or raises)."""
    if not _PLUS_PATH or not _PLUS_DIGITS.fullmatch(text):
        return None
    split = _split_code(text)
    return None if split is None else _plus_number(*split, region)


def _plus_number(
    country_code: int, national: str, region: str | None
) -> phonenumbers.PhoneNumber | None:
    """`_parse_plus` once the country code is split off (`region` as `_region` gives it)."""
    metadata = _plus_metadata(country_code, region)
    if metadata is None or len(national) < _MIN_LENGTH_FOR_NSN:
        return None
    _, stripped, _ = _maybe_strip_national_prefix_carrier_code(national, metadata)
    if _test_number_length(stripped, metadata) not in _SHORT_LENGTHS:
        national = stripped
    if not _MIN_LENGTH_FOR_NSN <= len(national) <= _MAX_LENGTH_FOR_NSN:
        return None
    number = phonenumbers.PhoneNumber(country_code=country_code)
    _set_italian_leading_zeros_for_phone_number(national, number)
    number.national_number = int(national)
    return number


# A call's ringing / answered / ended events, and a customer's repeated contacts, carry the
# same number; parsing it is the costliest step of turning a webhook into an event (~18 µs).
@lru_cache(maxsize=8192)
def normalize_phone(raw: str, region: str | None) -> PhoneNumber:
    """E.164 form of `raw`; national forms need `region` (ISO 3166 alpha-2, e.g. "DE")."""
    if not _PLUS_PATH or not _PLUS_DIGITS.fullmatch(raw):
        return _normalize_phone(raw, region)
    # "+" and digits (a PBX's form), the country code split off once: the number as its own
    # E.164 form, else phonenumbers' steps for it (a national prefix to strip, a leading
    # zero), else its free-text parse; `_normalize_phone`'s answer every way.
    split = _split_code(raw)
    if split is None:
        return _read(raw, raw, _region(region), None)
    country_code, national = split
    known = _own_e164(raw, region, country_code, national)
    if known is not None:
        return known
    parse_region = _region(region)
    return _read(raw, raw, parse_region, _plus_number(country_code, national, parse_region))


def _normalize_phone(raw: str, region: str | None) -> PhoneNumber:
    """`normalize_phone` by the whole path: what any number, "+" and digits too, reads as."""
    text = raw.strip()
    if text.casefold() in _WITHHELD:  # `is_withheld`
        return PhoneNumber(raw, None)
    if text[:4].casefold() == "tel:" and ";phone-context=" not in text.casefold():
        text = text[4:]
    parse_region = _region(region)
    return _read(raw, text, parse_region, _parse_plus(text, parse_region))


def _read(
    raw: str, text: str, region: str | None, number: phonenumbers.PhoneNumber | None
) -> PhoneNumber:
    """`raw` in the E.164 form of `number`, phonenumbers' steps' reading of `text` (None:
    its free-text parse reads `text` in `region`), when that is a number to call back."""
    if number is None:
        try:
            number = phonenumbers.parse(text, region)
        except NumberParseException:
            return PhoneNumber(raw, None)
    # IS_POSSIBLE_LOCAL_ONLY ("12" in DE) is a dialling fragment, not someone to call back.
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return PhoneNumber(raw, None)
    # Possible is only a length check: "0000000" passes it and would be +49000000 for everyone.
    if not is_valid_number(number):
        return PhoneNumber(raw, None)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return PhoneNumber(raw, e164, number.extension or None)


# A country's national prefix pattern (None: it has none), by (country code, parse region).
_PREFIXES: dict[tuple[int, str | None], re.Pattern[str] | None] = {}
_PREFIXES_KEPT = 4096
# Whether a number of the country code and national length is possible (a length check).
_POSSIBLE: dict[tuple[int, int], bool] = {}


def _own_e164(raw: str, region: str | None, country_code: int, national: str) -> PhoneNumber | None:
    """`_normalize_phone(raw, region)` for "+" and digits split into `country_code` and
    `national` where `_plus_number` would take them as they are (no national prefix to strip,
    no leading zero): such a number, when possible and valid, is its own E.164 form; whether
    it is possible depends on its country code and length alone, looked up once. None: the
    rest of the path answers (a randomized test holds the two equal)."""
    if national[:1] in ("0", "") or not _MIN_LENGTH_FOR_NSN <= len(national) <= _MAX_LENGTH_FOR_NSN:
        return None
    key = (country_code, region)
    try:
        prefix = _PREFIXES[key]
    except KeyError:
        prefix = _national_prefix(country_code, _region(region))
        if len(_PREFIXES) < _PREFIXES_KEPT:  # regions as callers spell them: keep a bound
            _PREFIXES[key] = prefix
    if prefix is not None and prefix.match(national):
        return None
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
    shape = (country_code, len(national))
    possible = _POSSIBLE.get(shape)
    if possible is None:
        reason = phonenumbers.is_possible_number_with_reason(number)
        possible = _POSSIBLE[shape] = reason == ValidationResult.IS_POSSIBLE
    if not possible or not is_valid_number(number):
        return PhoneNumber(raw, None)
    return PhoneNumber(raw, raw, None)


def _national_prefix(country_code: int, region: str | None) -> re.Pattern[str] | None:
    """The national prefix pattern `_plus_number` strips for `country_code` read in `region`
    (the metadata it picks); a pattern that matches everything when it has no metadata."""
    metadata = _plus_metadata(country_code, region)
    if metadata is None:
        return re.compile("")
    pattern = metadata.national_prefix_for_parsing
    return re.compile(pattern) if pattern else None


def find_phones(text: str, region: str | None) -> tuple[str, ...]:
    """E.164 numbers found in free text (signatures, message bodies), first occurrence order."""
    found: dict[str, None] = {}
    for match in phonenumbers.PhoneNumberMatcher(text, _region(region)):
        found.setdefault(phonenumbers.format_number(match.number, PhoneNumberFormat.E164))
    return tuple(found)


def region_of_number(raw: str, fallback: str | None) -> str | None:
    """The country of a number (`raw` read with `fallback` when national), e.g. the region a
    phone line's callers dial from; `fallback` when the number names none (unparseable,
    non-geographic +800, an invalid +1 number shared by several countries)."""
    try:
        number = phonenumbers.parse(raw.strip(), _region(fallback))
    except NumberParseException:
        return _region(fallback)
    region = phonenumbers.region_code_for_number(number)
    if region is None or region == phonenumbers.UNKNOWN_REGION or not region.isalpha():
        return _region(fallback)
    return region


def is_region(region: str) -> bool:
    """Whether `region` is a country phonenumbers can read national numbers of ("DE", "at")."""
    return region.strip().upper() in phonenumbers.SUPPORTED_REGIONS


def _idna_domain(domain: str) -> str | None:
    if not domain.isascii():
        try:
            # IDNA 2008 with UTS 46 mapping, as browsers and mail servers do: "straße.de" is
            # xn--strae-oqa.de, not strasse.de (what the stdlib's IDNA 2003 codec gives).
            return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError:
            pass  # symbols IDNA 2008 refuses: IDNA 2003 still gives the mail server's form
    # The stdlib codec checks label lengths; an ASCII domain (xn-- labels too) stays as it is.
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def display_email(address: str) -> str:
    """The form a rep reads: a punycode (xn--) domain in Unicode; anything else as it is."""
    local, at, domain = address.rpartition("@")
    if not at or "xn--" not in domain.lower():
        return address
    try:
        return f"{local}@{idna.decode(domain)}"
    except (idna.IDNAError, UnicodeError):
        pass
    try:
        return f"{local}@{domain.encode('ascii').decode('idna')}"
    except UnicodeError:
        return address


def _address_part(text: str) -> str:
    """The bare address of `text`, which may be a display-name or comment form."""
    if _BARE_ADDR.fullmatch(text):
        return text
    _name, addr = parseaddr(text)
    if "@" in addr and addr in text:
        return addr
    # parseaddr gives up on unquoted commas ("Meier, Anna <a@b.de>"); the <…> part still counts.
    angle = _ANGLE_ADDR.search(text)
    return angle.group(1).strip() if angle else text


def normalize_email(raw: str) -> str | None:
    """Lower-cased address with an IDNA domain, or None when `raw` is not one address."""
    text = raw.strip()
    if text[:7].casefold() == "mailto:":
        text = text[7:].split("?", 1)[0]
    addr = _address_part(text).strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or "@" in local:
        return None
    if _WHITESPACE.search(addr) or any(c in addr for c in '<>",;()[]\\'):
        return None
    labels = domain.rstrip(".").split(".")
    if len(labels) < 2 or not all(labels):
        return None
    ascii_domain = _idna_domain(".".join(labels).lower())
    if ascii_domain is None:
        return None
    # lower(), not casefold(): casefold turns "ß" into "ss", which is another mailbox.
    return f"{local.lower()}@{ascii_domain}"


def normalize_name(raw: str | None) -> str:
    """Comparable form of a person / company name, for display and suggestions only."""
    if not raw:
        return ""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", raw).casefold()).strip()
