"""Twilio's incoming-message form as an event (sans-I/O), and the `[sms]` section."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.sms.message import SmsPayloadError, sms_event
from leadbot.logs import configured_secrets
from leadbot.settings import Settings
from matching.event import Channel

NOW = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
SID = "SM" + "a1" * 16


def form(**fields: str) -> dict[str, str]:
    return {"MessageSid": SID, "From": "+491711234567", "To": "+4930555000", "Body": "Hallo",
            "NumMedia": "0", "SomeFutureParameter": "ignored", **fields}  # fmt: skip


def test_an_incoming_sms_is_an_sms_event_keyed_by_its_sid_in_the_region_of_our_number() -> None:
    e = sms_event(form(From="0171 1234567"), NOW, {"+4930555000": "DE"})
    assert (e.channel, e.external_id, e.occurred_at) == (Channel.SMS, SID, NOW)
    assert (e.phones, e.text, e.line, e.phone_region) == (
        ("0171 1234567",),
        "Hallo",
        "+4930555000",
        "DE",
    )
    assert sms_event(form(), NOW, {}).phone_region is None  # the global default applies


def test_media_become_attachments_and_a_picture_alone_is_a_message() -> None:
    e = sms_event(
        form(Body="", NumMedia="2", MediaUrl0="https://api.twilio.com/x/Media/ME1",
             MediaContentType0="image/jpeg", MediaUrl1="https://api.twilio.com/x/Media/ME2",
             MediaContentType1="application/pdf"),
        NOW, {},
    )  # fmt: skip
    assert [(a.name, a.content_type) for a in e.attachments] == [
        ("ME1", "image/jpeg"),
        ("ME2", "application/pdf"),
    ]
    assert e.text is None and len(e.meta["media_urls"]) == 2
    assert sms_event(form(Body="  "), NOW, {}).text == "[empty message]"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"MessageSid": ""}, "MessageSid is missing"),
        ({"MessageSid": "CA123"}, "not a Twilio message SID"),
        ({"From": ""}, "From is missing"),
        ({"From": "whatsapp:+491711234567"}, "From is not a phone number"),
        ({"To": "Leadbot"}, "To is not a phone number"),
        ({"NumMedia": "-1"}, "NumMedia"),
        ({"NumMedia": "11"}, "NumMedia"),
    ],
)
def test_a_form_that_is_no_incoming_sms_says_why(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(SmsPayloadError, match=reason):
        sms_event(form(**fields), NOW, {})


def test_the_auth_token_is_a_secret_the_logs_hide() -> None:
    settings = Settings(sms={"account_sid": "AC1", "auth_token": "smsToken-hidden-7Qz"})
    assert "smsToken-hidden-7Qz" in configured_secrets(settings)
    assert "smsToken-hidden-7Qz" not in repr(settings)
