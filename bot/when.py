"""Call-back times: the preset buttons and times a rep types, in the CRM's time zone."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo

MORNING = time(9, 0)
HINT = "e.g. 16:30, tomorrow 10:00, 24.12. 9:00, 2025-06-01 14:00, in 2h or in 45 min"

_IN = re.compile(r"(?:in\s+)?(?:(\d{1,3})\s*h(?:ours?)?)?\s*(?:(\d{1,4})\s*m(?:in(?:utes?)?)?)?")
_CLOCK = r"(\d{1,2})[:.](\d{2})"


def preset(choice: str, now: datetime, tz: tzinfo) -> datetime:
    """The time behind a call-back button: minutes from now, or "t9" (tomorrow 9:00)."""
    if choice == "t9":
        return _at(now.astimezone(tz).date() + timedelta(days=1), MORNING, tz)
    if choice.isdigit() and 0 < int(choice) <= 24 * 60:
        return now + timedelta(minutes=int(choice))
    raise ValueError(f"unknown call-back choice {choice!r}")


def parse_when(text: str, now: datetime, tz: tzinfo) -> datetime:
    """A typed time; ValueError with a sentence for the rep when it is not understood."""
    raw = " ".join(text.strip().lower().split())
    today = now.astimezone(tz).date()
    result = _relative(raw, now) or _absolute(raw, today, tz)
    if result is None:
        raise ValueError(f"I did not understand “{text.strip()[:40]}”. Try {HINT}.")
    if result <= now:
        if re.fullmatch(_CLOCK, raw):  # a bare time already past today means tomorrow
            result += timedelta(days=1)
        else:
            raise ValueError("That time has passed already; give a time in the future.")
    if result - now > timedelta(days=366):
        raise ValueError("That is more than a year away; give a nearer time.")
    return result


def _relative(raw: str, now: datetime) -> datetime | None:
    m = _IN.fullmatch(raw)
    if not m or not (m.group(1) or m.group(2)):
        return None
    minutes = int(m.group(1) or 0) * 60 + int(m.group(2) or 0)
    return now + timedelta(minutes=minutes) if minutes > 0 else None


def _absolute(raw: str, today: date, tz: tzinfo) -> datetime | None:
    m = re.fullmatch(rf"(?:(today|tomorrow)\s*)?(?:at\s+)?{_CLOCK}", raw)
    if m:
        day = today + timedelta(days=1 if m.group(1) == "tomorrow" else 0)
        return _clock_at(day, m.group(2), m.group(3), tz)
    if raw == "tomorrow":
        return _at(today + timedelta(days=1), MORNING, tz)
    m = re.fullmatch(rf"(\d{{4}})-(\d{{2}})-(\d{{2}})(?:[ t]{_CLOCK})?", raw)
    if m:
        found = _date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return _clock_at(found, m.group(4) or "9", m.group(5) or "00", tz) if found else None
    m = re.fullmatch(rf"(\d{{1,2}})\.(\d{{1,2}})\.(\d{{4}})?(?:\s+{_CLOCK})?", raw)
    if m:
        year = int(m.group(3)) if m.group(3) else today.year
        found = _date(year, int(m.group(2)), int(m.group(1)))
        if found is not None and found < today and not m.group(3):
            found = _date(year + 1, found.month, found.day)
        return _clock_at(found, m.group(4) or "9", m.group(5) or "00", tz) if found else None
    return None


def _date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _clock_at(day: date | None, hour: str, minute: str, tz: tzinfo) -> datetime | None:
    h, m = int(hour), int(minute)
    if day is None or h > 23 or m > 59:
        return None
    return _at(day, time(h, m), tz)


def _at(day: date, at: time, tz: tzinfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz)
