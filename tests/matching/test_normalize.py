"""Phone / email / name normalization: the forms people actually type must meet."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from matching.model import PhoneNumber
from matching.normalize import (
    display_email,
    find_phones,
    is_region,
    is_withheld,
    normalize_email,
    normalize_name,
    normalize_phone,
    region_of_number,
)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+49 30 1234567", "DE", "+49301234567"),
        ("030 1234567", "DE", "+49301234567"),
        ("0049 30 1234567", "DE", "+49301234567"),
        ("+49 (0)30 1234567", "DE", "+49301234567"),
        ("tel:+49-30-1234567", None, "+49301234567"),
        ("TEL:030-1234567", "de", "+49301234567"),
        ("8 (495) 123-45-67", "RU", "+74951234567"),
        ("+7 495 123 45 67", None, "+74951234567"),
        ("(212) 555-0100", "US", "+12125550100"),
        ("011 49 30 1234567", "US", "+49301234567"),
    ],
)
def test_phone_forms_meet_in_e164(raw: str, region: str | None, e164: str) -> None:
    phone = normalize_phone(raw, region)
    assert phone.e164 == e164
    assert phone.raw == raw


def test_extension_is_kept_apart_from_the_number() -> None:
    phone = normalize_phone("+1-212-555-0100 ext. 5", "US")
    assert (phone.e164, phone.extension) == ("+12125550100", "5")


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("12", "DE"),
        ("📞 call me", "DE"),
        ("030 1234567", None),
        ("030 1234567", "XX"),
        ("+999 1234567", None),
        ("sip:alice@example.com", "DE"),
    ],
)
def test_unusable_numbers_are_kept_raw(raw: str, region: str | None) -> None:
    phone = normalize_phone(raw, region)
    assert phone.e164 is None
    assert not phone.valid
    assert phone.raw == raw


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("0000000", "DE"),
        ("000 000 0000", "US"),
        ("+49 000000", None),
        ("1234567", "DE"),  # no area code
        ("01 5134567", "DE"),  # Vienna's local form: no German number
        ("+7 000 000-00-00", None),
        ("+1 555 555 5555", None),  # 555 is no US area code
        ("+44 00 0000 0000", None),
    ],
)
def test_possible_but_unassigned_numbers_never_match(raw: str, region: str | None) -> None:
    """Right length, no such number: kept raw like garbage, or zeros would be one person."""
    phone = normalize_phone(raw, region)
    assert (phone.e164, phone.valid, phone.raw) == (None, False, raw)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(212) 555-0100", "US", "+12125550100"),
        ("(212) 555-0100", "DE", "+492125550100"),  # a Solingen number: why lines need regions
        ("01 5134567", "AT", "+4315134567"),
        ("044 555 12 34", "CH", "+41445551234"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("044 123 45 67", "UA", "+380441234567"),
        ("8 (495) 123-45-67", "RU", "+74951234567"),
    ],
)
def test_a_national_number_is_the_regions(raw: str, region: str, e164: str) -> None:
    assert normalize_phone(raw, region).e164 == e164


@pytest.mark.parametrize(
    ("raw", "region", "e164", "extension"),
    [
        ("+49 30 1234567 ext 12", None, "+49301234567", "12"),
        ("+1 212 555 0100 x12", None, "+12125550100", "12"),
        ("tel:+43-1-5134567;ext=12", None, "+4315134567", "12"),
        ("+7 495 123-45-67 доб. 12", None, "+74951234567", "12"),
        ("020 7946 0958 ext. 7", "GB", "+442079460958", "7"),
    ],
)
def test_extension_spellings(raw: str, region: str | None, e164: str, extension: str) -> None:
    """Kept apart from the match key: the same line, whichever desk the caller sits at."""
    phone = normalize_phone(raw, region)
    assert (phone.e164, phone.extension) == (e164, extension)


@pytest.mark.parametrize(
    ("line", "fallback", "region"),
    [
        ("+12125550000", "DE", "US"),
        ("+1 416 555 0199", "DE", "CA"),
        ("+43 1 5130000", "DE", "AT"),
        ("0043 1 5130000", "DE", "AT"),
        ("+41 44 555 00 00", "DE", "CH"),
        ("089 111222", "DE", "DE"),
        ("reg:7", "AT", "AT"),  # a PBX line id, no number
        ("+800 1234 5678", "DE", "DE"),  # international freephone: no country
        ("", "DE", "DE"),
    ],
)
def test_region_of_a_line_number(line: str, fallback: str, region: str) -> None:
    assert region_of_number(line, fallback) == region


def test_regions_are_iso_codes_phonenumbers_knows() -> None:
    assert is_region("AT") and is_region(" de ") and is_region("gb")
    assert not any(is_region(r) for r in ("", "XX", "EU", "UK", "DEU", "001"))


@pytest.mark.parametrize("raw", ["anonymous", "Unknown", " PRIVATE ", "restricted", "", "  "])
def test_withheld_caller_ids(raw: str) -> None:
    assert is_withheld(raw)
    assert normalize_phone(raw, "DE").e164 is None


def test_a_real_number_is_not_withheld() -> None:
    assert not is_withheld("+49301234567")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Anna@Example.COM", "anna@example.com"),
        ("  anna@example.com\t\n", "anna@example.com"),
        ("mailto:anna@example.com", "anna@example.com"),
        ("MAILTO:Anna@Example.com?subject=Offer", "anna@example.com"),
        ('"Anna Meier" <Anna@Example.COM>', "anna@example.com"),
        ("Anna Meier <anna@example.com>", "anna@example.com"),
        ("Meier, Anna <anna@example.com>", "anna@example.com"),
        ("<anna@example.com>", "anna@example.com"),
        ("anna@example.com (Anna Meier)", "anna@example.com"),
        ("info@müller.de", "info@xn--mller-kva.de"),
        ("info@MÜLLER.de", "info@xn--mller-kva.de"),
        ("straße@example.com", "straße@example.com"),
        # IDNA 2008: ß and ς are letters of their own, not "ss" / "σ" (IDNA 2003 mapped them).
        ("info@straße.de", "info@xn--strae-oqa.de"),
        ("info@xn--strae-oqa.de", "info@xn--strae-oqa.de"),
        ("info@XN--MLLER-KVA.DE", "info@xn--mller-kva.de"),
        ("почта@пример.рф", "почта@xn--e1afmkfd.xn--p1ai"),
        ("anna@bücher.example", "anna@xn--bcher-kva.example"),
        ("ANNA@Ｍüller.de", "anna@xn--mller-kva.de"),  # full-width M: mapped by UTS 46
    ],
)
def test_email_forms(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "anna",
        "anna@",
        "@example.com",
        "anna@localhost",
        "anna meier@example.com",
        "anna@exa mple.com",
        "anna@example..com",
        "a@b@example.com",
        "Anna Meier <>",
        "mailto:",
        f"anna@{'x' * 64}.com",
    ],
)
def test_not_an_email(raw: str) -> None:
    assert normalize_email(raw) is None


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("info@müller.de", "info@müller.de"),
        ("Info@XN--MLLER-KVA.de", "info@müller.de"),
        ("info@straße.de", "info@straße.de"),
        ("почта@пример.рф", "почта@пример.рф"),
        ("anna@example.com", "anna@example.com"),
    ],
)
def test_an_idn_email_is_matched_in_ascii_and_shown_in_unicode(typed: str, shown: str) -> None:
    key = normalize_email(typed)
    assert key is not None and key.split("@")[1].isascii()
    assert display_email(key) == shown


def test_a_broken_punycode_domain_is_shown_as_it_is() -> None:
    assert display_email("anna@xn--zz-zzzzzzzzzz.de") == "anna@xn--zz-zzzzzzzzzz.de"
    assert display_email("not an address") == "not an address"


def test_names_compare_case_and_width_insensitively() -> None:
    assert normalize_name("  ANNA\u00a0  Meier ") == "anna meier"
    assert normalize_name("Ｍüller") == normalize_name("müller")
    assert normalize_name(None) == ""


def test_find_phones_in_german_signature() -> None:
    text = "Tel. 030 / 12 34 56-7 oder mobil 0171-1234567, Fax +49 (0)30 1234567"
    assert find_phones(text, "DE") == ("+49301234567", "+491711234567")


def test_find_phones_in_russian_text() -> None:
    text = "Звоните: 8 (495) 123-45-67, моб. +7 916 123 45 67"
    assert find_phones(text, "RU") == ("+74951234567", "+79161234567")


def test_find_phones_without_region_only_sees_international_numbers() -> None:
    assert find_phones("call +49 30 1234567 or 030 7654321", None) == ("+49301234567",)


PHONE_LIKE = st.text(alphabet="0123456789+()-./ #;=,xet:l8\u00a0\u0660")


@given(st.one_of(st.text(), PHONE_LIKE), st.sampled_from([None, "DE", "RU", "US", "xx", ""]))
def test_normalize_phone_never_raises(raw: str, region: str | None) -> None:
    phone = normalize_phone(raw, region)
    assert phone.e164 is None or phone.e164.startswith("+")


@given(st.text())
def test_normalize_email_never_raises(raw: str) -> None:
    result = normalize_email(raw)
    assert result is None or ("@" in result and result == result.strip())


@given(st.text(), st.sampled_from([None, "DE", "RU"]))
def test_find_phones_never_raises(text: str, region: str | None) -> None:
    assert all(p.startswith("+") for p in find_phones(text, region))


# "+" and digits (a PBX's form) take `_parse_plus`, not `phonenumbers.parse`: it must give
# exactly what phonenumbers gives, for every region a number may be read in.
_REGIONS = [None, "DE", "AT", "US", "GB", "IT", "RU", "AR", "MX", "BR", "CI", "SM", "VA", "KZ"]
# Country codes whose numbers phonenumbers reads with care: a national prefix after the code
# (+49 0…, +1 1…, +7 8…, +44 0…), Italian leading zeros, Argentina's 9 and 0, Mexico's 1,
# codes shared by several regions (+1, +7, +39), non-geographic codes (+800, +882).
_TRICKY = [
    "+49030123456",
    "+4930123456",
    "+11234567890",
    "+12125550100",
    "+78495123456",
    "+74951234567",
    "+4402071234567",
    "+390612345678",
    "+39061234567",
    "+3903123",
    "+5491123456789",
    "+54011234567",
    "+5215512345678",
    "+525512345678",
    "+80012345678",
    "+88213001234",
    "+2250712345678",
    "+37861234567",
    "+379061234567",
    "+123",
    "+1234",
    "+999123456",
    "+123456789012345678",
]


def _reference(raw: str, region: str | None) -> tuple[str | None, str | None]:
    """`normalize_phone` as it read every number before the "+" path: phonenumbers alone."""
    import phonenumbers
    from phonenumbers import PhoneNumberFormat, ValidationResult

    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None, None
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return None, None
    if not phonenumbers.is_valid_number(number):
        return None, None
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return e164, number.extension or None


def _parses_alike(text: str, region: str | None) -> None:
    import phonenumbers

    from matching.normalize import _parse_plus

    fast = _parse_plus(text, region)
    if fast is not None:  # else phonenumbers.parse reads it, as before
        assert fast == phonenumbers.parse(text, region), (text, region)
    phone = normalize_phone.__wrapped__(text, region)
    assert (phone.e164, phone.extension) == _reference(text, region), (text, region)
    _fast_alike(text, region)


@pytest.mark.parametrize("region", _REGIONS)
@pytest.mark.parametrize("text", _TRICKY)
def test_plus_and_digits_read_exactly_as_phonenumbers_reads_them(
    text: str, region: str | None
) -> None:
    _parses_alike(text, region)


@given(
    st.sampled_from(["+", "+1", "+7", "+39", "+49", "+54", "+52", "+44", "+800", "+9"]).flatmap(
        lambda head: st.text("0123456789", max_size=19).map(lambda tail: head + tail)
    ),
    st.sampled_from(_REGIONS),
)
def test_any_plus_and_digits_read_exactly_as_phonenumbers_reads_them(
    text: str, region: str | None
) -> None:
    _parses_alike(text, region)


def test_a_pbx_number_takes_the_plus_path() -> None:
    """The lever itself: the common case does not go through `phonenumbers.parse`."""
    from matching.normalize import _parse_plus

    assert _parse_plus("+4930123456", "DE") is not None
    assert _parse_plus("+12125550100", "DE") is not None
    assert _parse_plus("+49 30 123456", "DE") is None  # spaces: phonenumbers reads it
    assert _parse_plus("+４930123456", "DE") is None  # non-ASCII digits: likewise


def _fast(text: str, region: str | None) -> PhoneNumber | None:
    """`normalize_phone`'s fast answer for "+" and digits: `_own_e164` of the number split as
    `normalize_phone` splits it (None: the rest of the path answers)."""
    from matching.normalize import _own_e164, _split_code

    split = _split_code(text)
    return None if split is None else _own_e164(text, region, *split)


def _fast_alike(text: str, region: str | None) -> None:
    from matching.normalize import _PLUS_DIGITS, _normalize_phone

    if not _PLUS_DIGITS.fullmatch(text):  # `normalize_phone` asks `_own_e164` only then
        return
    whole = _normalize_phone(text, region)
    fast = _fast(text, region)
    if fast is not None:  # else `_normalize_phone` answers
        assert fast == whole, (text, region)
    assert normalize_phone.__wrapped__(text, region) == whole, (text, region)


_CODES = sorted(COUNTRY_CODE_TO_REGION_CODE)
_ALL_REGIONS = [None, "de", " at ", "001", *sorted(phonenumbers.SUPPORTED_REGIONS)]


@settings(max_examples=3000)
@given(
    st.sampled_from(_CODES).flatmap(
        lambda code: st.text("0123456789", max_size=18).map(lambda tail: f"+{code}{tail}")
    ),
    st.sampled_from(_ALL_REGIONS),
)
def test_known_plus_numbers_read_as_the_whole_path_reads_them(
    text: str, region: str | None
) -> None:
    """`_own_e164` (possible by country code and length, looked up once; the number its own
    E.164 form) against `_normalize_phone`, under every country code and region."""
    _fast_alike(text, region)


def test_a_pbx_number_is_its_own_e164() -> None:
    """The lever: a valid "+" number without a national prefix is answered by `_own_e164`;
    a prefixed, short or spaced one is not."""
    assert _fast("+4930123456", "DE") == normalize_phone("+4930123456", "DE")
    assert _fast("+12125550100", "DE") is not None
    assert _fast("+49030123456", "DE") is None  # a national prefix after the code
    assert _fast("+4900000000", "DE") is None  # a leading zero
    assert _fast("+4930", "DE") == normalize_phone.__wrapped__("+4930", "DE")  # too short
    assert normalize_phone("+49 30 123456", "DE").e164 == "+4930123456"


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("+4930123456", "DE", "+4930123456"),  # its own E.164 form
        ("+49030123456", "DE", "+4930123456"),  # a national prefix to strip
        ("+390612345678", None, "+390612345678"),  # an Italian leading zero
        ("+3511", "DE", None),  # too short for phonenumbers' steps: its free-text parse
        ("+999123456", "DE", None),  # no country code
    ],
)
def test_each_way_of_the_plus_path(text: str, region: str | None, e164: str | None) -> None:
    """`normalize_phone` splits a "+" and digits number's country code once and answers by
    one of these ways; each as the whole path and phonenumbers alone answer."""
    from matching.normalize import _normalize_phone

    phone = normalize_phone.__wrapped__(text, region)
    assert phone.e164 == e164
    assert phone == _normalize_phone(text, region)
    assert (phone.e164, phone.extension) == _reference(text, region)


@settings(max_examples=2000)
@given(
    st.one_of(st.sampled_from(_CODES), st.integers(1, 999)).flatmap(
        lambda code: st.text("0123456789", max_size=18).map(lambda tail: f"+{code}{tail}")
    ),
    st.sampled_from(_ALL_REGIONS),
)
def test_plus_numbers_read_by_normalize_phone_as_by_the_whole_path(
    text: str, region: str | None
) -> None:
    """`normalize_phone`'s "+" and digits path (its own E.164 form, else phonenumbers' steps
    for it, else its free-text parse) against `_normalize_phone`, under every country code
    (and codes that are none) and region."""
    from matching.normalize import _normalize_phone

    assert normalize_phone.__wrapped__(text, region) == _normalize_phone(text, region)


# A bare address skips parseaddr: it must be read as parseaddr reads it.
@given(st.text(alphabet="aZ09_%+-.@ <>\"(),;:[]\\'!#", max_size=24))
def test_bare_address_path_reads_as_parseaddr(text: str) -> None:
    from email.utils import parseaddr

    from matching.normalize import _BARE_ADDR

    if _BARE_ADDR.fullmatch(text):
        assert parseaddr(text)[1] == text


@pytest.mark.parametrize(
    "raw", ["anna.meier+crm@Example.DE", "a_b%c-d@x-y.co.uk", "x@localhost", "a.b@c"]
)
def test_bare_address_normalized_as_before(raw: str) -> None:
    from email.utils import parseaddr

    assert parseaddr(raw)[1] == raw
    local, _, domain = raw.rpartition("@")
    labels = domain.split(".")
    expected = f"{local.lower()}@{domain.lower()}" if len(labels) > 1 else None
    assert normalize_email(raw) == expected
