"""`phonenumbers.is_valid_number` in two pattern matches.

phonenumbers finds a valid number's type by trying the types one by one (premium rate, toll
free, …, fixed line, mobile), a length check and a pattern match each; valid means the
general pattern matches and any type's does. Here the types a number of that length can be
are joined into one alternation, compiled once per country and length, so a number costs the
general pattern's match and the alternation's. Same answers (property test against
phonenumbers over every region); a pattern that cannot be joined leaves that country to
phonenumbers.
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

# The types `_number_type_helper` tries, in any order: a number is valid when one matches.
# Mobile only where its pattern differs from fixed line's (phonenumbers does not try it
# otherwise, even where mobile's lengths differ).
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)
_NON_GEO = "001"

# (metadata id, country code, length) → (general pattern, the types' alternation), None in
# either where no number of that length can match it; None: left to phonenumbers. Bounded:
# a country's national numbers have at most 17 digits.
_Patterns = tuple[re.Pattern[str] | None, re.Pattern[str] | None]
_CACHE: dict[tuple[str, int, int], _Patterns | None] = {}


def _source(desc: Any, length: int) -> str | None:
    """The desc's pattern where a number of `length` digits may match it (phonenumbers'
    `_is_number_matching_desc`: listed lengths first, an empty pattern matches nothing)."""
    if desc is None or (desc.possible_length and length not in desc.possible_length):
        return None
    return desc.national_number_pattern or None


def _compiled(metadata: Any, length: int) -> _Patterns | None:
    """The patterns for numbers of `length` digits; None when they cannot be joined."""
    general = _source(metadata.general_desc, length)
    names = _TYPES if metadata.same_mobile_and_fixed_line_pattern else (*_TYPES, "mobile")
    parts = [p for name in names if (p := _source(getattr(metadata, name), length)) is not None]
    try:
        return (
            re.compile(general) if general is not None else None,
            re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None,
        )
    except re.error:  # pragma: no cover - inline flags or the like in some future metadata
        return None


def is_valid_number(number: phonenumbers.PhoneNumber) -> bool:
    """`phonenumbers.is_valid_number(number)`."""
    country_code = number.country_code
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code) if country_code is not None else None
    if country_code is None or not regions:
        return False
    # Several countries share a code (+1, +7, +44…): phonenumbers picks the one by its rules.
    region = regions[0] if len(regions) == 1 else phonenumbers.region_code_for_number(number)
    if region is None:
        return False
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region.upper())
    if metadata is None or (
        region != _NON_GEO and country_code != phonenumbers.country_code_for_valid_region(region)
    ):
        return False
    nsn = phonenumbers.national_significant_number(number)
    key = (metadata.id, country_code, len(nsn))
    try:
        patterns = _CACHE[key]
    except KeyError:
        patterns = _CACHE[key] = _compiled(metadata, len(nsn))
    if patterns is None:
        return phonenumbers.is_valid_number(number)
    general, types = patterns
    return (
        general is not None
        and types is not None
        and general.fullmatch(nsn) is not None
        and types.fullmatch(nsn) is not None
    )
