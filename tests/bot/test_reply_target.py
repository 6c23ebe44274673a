"""Where a rep's 💬 Reply goes: the channel of the customer's latest inbound contact that has
a sender, addressed by the registry's reply kind."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.cards import reply_target
from bot.views import (
    ReplyTarget,
)
from crm.dto import ActivityView, CommView

WHEN = datetime(2026, 1, 5, 9, tzinfo=UTC)
COMMS = [
    CommView("email", "Anna@Example.com", "anna@example.com"),
    CommView("telegram", "anna", "4711"),
    CommView("email", "anna@work.example", "anna@work.example"),
]


def act(channel: str, direction: str = "incoming", counterparty: str | None = None) -> ActivityView:
    return ActivityView(
        1, "message", direction, None, "hi", None, True, WHEN, None, None, None,
        channel, counterparty, 0, WHEN, {}, [], WHEN,
    )  # fmt: skip


def test_the_latest_inbound_channel_with_a_sender_wins() -> None:
    acts = [act("telegram"), act("email", counterparty="anna@example.com"), act("call")]
    both = {"telegram", "email"}
    # calls have no sender: the mail before it is answered, to the address it came from
    target = reply_target(acts, COMMS, both)
    assert target == ReplyTarget("email", "anna@example.com")
    assert target.answering is acts[1]  # the mail a sender threads onto
    assert reply_target(acts, COMMS, {"telegram"}) == ReplyTarget("telegram", "4711")


def test_outgoing_messages_do_not_count_and_a_gone_number_falls_back_to_the_newest() -> None:
    acts = [act("email", counterparty="old@example.com"), act("telegram", direction="outgoing")]
    want = ReplyTarget("email", "anna@work.example")
    assert reply_target(acts, COMMS, {"email", "telegram"}) == want


def test_a_messenger_handle_is_reachable_without_a_message_but_an_address_is_not() -> None:
    assert reply_target([], COMMS, {"telegram", "email"}) == ReplyTarget("telegram", "4711")
    assert reply_target([act("call", counterparty="anna@example.com")], COMMS, {"email"}) is None
    assert reply_target([act("telegram")], COMMS, set()) is None
