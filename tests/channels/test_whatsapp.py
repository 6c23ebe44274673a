"""WhatsApp Cloud API webhook: subscription check, signatures, batched payloads → events."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from channels.event import Attachment, Channel, Handle
from channels.whatsapp.webhook import (
    WhatsAppAuthError,
    WhatsAppPayloadError,
    parse_webhook,
    verify_challenge,
    verify_signature,
)

TOKEN = "s3cret-verify"
SECRET = "app-secret-123"

# As Meta sends it: non-ASCII escaped as \uXXXX (so only the raw bytes carry the signature).
# Two entries (two business numbers); statuses mixed in; the second entry's change also has
# an account-update field that is not about messages.
BATCH = rb"""{"object":"whatsapp_business_account","entry":[
{"id":"111","changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
 "metadata":{"display_phone_number":"4930999888","phone_number_id":"PNID-1"},
 "contacts":[{"profile":{"name":"J\u00fcrgen M\u00fcller"},"wa_id":"491711234567"},
             {"profile":{"name":"\u0418\u0432\u0430\u043d \u041f\u0435\u0442\u0440\u043e\u0432"},
              "wa_id":"79161234567"}],
 "messages":[
  {"from":"491711234567","id":"wamid.A1","timestamp":"1697043223","type":"text",
   "text":{"body":"Gr\u00fc\u00dfe, ich brauche ein Angebot"}},
  {"from":"79161234567","id":"wamid.A2","timestamp":"1697043224","type":"image",
   "image":{"caption":"\u0444\u043e\u0442\u043e","mime_type":"image/jpeg","sha256":"abc","id":"MEDIA-1"}}
 ],
 "statuses":[{"id":"wamid.OUT1","status":"delivered","timestamp":"1697043200","recipient_id":"491711234567"}]
}}]},
{"id":"222","changes":[
 {"field":"account_update","value":{"event":"VERIFIED_ACCOUNT"}},
 {"field":"messages","value":{"messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"4940111222","phone_number_id":"PNID-2"},
  "statuses":[{"id":"wamid.OUT2","status":"read","timestamp":"1697043300","recipient_id":"1"}]}},
 {"field":"messages","value":{"messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"4940111222","phone_number_id":"PNID-2"},
  "contacts":[{"profile":{"name":"Ana"},"wa_id":"5511987654321"}],
  "messages":[
   {"from":"5511987654321","id":"wamid.B1","timestamp":"1697043400","type":"document",
    "document":{"filename":"Anfrage.pdf","mime_type":"application/pdf","id":"MEDIA-2"}},
   {"from":"5511987654321","id":"wamid.B2","timestamp":"1697043401","type":"audio",
    "audio":{"mime_type":"audio/ogg; codecs=opus","id":"MEDIA-3","voice":true}},
   {"from":"5511987654321","id":"wamid.B1","timestamp":"1697043400","type":"document",
    "document":{"filename":"Anfrage.pdf","mime_type":"application/pdf","id":"MEDIA-2"}}
  ]}}
]}]}"""


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(*messages: dict[str, object], contacts: Sequence[object] | None = None) -> bytes:
    value: dict[str, object] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "4930999888", "phone_number_id": "PNID-1"},
        "messages": list(messages),
    }
    if contacts is not None:
        value["contacts"] = list(contacts)
    root = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(root).encode()


def message(kind: str, body: object, **extra: object) -> dict[str, object]:
    return {"from": "491711234567", "id": f"wamid.{kind}", "timestamp": "1700000000",
            "type": kind, kind: body, **extra}  # fmt: skip


def only_event_text(kind: str, body: object) -> str | None:
    (event,) = parse_webhook(payload(message(kind, body))).events
    return event.text


# --- GET verification ------------------------------------------------------------------------


def test_matching_token_returns_the_challenge() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1158201444"}
    assert verify_challenge(params, TOKEN) == "1158201444"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, "token"),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, "token"),
        ({"hub.mode": "unsubscribe", "hub.verify_token": TOKEN, "hub.challenge": "1"}, "mode"),
        ({"hub.verify_token": TOKEN, "hub.challenge": "1"}, "mode"),
        ({"hub.mode": "subscribe", "hub.verify_token": TOKEN}, "challenge"),
        ({"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "x" * 300}, "chall"),
        ({"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "<a>\n"}, "chall"),
    ],
)
def test_bad_verification_is_refused(params: dict[str, str], reason: str) -> None:
    with pytest.raises(WhatsAppAuthError, match=reason):
        verify_challenge(params, TOKEN)


def test_verification_refused_when_no_token_is_configured() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    with pytest.raises(WhatsAppAuthError, match="configured"):
        verify_challenge(params, "")


# --- POST signature --------------------------------------------------------------------------


def test_known_hmac_vector_is_accepted() -> None:
    verify_signature(
        "secret", b"test", "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    )


def test_signature_hex_case_does_not_matter() -> None:
    verify_signature("secret", b"test", sign("secret", b"test").upper().replace("SHA256", "sha256"))


def test_tampered_body_is_refused() -> None:
    header = sign(SECRET, BATCH)
    with pytest.raises(WhatsAppAuthError, match="does not match"):
        verify_signature(SECRET, BATCH.replace(b"Angebot", b"Angebox"), header)


def test_reserialised_json_no_longer_matches_the_signature() -> None:
    # Why the route must verify the raw bytes: re-encoding changes the \uXXXX escapes.
    header = sign(SECRET, BATCH)
    verify_signature(SECRET, BATCH, header)
    reencoded = json.dumps(json.loads(BATCH), ensure_ascii=False).encode()
    with pytest.raises(WhatsAppAuthError):
        verify_signature(SECRET, reencoded, header)


@pytest.mark.parametrize(
    ("secret", "header", "reason"),
    [
        (SECRET, None, "missing"),
        (SECRET, "", "missing"),
        (SECRET, "sha1=" + "0" * 40, "sha256="),
        (SECRET, "sha256=xyz", "sha256="),
        (SECRET, "sha256=" + "ä" * 64, "sha256="),
        ("other-secret", "VALID", "does not match"),
        ("", "VALID", "configured"),
    ],
)
def test_bad_signatures_are_refused(secret: str, header: str | None, reason: str) -> None:
    if header == "VALID":
        header = sign(SECRET, BATCH)
    with pytest.raises(WhatsAppAuthError, match=reason):
        verify_signature(secret, BATCH, header)


# --- payload → events ------------------------------------------------------------------------


def test_batched_payload_yields_every_message_once_and_no_statuses() -> None:
    events = parse_webhook(BATCH).events
    assert [e.external_id for e in events] == ["wamid.A1", "wamid.A2", "wamid.B1", "wamid.B2"]
    assert {e.channel for e in events} == {Channel.WHATSAPP}
    assert {e.source for e in events} == {"WHATSAPP"}


def test_text_message_event_carries_sender_identity() -> None:
    first = parse_webhook(BATCH).events[0]
    assert first.display_name == "Jürgen Müller"
    assert first.phones == ("+491711234567",)
    assert first.handles == (Handle("whatsapp", "491711234567"),)
    assert first.text == "Grüße, ich brauche ein Angebot"
    assert first.occurred_at == datetime(2023, 10, 11, 16, 53, 43, tzinfo=UTC)
    assert first.line == "PNID-1"
    assert first.meta["wa_message_type"] == "text"
    assert first.meta["phone_number_id"] == "PNID-1"
    assert first.meta["display_phone_number"] == "4930999888"


def test_contacts_are_matched_to_the_right_sender() -> None:
    events = {e.external_id: e for e in parse_webhook(BATCH).events}
    assert events["wamid.A2"].display_name == "Иван Петров"
    assert events["wamid.B1"].display_name == "Ana"
    assert events["wamid.B1"].line == "PNID-2"


def test_media_messages_keep_metadata_and_media_id() -> None:
    events = {e.external_id: e for e in parse_webhook(BATCH).events}
    image, document, voice = events["wamid.A2"], events["wamid.B1"], events["wamid.B2"]
    assert image.text == "фото"
    assert image.attachments == (Attachment("image-MEDIA-1", "image/jpeg", 0),)
    assert image.meta["media"][0]["id"] == "MEDIA-1"
    assert document.text == "[document: Anfrage.pdf]"
    assert document.attachments == (Attachment("Anfrage.pdf", "application/pdf", 0),)
    assert voice.meta["wa_message_type"] == "voice"
    assert voice.text == "[voice message]"
    assert voice.attachments[0].content_type == "audio/ogg; codecs=opus"


def test_events_survive_the_json_round_trip_used_by_queues() -> None:
    for event in parse_webhook(BATCH).events:
        assert type(event).from_json(json.loads(json.dumps(event.to_json()))) == event


def test_statuses_only_payload_gives_no_events() -> None:
    value = {"statuses": [{"id": "wamid.X", "status": "sent", "recipient_id": "4917"}]}
    change = {"field": "messages", "value": value}
    body = json.dumps({"entry": [{"id": "1", "changes": [change]}]}).encode()
    assert parse_webhook(body).events == []


@pytest.mark.parametrize(
    ("kind", "body", "text"),
    [
        ("button", {"text": "Yes, call me", "payload": "CALL"}, "Yes, call me"),
        (
            "interactive",
            {"type": "button_reply", "button_reply": {"id": "b1", "title": "Angebot"}},
            "Angebot",
        ),
        (
            "interactive",
            {"type": "list_reply", "list_reply": {"id": "l", "title": "Mo", "description": "9-12"}},
            "Mo — 9-12",
        ),
        (
            "location",
            {"latitude": 52.52, "longitude": 13.405, "name": "Büro", "address": "Berlin"},
            "Location: Büro, Berlin (52.52, 13.405)",
        ),
        (
            "contacts",
            [{"name": {"formatted_name": "Eva Frau"}, "phones": [{"phone": "+49 30 111"}]}],
            "Shared contact: Eva Frau, +49 30 111",
        ),
        ("reaction", {"message_id": "wamid.O", "emoji": "👍"}, "Reaction 👍 to an earlier message"),
        ("reaction", {"message_id": "wamid.O", "emoji": ""}, "Reaction removed"),
        ("sticker", {"mime_type": "image/webp", "id": "S1", "animated": False}, "[sticker]"),
        ("ephemeral", {}, "[unsupported message type ephemeral]"),
        ("text", {"body": "  "}, "[empty text message]"),
        ("unsupported", None, "[unsupported message type unsupported]"),
    ],
)
def test_every_message_type_becomes_readable_text(kind: str, body: object, text: str) -> None:
    assert only_event_text(kind, body) == text


def test_shared_contact_numbers_are_not_taken_as_the_senders() -> None:
    card = [{"name": {"formatted_name": "Eva"}, "phones": [{"phone": "+4930111222"}]}]
    (event,) = parse_webhook(payload(message("contacts", card))).events
    assert event.phones == ("+491711234567",)
    assert event.hint_phones == ()


def test_reply_context_and_ad_referral_are_kept() -> None:
    msg = message(
        "text",
        {"body": "hi"},
        context={"id": "wamid.PREV", "forwarded": True},
        referral={"source_url": "https://fb.me/ad", "headline": "Sale", "ctwa_clid": "C1"},
    )
    (event,) = parse_webhook(payload(msg)).events
    assert event.meta["reply_to"] == "wamid.PREV"
    assert event.meta["forwarded"] is True
    assert event.meta["referral"] == {
        "source_url": "https://fb.me/ad",
        "headline": "Sale",
        "ctwa_clid": "C1",
    }


def test_lone_contact_with_a_different_wa_id_still_names_the_sender() -> None:
    contacts = [{"profile": {"name": "Ana"}, "wa_id": "55119876543210"}]
    (event,) = parse_webhook(payload(message("text", {"body": "x"}), contacts=contacts)).events
    assert event.display_name == "Ana"


def test_missing_profile_leaves_the_name_empty() -> None:
    (event,) = parse_webhook(payload(message("text", {"body": "x"}))).events
    assert event.display_name is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "body is not an object"),
        (b'{"object":"page","entry":[]}', "not a WhatsApp"),
        (b'{"object":"whatsapp_business_account"}', "entry is not a list"),
    ],
)
def test_bodies_that_are_no_webhook_at_all_raise_payload_error(body: bytes, reason: str) -> None:
    with pytest.raises(WhatsAppPayloadError, match=reason):
        parse_webhook(body)


GOOD = {"from": "491711234567", "id": "wamid.GOOD", "timestamp": "1700000000", "type": "text",
        "text": {"body": "still here"}}  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        # Said in words, not as "sender None / None is neither …".
        ({"id": "wamid.1", "timestamp": "1", "type": "text"}, "no sender: neither from nor"),
        ({"from": "+4917", "id": "wamid.1", "timestamp": "1", "type": "text"}, "sender"),
        ({"from_user_id": "no-bsuid", "id": "wamid.1", "timestamp": "1"}, "sender"),
        ({"from": "491711234567", "timestamp": "1", "type": "text"}, "without an id"),
        ({"from": "491711234567", "id": "wamid.1", "timestamp": "soon"}, "timestamp"),
        ({"from": "491711234567", "id": "wamid.1", "timestamp": "9" * 30}, "timestamp"),
        ("not a message", "message is not an object"),
    ],
)
def test_a_bad_message_is_rejected_alone_and_the_others_are_kept(bad: object, reason: str) -> None:
    batch = parse_webhook(payload(bad, GOOD))  # type: ignore[arg-type]
    assert [e.external_id for e in batch.events] == ["wamid.GOOD"]
    (rejected,) = batch.rejected
    assert reason in rejected.reason
    assert rejected.where == "entry[0].changes[0].value.messages[0]"


def test_a_broken_entry_or_value_costs_only_its_own_messages() -> None:
    good = json.loads(payload(GOOD))["entry"][0]
    body = {
        "object": "whatsapp_business_account",
        "entry": [7, {"changes": [{"field": "messages", "value": []}]}, {"changes": 3}, good],
    }
    batch = parse_webhook(json.dumps(body).encode())
    assert [e.external_id for e in batch.events] == ["wamid.GOOD"]
    assert [(r.where, r.reason) for r in batch.rejected] == [
        ("entry[0]", "entry is not an object"),
        ("entry[1].changes[0]", "value is not an object"),
        ("entry[2]", "changes is not a list"),
    ]


# --- senders known by their business-scoped user id (WhatsApp usernames, 2026) ---------------


def test_username_user_without_phone_is_keyed_on_the_business_scoped_user_id() -> None:
    contacts = [{"profile": {"name": "Lena", "username": "@lena.k"}, "user_id": "DE.13491208655"}]
    msg = {"from_user_id": "DE.13491208655", "id": "wamid.U1", "timestamp": "1700000000",
           "type": "text", "text": {"body": "Hallo"}}  # fmt: skip
    (event,) = parse_webhook(payload(msg, contacts=contacts)).events
    assert event.phones == ()
    assert event.handles == (Handle("whatsapp", "DE.13491208655", "lena.k"),)
    assert event.display_name == "Lena"


def test_both_ids_give_the_phone_and_both_whatsapp_identities() -> None:
    contacts = [{"profile": {"name": "Lena"}, "wa_id": "491711234567", "user_id": "DE.1349"}]
    msg = {**GOOD, "from_user_id": "DE.1349"}
    (event,) = parse_webhook(payload(msg, contacts=contacts)).events
    assert event.phones == ("+491711234567",)
    assert event.handles == (Handle("whatsapp", "491711234567"), Handle("whatsapp", "DE.1349"))


def test_the_contact_entry_supplies_the_number_a_message_leaves_out() -> None:
    contacts = [
        {"profile": {"name": "Other"}, "wa_id": "4915112345678", "user_id": "DE.9"},
        {"profile": {"name": "Lena"}, "wa_id": "491711234567", "user_id": "DE.1349"},
    ]
    msg = {"from_user_id": "DE.1349", "id": "wamid.U2", "timestamp": "1700000000", "type": "text",
           "text": {"body": "x"}}  # fmt: skip
    (event,) = parse_webhook(payload(msg, contacts=contacts)).events
    assert event.display_name == "Lena" and event.phones == ("+491711234567",)


def test_a_username_names_a_sender_without_profile_name() -> None:
    contacts = [{"profile": {"username": "kunde_2026"}, "user_id": "AT.77"}]
    msg = {"from_user_id": "AT.77", "id": "wamid.U3", "timestamp": "1700000000", "type": "text",
           "text": {"body": "x"}}  # fmt: skip
    (event,) = parse_webhook(payload(msg, contacts=contacts)).events
    assert event.display_name == "@kunde_2026"
