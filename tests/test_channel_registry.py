"""Every channel is declared once, in `matching.channels`, and every place that varies by
channel reads it: a channel without an entry, or a consumer that misses one, fails here."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot import views
from bot.cards import INBOUND
from bot.commands import SOURCES, lead_filter
from crm.config import StatusDef
from crm.dto import CommView
from crm.intake.labels import ACTIVITY_KIND, SOURCE, source_of, title
from crm.services.activities import KINDS
from matching.channels import CHANNELS, Channel, spec_of
from matching.event import Handle, InboundEvent
from matching.identities import event_identities
from matching.model import CommKind

ALL = list(Channel)


def _event(channel: Channel, handles: tuple[Handle, ...] = ()) -> InboundEvent:
    when = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return InboundEvent(
        channel, "x-1", when, phones=("+49 30 1234567",), display_name="Anna", handles=handles
    )


def test_every_channel_has_exactly_its_own_entry() -> None:
    assert set(CHANNELS) == set(Channel)
    for channel, spec in CHANNELS.items():
        assert spec.channel is channel
        assert spec_of(channel.value) is spec
    assert len({s.source for s in CHANNELS.values()}) == len(CHANNELS)


@pytest.mark.parametrize("channel", ALL)
def test_intake_names_and_sources_every_channel(channel: Channel) -> None:
    spec = CHANNELS[channel]
    ev = _event(channel)
    assert source_of(ev) == SOURCE[channel] == spec.source
    assert title(ev).strip()
    if spec.activity_kind is not None:
        assert ACTIVITY_KIND[channel] == spec.activity_kind
        assert spec.activity_kind in KINDS  # the activity table accepts it
        assert spec.activity_kind in INBOUND  # a card quotes it as the customer's message
    else:
        assert channel not in ACTIVITY_KIND


@pytest.mark.parametrize("channel", ALL)
def test_leads_can_be_filtered_by_every_channel(channel: Channel) -> None:
    source = CHANNELS[channel].source
    assert source in SOURCES
    statuses = [StatusDef("NEW", "New", "process")]
    assert lead_filter([source.lower()], 1, statuses, 0, 10).source == source


@pytest.mark.parametrize("channel", [c for c in ALL if CHANNELS[c].handle_kind])
def test_handles_of_every_messenger_match_and_show_on_cards(channel: Channel) -> None:
    kind = CHANNELS[channel].handle_kind
    assert kind is not None
    ev = _event(channel, handles=(Handle(kind.value, "4711"),))
    assert [i.kind for i in event_identities(ev, "DE").handles] == [kind]
    assert kind is not CommKind.OTHER
    shown = views._comm_lines([CommView(kind.value, "4711", "4711")])
    assert shown == [f"💬 {kind.value}: 4711"]
