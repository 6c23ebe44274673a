"""Pure parts: button payloads, card rendering (escaping, limits) and typed call-back times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import callbacks as cb
from bot.lists import (
    Paging,
    leads_list,
)
from bot.views import (
    TEXT_LIMIT,
    CardContext,
    Viewer,
    clip,
    lead_card,
    visible_length,
)
from bot.when import parse_when, preset
from crm.config import DEFAULT_STATUSES
from crm.dto import ActivityView, CommView, LeadView
from tests.bot.conftest import entity_text
from tests.fakes.telegram_api import ApiError, parse_html

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2025, 3, 14, 10, 0, tzinfo=UTC)  # 11:00 in Berlin


def lead(**fields: object) -> LeadView:
    base: dict[str, object] = {
        "id": 42,
        "title": "Anfrage",
        "status": "NEW",
        "status_name": "New",
        "status_semantic": "process",
        "source": "EMAIL",
        "is_return_customer": False,
        "name": "Anna",
        "company_title": None,
        "contact_id": None,
        "company_id": None,
        "responsible_id": 1,
        "responsible_name": "Rita",
        "comms": [CommView("phone", "+49 30 1234567", "+49301234567")],
        "comments": None,
        "junk_reason": None,
        "utm": None,
        "taken_at": None,
        "created_at": NOW,
        "modified_at": NOW,
    }
    base.update(fields)
    return LeadView(**base)  # type: ignore[arg-type]


def message(body: str, subject: str = "Hello") -> ActivityView:
    return ActivityView(
        id=7,
        kind="email",
        direction="incoming",
        subject=subject,
        body=body,
        due_at=None,
        done=True,
        done_at=NOW,
        result=None,
        responsible_id=1,
        author_id=None,
        channel="email",
        counterparty="a@b.de",
        attempts=1,
        last_attempt_at=None,
        meta={},
        bindings=[("lead", 42)],
        created_at=NOW,
    )


# --- button payloads ---------------------------------------------------------------------------


def test_payload_round_trip_and_limits() -> None:
    data = cb.encode(cb.CALLBACK, cb.ref("lead", 123456789), "t9")
    assert data == "1:cb:l123456789:t9"
    button = cb.decode(data)
    assert (button.action, button.record, button.arg) == ("cb", ("lead", 123456789), "t9")
    assert cb.decode("1:pl:10:repeat call").arg == "repeat call"
    with pytest.raises(ValueError, match="over 64 bytes"):
        cb.encode(cb.STATUS, "l1", "X" * 60)
    with pytest.raises(ValueError, match="unknown button action"):
        cb.encode("zz", "l1")


@pytest.mark.parametrize("data", [None, "", "take:5", "2:tk:l1", "1:zz:l1", "1:tk"])
def test_unknown_payloads_are_stale(data: str | None) -> None:
    with pytest.raises(cb.StaleButton):
        cb.decode(data)


@pytest.mark.parametrize("ref", ["x1", "l", "lx", "a-1"])
def test_bad_record_refs_are_stale(ref: str) -> None:
    with pytest.raises(cb.StaleButton):
        _ = cb.Button(cb.TAKE, ref).record


@given(st.sampled_from(sorted(cb.ACTIONS)), st.integers(0, 10**12), st.text(max_size=20))
def test_every_encoded_payload_fits_and_decodes(action: str, ident: int, arg: str) -> None:
    try:
        data = cb.encode(action, cb.ref("deal", ident), arg)
    except ValueError:
        return  # refusing is fine; sending an over-long payload is not
    assert len(data.encode()) <= 64
    assert cb.decode(data) == cb.Button(action, f"d{ident}", arg)


# --- cards ---------------------------------------------------------------------------------------

user_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=3000,
)


@settings(max_examples=60, deadline=None)
@given(name=user_text, company=user_text, title=user_text, body=user_text, reason=user_text)
def test_any_user_text_renders_literally_within_limits(
    name: str, company: str, title: str, body: str, reason: str
) -> None:
    view = lead(name=name or None, company_title=company or None, title=title or "x")
    ctx = CardContext(headline="🆕 New lead", reason=reason or None, message=message(body))
    rendered = lead_card(view, ctx, Viewer(1, "rep"), DEFAULT_STATUSES, BERLIN, NOW)
    try:
        text, _ = parse_html(rendered.text)  # Telegram's parser, as the fake implements it
    except ApiError as err:  # pragma: no cover - the assertion explains
        raise AssertionError(f"Telegram would reject the card: {err.description}") from None
    assert visible_length(rendered.text) <= TEXT_LIMIT
    assert len(text.encode("utf-16-le")) // 2 <= TEXT_LIMIT
    shown_name = clip(name or title or "x", 120)
    if shown_name.strip():
        assert shown_name in text


def test_card_shows_the_essentials() -> None:
    view = lead(company_title="Müller & Söhne", comms=[
        CommView("phone", "+49 30 1234567", "+49301234567"),
        CommView("email", "Anna@Example.com", "anna@example.com"),
    ])  # fmt: skip
    ctx = CardContext(
        headline="🆕 New lead",
        reason="no match → new lead",
        message=message("line 1\nline 2\n" + "more\n" * 20),
    )
    rendered = lead_card(view, ctx, Viewer(1, "rep"), DEFAULT_STATUSES, BERLIN, NOW)
    text, entities = parse_html(rendered.text)
    assert text.split("\n")[:5] == [
        "🆕 New lead",
        "👤 Anna · Müller & Söhne",
        "📝 Anfrage",
        "📞 +49 30 1234567",
        "✉️ anna@example.com",
    ]
    assert "Lead #42 · New · channel email · source EMAIL" in text
    assert "Responsible: Rita" in text and "Why: no match → new lead" in text
    assert "line 1\nline 2\nmore" in text and text.rstrip().endswith("…")
    phone = next(e for e in entities if e.get("url") == "tel:+49301234567")
    assert entity_text(text, phone) == "+49 30 1234567"
    labels = [label for row in rendered.rows for label, _ in row]
    assert labels == ["✋ Take", "⏰ Call back", "📊 Status", "🔄 Convert", "🕘 History", "🗑 Junk"]
    boss = lead_card(view, ctx, Viewer(9, "supervisor"), DEFAULT_STATUSES, BERLIN, NOW)
    assert "👥 Reassign" in [label for row in boss.rows for label, _ in row]
    assert "✋ Take" not in [label for row in boss.rows for label, _ in row]  # Rita's lead


def test_clip_cuts_on_words_and_lines() -> None:
    assert clip("word " * 10, 23) == "word word word word…"
    assert clip("x" * 30, 10) == "x" * 9 + "…"  # no space near the end: cut inside the word
    assert clip("a\nb\nc\nd", 100, max_lines=2) == "a\nb…"
    assert clip("  short  ", 100) == "short"


def test_list_pages_carry_the_filter() -> None:
    leads = [lead(id=i, name=f"P{i}") for i in range(10, 0, -1)]
    rendered = leads_list(leads, Paging(25, 10, 10, "repeat"))
    pager = rendered.rows[-1]
    assert [label for label, _ in pager] == ["◀", "▶"]
    assert cb.decode(pager[1][1]) == cb.Button(cb.LEADS_PAGE, "20", "repeat")


# --- typed times -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected_local"),
    [
        ("16:30", "2025-03-14 16:30"),
        ("9:15", "2025-03-15 09:15"),  # already past today: tomorrow
        ("tomorrow 10:00", "2025-03-15 10:00"),
        ("Tomorrow", "2025-03-15 09:00"),
        ("24.12. 9:00", "2025-12-24 09:00"),
        ("1.3.", "2026-03-01 09:00"),  # already past this year
        ("2025-06-01 14:00", "2025-06-01 14:00"),
        ("in 2h", "2025-03-14 13:00"),
        ("45 min", "2025-03-14 11:45"),
        ("in 1h 30m", "2025-03-14 12:30"),
    ],
)
def test_typed_times(typed: str, expected_local: str) -> None:
    at = parse_when(typed, NOW, BERLIN)
    assert at.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M") == expected_local


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("whenever", "I did not understand"),
        ("25:00", "I did not understand"),
        ("31.02. 10:00", "I did not understand"),
        ("2025-01-01 10:00", "has passed already"),
        ("2027-01-01", "more than a year away"),
        ("in 0 min", "I did not understand"),
    ],
)
def test_bad_typed_times_say_why(typed: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_when(typed, NOW, BERLIN)


def test_presets() -> None:
    assert preset("15", NOW, BERLIN) == NOW + timedelta(minutes=15)
    tomorrow = preset("t9", NOW, BERLIN).astimezone(BERLIN)
    assert (tomorrow.day, tomorrow.hour, tomorrow.minute) == (15, 9, 0)
    with pytest.raises(ValueError):
        preset("99999", NOW, BERLIN)
