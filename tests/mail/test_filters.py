"""Robots, loops and our own mail never become leads; the reason is there to log."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from channels.mail import (
    MailAddress,
    MailPolicy,
    Verdict,
    VerdictKind,
    classify,
    customer,
    parse_message,
)

from . import handmade
from .samples import parsed

POLICY = MailPolicy(
    own_addresses=frozenset({"info@beispiel-shop.de", "Vertrieb@Beispiel-Shop.de"}),
    rep_addresses=frozenset({"julia.lange@beispiel-shop.de"}),
    robot_senders=frozenset({"wordpress@beispiel-shop.de"}),
    rate_limit_per_hour=20,
)


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ("dsn_bounce.eml", "bounce: multipart/report"),
        ("mailer_daemon_text.eml", "bounce: sent by mailer-daemon@mail.provider-example.net"),
        ("auto_submitted.eml", "auto-reply: Auto-Submitted: auto-replied (vacation)"),
        (
            "exchange_ooo.eml",
            "auto-reply: out-of-office subject 'Abwesenheitsnotiz: Ihr Angebot 2024-0901'",
        ),
        ("precedence_bulk.eml", "auto-reply: Precedence: bulk"),
        (
            "mailing_list.eml",
            "mailing list: List-Id Handwerk Forum <handwerk-forum.lists.example.org>",
        ),
    ],
)
def test_robot_mail_is_ignored_with_its_reason(sample: str, reason: str) -> None:
    verdict = classify(parsed(sample), POLICY, recent_from_sender=0)
    assert (verdict.kind, verdict.reason) == (VerdictKind.IGNORE, reason)


@pytest.mark.parametrize(
    "sample",
    [
        "plain_customer.eml",
        "german_encoded_words.eml",
        "russian_koi8r.eml",
        "attachments_rfc2231.eml",
        "quoted_reply_german.eml",
        "outlook_reply.eml",
        "threaded_reply.eml",
        "form_robot.eml",
    ],
)
def test_customer_mail_is_accepted(sample: str) -> None:
    verdict = classify(parsed(sample), POLICY, recent_from_sender=0)
    assert verdict.kind is VerdictKind.ACCEPT and verdict.reason is None


def test_classic_bounce_text_is_recognised_from_any_sender() -> None:
    mail = dataclasses.replace(
        parsed("mailer_daemon_text.eml"), sender=MailAddress("bounces@provider-example.net")
    )
    verdict = classify(mail, POLICY, 0)
    assert verdict.kind is VerdictKind.IGNORE
    assert verdict.reason == (
        "bounce: delivery failure text (Mail delivery failed: returning message to sender)"
    )


def test_the_english_exchange_subject_is_an_auto_reply_too() -> None:
    mail = dataclasses.replace(parsed("exchange_ooo.eml"), subject="Automatic reply: Angebot")
    assert (
        classify(mail, POLICY, 0).reason
        == "auto-reply: out-of-office subject 'Automatic reply: Angebot'"
    )


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-autoreply": "yes"}, "auto-reply: X-Autoreply: yes"),
        ({"x-autorespond": ""}, "auto-reply: X-Autorespond"),
        ({"precedence": "junk"}, "auto-reply: Precedence: junk"),
        ({"precedence": "auto_reply"}, "auto-reply: Precedence: auto_reply"),
        ({"return-path": "<>"}, "bounce: empty Return-Path (null sender)"),
        (
            {"list-unsubscribe": "<mailto:leave@x.example>"},
            "mailing list: List-Unsubscribe <mailto:leave@x.example>",
        ),
    ],
)
def test_robot_headers_are_ignored(headers: dict[str, str], reason: str) -> None:
    mail = dataclasses.replace(parsed("plain_customer.eml"), headers=MappingProxyType(headers))
    assert classify(mail, POLICY, 0).reason == reason


def test_auto_submitted_no_is_a_human() -> None:
    mail = dataclasses.replace(
        parsed("plain_customer.eml"), headers=MappingProxyType({"auto-submitted": "no"})
    )
    assert classify(mail, POLICY, 0).kind is VerdictKind.ACCEPT


def test_mailing_lists_pass_where_the_mailbox_allows_them() -> None:
    allowing = dataclasses.replace(POLICY, allow_lists=True)
    assert classify(parsed("mailing_list.eml"), allowing, 0).kind is VerdictKind.ACCEPT


def test_mail_from_our_own_mailbox_is_ignored() -> None:
    mail = dataclasses.replace(
        parsed("plain_customer.eml"), sender=MailAddress("vertrieb@beispiel-shop.de", "Vertrieb")
    )
    verdict = classify(mail, POLICY, 0)
    assert (verdict.kind, verdict.reason) == (
        VerdictKind.IGNORE,
        "from our own mailbox vertrieb@beispiel-shop.de",
    )


def test_mail_from_a_rep_is_ignored_even_through_a_web_form() -> None:
    form = parsed("form_robot.eml")
    tested_by_rep = dataclasses.replace(form, reply_to=MailAddress("julia.lange@beispiel-shop.de"))
    assert (
        classify(tested_by_rep, POLICY, 0).reason == "from rep address julia.lange@beispiel-shop.de"
    )


def test_a_configured_robot_may_send_from_our_own_mailbox() -> None:
    policy = dataclasses.replace(POLICY, robot_senders=frozenset({"info@beispiel-shop.de"}))
    form = dataclasses.replace(
        parsed("form_robot.eml"), sender=MailAddress("info@beispiel-shop.de")
    )
    assert classify(form, policy, 0).kind is VerdictKind.ACCEPT
    assert customer(form, policy).address == "lukas.richter@example.org"


def test_reply_to_is_the_customer_only_for_robots() -> None:
    form = parsed("form_robot.eml")
    assert customer(form, POLICY).address == "lukas.richter@example.org"
    # Even unconfigured, "wordpress@" looks like a form robot.
    assert customer(form, MailPolicy()).address == "lukas.richter@example.org"
    person = dataclasses.replace(form, sender=MailAddress("lukas@example.org"))
    assert customer(person, POLICY).address == "lukas@example.org"


def test_more_than_the_hourly_limit_only_attaches() -> None:
    mail = parsed("plain_customer.eml")
    assert classify(mail, POLICY, recent_from_sender=19).kind is VerdictKind.ACCEPT
    verdict = classify(mail, POLICY, recent_from_sender=20)
    assert (verdict.kind, verdict.reason) == (
        VerdictKind.ATTACH_ONLY,
        "more than 20 mails in an hour from anna.schmidt@gartenbau-schmidt.de",
    )


def test_ignoring_beats_the_rate_limit() -> None:
    verdict = classify(parsed("dsn_bounce.eml"), POLICY, recent_from_sender=500)
    assert verdict.kind is VerdictKind.IGNORE


def test_a_rate_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_limit_per_hour"):
        MailPolicy(rate_limit_per_hour=0)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [pytest.param(raw, reason, id=name) for name, raw, reason in handmade.BOUNCES + handmade.LISTS],
)
def test_bounces_and_list_mail_without_the_standard_headers_are_ignored(
    raw: bytes, reason: str
) -> None:
    verdict = classify(parse_message(raw), POLICY, recent_from_sender=0)
    assert (verdict.kind, verdict.reason) == (VerdictKind.IGNORE, reason)


@pytest.mark.parametrize("raw", [pytest.param(raw, id=name) for name, raw in handmade.CUSTOMERS])
def test_customer_mail_resembling_robots_is_accepted(raw: bytes) -> None:
    verdict = classify(parse_message(raw), POLICY, recent_from_sender=0)
    assert verdict == Verdict(VerdictKind.ACCEPT)


def test_list_mail_is_accepted_where_lists_are_allowed() -> None:
    lists = dataclasses.replace(POLICY, allow_lists=True)
    for _name, raw, _reason in handmade.LISTS:
        assert classify(parse_message(raw), lists, 0).kind is VerdictKind.ACCEPT
