"""Phone / email / name normalization: the forms people actually type must meet."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching.normalize import (
    find_phones,
    is_withheld,
    normalize_email,
    normalize_name,
    normalize_phone,
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
