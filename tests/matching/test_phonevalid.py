"""`matching.phonevalid.is_valid_number` answers as `phonenumbers.is_valid_number` does."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from matching.phonevalid import is_valid_number

_CODES = sorted(COUNTRY_CODE_TO_REGION_CODE)
_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
_TYPES = [t for t in vars(PhoneNumberType).values() if isinstance(t, int)]


def _alike(number: phonenumbers.PhoneNumber) -> None:
    assert is_valid_number(number) == phonenumbers.is_valid_number(number), number


def _examples() -> list[phonenumbers.PhoneNumber]:
    """phonenumbers' example number of every type of every region and non-geographic code."""
    out = []
    for region in _REGIONS:
        for kind in _TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                out.append(number)
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            out.append(number)
    return out


def test_every_example_number_of_every_region_and_type() -> None:
    """Valid ones of every type, and each with its last digit dropped, changed or doubled
    (mostly invalid: another length, another range)."""
    examples = _examples()
    assert len(examples) > 1000
    for number in examples:
        _alike(number)
        digits = str(number.national_number)
        for variant in {digits[:-1], digits[:-1] + str((int(digits[-1]) + 5) % 10), digits * 2}:
            if variant:
                _alike(phonenumbers.PhoneNumber(number.country_code, int(variant)))


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("+49 30 901820", True),  # Berlin
        ("+49 1512 3456789", True),  # German mobile
        ("+49 800 1234567", True),  # German toll free
        ("+49 199 1234567", False),  # an unassigned range
        ("+49 110", False),  # the police: a short code, no subscriber number
        ("+44 20 7946 0958", True),  # London
        ("+44 7400 123456", True),  # UK mobile
        ("+44 7700 900123", False),  # the range kept for drama
        ("+1 202 456 1111", True),  # Washington
        ("+1 212 155 0100", False),  # no exchange starts with 1
        ("+1 416 555 0199", True),  # Toronto (CA shares +1)
        ("+1 876 927 1234", True),  # Jamaica (+1 876)
        ("+33 1 42 68 53 00", True),  # Paris
        ("+33 9 0000", False),
        ("+39 06 6982", True),  # Vatican switchboard, an Italian leading zero
        ("+39 06 69812345", True),  # Rome
        ("+7 495 123 45 67", True),  # Moscow
        ("+7 727 258 4567", True),  # Almaty (KZ shares +7)
        ("+7 727 123 4567", False),
        ("+41 44 668 18 00", True),  # Zürich
        ("+43 1 5880 0", True),  # Vienna
        ("+61 2 9374 4000", True),  # Sydney
        ("+81 3 3224 5000", True),  # Tokyo
        ("+91 11 2301 2345", True),  # Delhi
        ("+55 11 3333 4444", True),  # São Paulo
        ("+86 10 6552 9988", True),  # Beijing
        ("+800 1234 5678", True),  # international freephone
    ],
)
def test_real_numbers_of_several_countries(text: str, valid: bool) -> None:
    number = phonenumbers.parse(text, None)
    assert phonenumbers.is_valid_number(number) is valid
    assert is_valid_number(number) is valid


@settings(max_examples=2000)
@given(
    st.sampled_from(_CODES),
    st.text("0123456789", min_size=1, max_size=17),
    st.booleans(),
    st.integers(1, 3),
)
def test_random_national_digits_under_every_country_code(
    code: int, digits: str, leading_zero: bool, zeros: int
) -> None:
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(digits))
    if leading_zero:
        number.italian_leading_zero = True
        number.number_of_leading_zeros = zeros
    _alike(number)


@settings(max_examples=1000)
@given(st.text("0123456789", min_size=2, max_size=17), st.sampled_from(_REGIONS))
def test_random_digit_strings_read_in_any_region(digits: str, region: str) -> None:
    """National forms as phonenumbers reads them (prefixes stripped, leading zeros kept)."""
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return
    _alike(number)


def test_an_unknown_country_code_is_invalid() -> None:
    assert not is_valid_number(phonenumbers.PhoneNumber(country_code=999, national_number=1234))
    assert not is_valid_number(phonenumbers.PhoneNumber(country_code=0, national_number=1234))
