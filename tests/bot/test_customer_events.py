"""Turning a customer's Telegram message into an inbound event (pure)."""

from __future__ import annotations

from typing import Any

from telegram import Message

from bot.customer_events import customer_event, with_verified_phone
from matching.event import Channel, Handle

BOT = 7000000001


def message(**content: Any) -> Message:
    data = {
        "message_id": 12,
        "date": 1_700_000_000,
        "chat": {"id": 42, "type": "private"},
        "from": {"id": 42, "is_bot": False, "first_name": "Anna", "last_name": "Schulz",
                 "username": "anna_s"},
        **content,
    }  # fmt: skip
    return Message.de_json(data, None)


def test_a_text_message_names_its_sender_and_is_stable_per_update() -> None:
    event = customer_event(BOT, 900, message(text="Hallo"))
    assert event is not None and event == customer_event(BOT, 900, message(text="Hallo"))
    assert event.channel is Channel.TELEGRAM and event.external_id == f"{BOT}:900"
    assert event.handles == (Handle("telegram", "42", "anna_s"),)
    assert (event.display_name, event.first_name, event.last_name) == (
        "Anna Schulz",
        "Anna",
        "Schulz",
    )
    assert event.text == "Hallo" and event.phones == () and event.source == "TELEGRAM"
    assert event.meta == {"bot_id": BOT, "chat_id": 42, "message_id": 12}
    assert event.occurred_at.tzinfo is not None


def test_only_the_senders_own_contact_is_their_phone() -> None:
    own = customer_event(BOT, 1, message(contact={"phone_number": "4930123", "first_name": "A",
                                                  "user_id": 42}))  # fmt: skip
    assert own is not None and own.phones == ("+4930123",) and own.meta["phone_verified"]
    other = customer_event(BOT, 2, message(contact={"phone_number": "+4930999", "first_name": "B",
                                                    "user_id": 7}))  # fmt: skip
    assert other is not None and other.phones == () and other.hint_phones == ()
    assert [a.name for a in other.attachments] == ["contact card: B +4930999"]
    unregistered = message(contact={"phone_number": "+4930888", "first_name": "C"})
    event = customer_event(BOT, 3, unregistered)
    assert event is not None and event.phones == ()


def test_held_messages_get_the_verified_phone_once() -> None:
    event = customer_event(BOT, 4, message(text="Hallo"))
    assert event is not None
    twice = with_verified_phone(with_verified_phone(event, "+4930123"), "+4930123")
    assert twice.phones == ("+4930123",) and twice.external_id == event.external_id


def test_bots_are_no_customers_and_stickers_get_a_note() -> None:
    robot = message(text="hi", **{"from": {"id": 9, "is_bot": True, "first_name": "R"}})
    assert customer_event(BOT, 5, robot) is None
    sticker = {"file_id": "s", "file_unique_id": "s", "width": 1, "height": 1, "emoji": "👍",
               "is_animated": False, "is_video": False, "type": "regular"}  # fmt: skip
    event = customer_event(BOT, 6, message(sticker=sticker))
    assert event is not None and event.text == "[sticker 👍]"
