"""What an event says about its sender, normalized."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from matching.event import Handle
from matching.identities import event_identities
from matching.model import CommKind, EventIdentities, Identity, PhoneNumber
from tests.matching.factories import event


def test_phones_use_the_line_region_and_fall_back_to_the_default() -> None:
    on_ru_line = event(phones=("8 (495) 123-45-67",), phone_region="RU")
    assert event_identities(on_ru_line, "DE").phones[0].e164 == "+74951234567"
    default = event(phones=("030 1234567",))
    assert event_identities(default, "DE").phones[0].e164 == "+49301234567"


def test_same_number_in_two_spellings_counts_once_and_order_is_kept() -> None:
    ev = event(phones=("0171 1234567", "030 1234567", "+49 30 1234567"))
    assert [p.e164 for p in event_identities(ev, "DE").phones] == [
        "+491711234567",
        "+49301234567",
    ]


def test_withheld_numbers_are_dropped_but_unparseable_ones_are_kept_raw() -> None:
    ev = event(phones=("anonymous", "", "12"))
    assert event_identities(ev, "DE").phones == (PhoneNumber("12", None),)


def test_emails_are_normalized_and_bad_ones_dropped() -> None:
    ev = event(emails=("Anna@Example.com", "not an address", '"A" <anna@example.com>'))
    assert event_identities(ev, "DE").emails == ("anna@example.com",)


def test_handles_become_identities() -> None:
    ev = event(
        handles=(
            Handle("telegram", "42", "anna"),
            Handle("WhatsApp", "4915112345678"),
            Handle("viber", "abc"),
            Handle("telegram", "42"),
            Handle("telegram", " "),
        )
    )
    assert event_identities(ev, "DE").handles == (
        Identity(CommKind.TELEGRAM, "42"),
        Identity(CommKind.WHATSAPP, "4915112345678"),
        Identity(CommKind.OTHER, "viber:abc"),
    )


def test_hint_phones_match_but_are_not_exception_checked() -> None:
    ev = event(phones=("030 1234567",), hint_phones=("+49 30 1234567", "0171 1234567", "12"))
    ids = event_identities(ev, "DE")
    assert [p.e164 for p in ids.hint_phones] == ["+491711234567"]
    assert Identity(CommKind.PHONE, "+491711234567") in ids.matchable()
    assert Identity(CommKind.PHONE, "+491711234567") not in ids.exception_checked()


def test_event_without_contact_data_has_nothing_to_match() -> None:
    assert event_identities(event(phones=("anonymous",)), "DE").matchable() == ()


def test_matchable_is_worked_out_once_and_follows_a_replaced_copy() -> None:
    """Intake asks an event's identities for `matchable()` several times: the answer is kept
    with them, so a copy with other values (`dataclasses.replace`) has its own, and two equal
    sets of identities stay equal."""
    phone = PhoneNumber("030 1234567", "+49301234567")
    ids = EventIdentities(phones=(phone,), emails=("a@b.de",))
    assert ids.matchable() == (
        Identity(CommKind.EMAIL, "a@b.de"),
        Identity(CommKind.PHONE, "+49301234567"),
    )
    assert ids.matchable() is ids.matchable()
    other = dataclasses.replace(ids, emails=())
    assert other.matchable() == (Identity(CommKind.PHONE, "+49301234567"),)
    assert other == EventIdentities(phones=(phone,)) and hash(other) == hash(
        EventIdentities(phones=(phone,))
    )


_PHONES = st.builds(
    PhoneNumber,
    st.sampled_from(["030 1", "x", "+49 30 2"]),
    st.sampled_from([None, "+49301", "+49302", "+49303"]),
)
_HANDLES = st.builds(
    Identity, st.sampled_from([CommKind.TELEGRAM, CommKind.WHATSAPP]), st.sampled_from("123")
)


@given(
    st.lists(_PHONES, max_size=4),
    st.lists(st.sampled_from(["a@b.de", "c@d.de", "+49301"]), max_size=3),
    st.lists(_HANDLES, max_size=3),
    st.lists(_PHONES, max_size=3),
)
def test_matchable_and_exception_checked_as_worked_out_on_each_call(
    phones: list[PhoneNumber], emails: list[str], handles: list[Identity], hints: list[PhoneNumber]
) -> None:
    """Both are kept with the identities: the same as working them out on each call did."""
    ids = EventIdentities(tuple(phones), tuple(emails), tuple(handles), tuple(hints))
    own = {Identity(CommKind.PHONE, p.e164) for p in phones if p.e164}
    own |= {Identity(CommKind.EMAIL, e) for e in emails}
    hinted = {Identity(CommKind.PHONE, p.e164) for p in hints if p.e164}
    assert ids.exception_checked() == tuple(sorted(own))
    assert ids.matchable() == tuple(sorted(own | hinted | set(handles)))
    assert ids.exception_checked() is ids.exception_checked()
