"""How sure each identity of an event is to be the sender's own, per channel.

When identities point at different clients (the caller id is Anna's, a phone in the mail
signature is Bernd's), the identity the channel itself vouched for decides who the sender is;
only between identities of equal standing do open items and age decide (`matching.ranking`).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from matching.event import Channel, InboundEvent
from matching.model import CommKind, EventIdentities, Identity
from matching.normalize import normalize_email


class Proof(IntEnum):
    """Lower is stronger."""

    OWN = 0  # proved by the channel: a mail's From, a call's caller id, a messenger user id
    GIVEN = 1  # given by the sender unproved: a form field, an import row, a mail's Reply-To
    READ = 2  # read from free text or a signature


# Channels whose phone number is the line's caller id or the messenger account's own number.
_OWN_PHONES = frozenset({Channel.CALL, Channel.WHATSAPP, Channel.TELEGRAM})
_MESSENGERS = frozenset({Channel.TELEGRAM, Channel.WHATSAPP})
_OWN_NAMES = {
    Channel.EMAIL: "the From address",
    Channel.CALL: "the caller id",
    Channel.TELEGRAM: "the messenger id",
    Channel.WHATSAPP: "the messenger id",
}


def own_identity_name(channel: Channel) -> str | None:
    """What the channel proves about its sender, for reasons; None when it proves nothing."""
    return _OWN_NAMES.get(channel)


def proofs(event: InboundEvent, ids: EventIdentities) -> dict[Identity, Proof]:
    """Each matchable identity of `ids` with the strongest standing the event gives it."""
    found: dict[Identity, Proof] = {}

    def put(idents: Iterable[Identity], proof: Proof) -> None:
        for ident in idents:
            found[ident] = min(found.get(ident, proof), proof)

    phone = Proof.OWN if event.channel in _OWN_PHONES else Proof.GIVEN
    put((Identity(CommKind.PHONE, p.e164) for p in ids.phones if p.e164), phone)
    put(ids.handles, Proof.OWN if event.channel in _MESSENGERS else Proof.GIVEN)
    sender = event.meta.get("from") if event.channel is Channel.EMAIL else None
    sender_email = normalize_email(str(sender)) if sender else None
    for email in ids.emails:
        # A mail's From is proved; its Reply-To (or a form robot's body address) is only given.
        own = event.channel is Channel.EMAIL and sender_email in (None, email)
        put((Identity(CommKind.EMAIL, email),), Proof.OWN if own else Proof.GIVEN)
    put((Identity(CommKind.PHONE, p.e164) for p in ids.hint_phones if p.e164), Proof.READ)
    return found
