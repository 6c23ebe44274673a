"""The event the matcher gets from an accepted mail."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from channels.event import Attachment, Channel, InboundEvent, RegisterMode
from channels.mail import MailAddress, MailPolicy, Verdict, VerdictKind, classify, to_event

from .samples import parsed

NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
POLICY = MailPolicy(
    own_addresses=frozenset({"info@beispiel-shop.de"}),
    robot_senders=frozenset({"wordpress@beispiel-shop.de"}),
)
ACCEPT = Verdict(VerdictKind.ACCEPT)


def test_customer_mail_becomes_an_email_event() -> None:
    mail = parsed("signature_phones.eml")
    event = to_event(mail, "info@beispiel-shop.de", "DE", POLICY, ACCEPT, now=NOW)
    assert event.channel is Channel.EMAIL
    assert event.external_id == "<sig-phones-1@neumann-praxis.de>"
    assert event.occurred_at == mail.date
    assert event.emails == ("k.neumann@neumann-praxis.de",)
    assert event.display_name == "Katrin Neumann"
    assert event.subject == "Rückruf erbeten"
    assert event.text == "Hallo,\n\nbitte rufen Sie mich wegen der Behandlungsliegen zurück."
    assert "Tel.: +49 30 7812345" in event.meta["body"]
    assert event.hint_phones == ("+49 30 7812345", "0171 2345678")
    assert event.phones == ()  # a signature never creates a phone on a record
    assert (event.source, event.line, event.phone_region) == (
        "EMAIL",
        "info@beispiel-shop.de",
        "DE",
    )
    assert event.register_mode is RegisterMode.DEFAULT
    assert InboundEvent.from_json(event.to_json()) == event


def test_threading_facts_travel_in_meta() -> None:
    event = to_event(
        parsed("threaded_reply.eml"), "info@beispiel-shop.de", None, POLICY, ACCEPT, now=NOW
    )
    assert event.meta["message_id"] == "<reply-77@becker-logistik.de>"
    assert event.meta["in_reply_to"] == "<offer-3311@beispiel-shop.de>"
    assert event.meta["references"] == [
        "<9d8c7b6a-alt@becker-logistik.de>",
        "<offer-3311@beispiel-shop.de>",
    ]
    assert event.meta["to"] == ["info@beispiel-shop.de"] and event.meta["cc"] == []


def test_web_form_mail_is_always_a_new_lead_for_the_reply_to_person() -> None:
    mail = parsed("form_robot.eml")
    verdict = classify(mail, POLICY, 0)
    event = to_event(mail, "info@beispiel-shop.de", "DE", POLICY, verdict, now=NOW)
    assert event.emails == ("lukas.richter@example.org",)
    assert event.display_name == "Lukas Richter"
    assert event.register_mode is RegisterMode.ALWAYS_ADD
    assert event.hint_phones == ("0221 4567890",)


def test_form_robot_without_reply_to_takes_the_address_from_the_form() -> None:
    mail = dataclasses.replace(parsed("form_robot.eml"), reply_to=None)
    event = to_event(mail, "info@beispiel-shop.de", "DE", POLICY, ACCEPT, now=NOW)
    assert event.emails == ("lukas.richter@example.org",)
    assert event.display_name is None  # not "WordPress"


def test_rate_limited_mail_may_only_attach() -> None:
    mail = parsed("plain_customer.eml")
    verdict = classify(mail, POLICY, recent_from_sender=25)
    event = to_event(mail, "info@beispiel-shop.de", "DE", POLICY, verdict, now=NOW)
    assert event.register_mode is RegisterMode.ONLY_UPDATE
    assert event.meta["verdict_reason"] == verdict.reason


def test_attachments_are_listed() -> None:
    event = to_event(
        parsed("attachments_rfc2231.eml"), "info@beispiel-shop.de", None, POLICY, ACCEPT, now=NOW
    )
    assert event.attachments[0] == Attachment("Grundriss Halle Süd.pdf", "application/pdf", 52)


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        (None, NOW),
        (NOW + timedelta(days=30), NOW),
        (NOW - timedelta(hours=2), NOW - timedelta(hours=2)),
    ],
)
def test_missing_or_future_dates_use_now(date: datetime | None, expected: datetime) -> None:
    mail = dataclasses.replace(parsed("plain_customer.eml"), date=date)
    event = to_event(mail, "info@beispiel-shop.de", None, POLICY, ACCEPT, now=NOW)
    assert event.occurred_at == expected


def test_an_ignored_mail_carries_why_and_a_naive_now_is_refused() -> None:
    mail = parsed("dsn_bounce.eml")
    verdict = classify(mail, POLICY, 0)
    event = to_event(mail, "x", None, POLICY, verdict, now=NOW)
    assert event.meta["filtered"] == verdict.reason and verdict.reason
    assert "filtered" not in to_event(mail, "x", None, POLICY, ACCEPT, now=NOW).meta
    with pytest.raises(ValueError, match="timezone"):
        to_event(mail, "x", None, POLICY, ACCEPT, now=datetime(2024, 7, 1))


def test_sender_without_name_has_no_display_name() -> None:
    mail = dataclasses.replace(parsed("plain_customer.eml"), sender=MailAddress("a@b.example"))
    assert to_event(mail, "x", None, POLICY, ACCEPT, now=NOW).display_name is None
