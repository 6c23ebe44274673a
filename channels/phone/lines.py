"""The region a phone line's callers are read in: numbers dialled nationally are the line's
country's, so `(212) 555-0100` on a New York line is +12125550100 even in a German CRM, and
`01 5134567` on a Vienna line is +4315134567.

A line is named as the phone system names it: Twilio's `To` (or `From` on an outgoing call),
Bitrix24's `LINE_NUMBER`, the generic webhook's `line` (else our side's number). Its region is
the one configured for it (`phone.line_regions`), else the country of the line's own number,
else the phone channel's region.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from channels.phone.calls import CallDirection, CallReport
from matching.normalize import normalize_phone, region_of_number

_PUNCTUATION = re.compile(r"[\s\-./()]")


def _key(line: str) -> str:
    return _PUNCTUATION.sub("", line.strip())


class LineRegions:
    """Configured regions by line, and the default for lines named nowhere."""

    def __init__(self, default: str, configured: Mapping[str, str]) -> None:
        self.default = default.upper()
        self._by_key = {_key(line): region.upper() for line, region in configured.items()}
        # A line configured as "+43 1 5130000" is also found when a PBX sends "0043 1 …".
        for line, region in configured.items():
            e164 = normalize_phone(line, self.default).e164
            if e164 is not None:
                self._by_key.setdefault(e164, region.upper())
        self.region = lru_cache(maxsize=1024)(self._region)

    def _region(self, line: str | None) -> str:
        if line is None or not line.strip():
            return self.default
        key = _key(line)
        if key in self._by_key:
            return self._by_key[key]
        e164 = normalize_phone(line, self.default).e164
        if e164 is not None and e164 in self._by_key:
            return self._by_key[e164]
        return region_of_number(line, self.default) or self.default


def line_of(report: CallReport) -> str | None:
    """The line a call went through: the one named, else our side's number."""
    if report.line:
        return report.line
    return report.to_number if report.direction is _INCOMING else report.from_number


_INCOMING = CallDirection.INCOMING  # bound once: an enum member is looked up slowly on 3.11
