"""Identities the sender proved outrank those it merely gave, which outrank text we read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from matching.decide import decide
from matching.event import Channel, Handle, InboundEvent
from matching.identities import event_identities
from matching.model import Candidates, CommKind, Identity, MatchSettings, Outcome
from matching.precedence import Proof, proofs
from tests.matching.factories import (
    EMAIL,
    EMAIL_ID,
    PHONE,
    PHONE_2,
    PHONE_2_ID,
    PHONE_ID,
    T0,
    contact,
    deal,
)

TG_ID = Identity(CommKind.TELEGRAM, "4242")
WA_ID = Identity(CommKind.WHATSAPP, "491711234567")
OTHER_EMAIL = "office@example.com"
OTHER_EMAIL_ID = Identity(CommKind.EMAIL, OTHER_EMAIL)


def ev(channel: Channel, **fields: Any) -> InboundEvent:
    return InboundEvent(channel=channel, external_id="x-1", occurred_at=T0, **fields)


MAIL_META = {"from": EMAIL}

# channel's event → the standing of each identity it carries
PROOF_TABLE = [
    pytest.param(
        ev(Channel.EMAIL, emails=(EMAIL,), hint_phones=(PHONE,), meta=MAIL_META),
        {EMAIL_ID: Proof.OWN, PHONE_ID: Proof.READ},
        id="mail: From proved, signature phone read",
    ),
    pytest.param(
        ev(Channel.EMAIL, emails=(OTHER_EMAIL,), meta=MAIL_META),
        {OTHER_EMAIL_ID: Proof.GIVEN},
        id="mail: Reply-To (not the From) only given",
    ),
    pytest.param(
        ev(Channel.EMAIL, emails=(" Anna@Example.com ",), meta={"from": "ANNA@example.com"}),
        {EMAIL_ID: Proof.OWN},
        id="mail: From compared normalized",
    ),
    pytest.param(
        ev(Channel.CALL, phones=(PHONE,), hint_phones=(PHONE_2,)),
        {PHONE_ID: Proof.OWN, PHONE_2_ID: Proof.READ},
        id="call: caller id proved",
    ),
    pytest.param(
        ev(Channel.TELEGRAM, phones=(PHONE,), handles=(Handle("telegram", "4242"),)),
        {TG_ID: Proof.OWN, PHONE_ID: Proof.OWN},
        id="telegram: user id and shared own contact proved",
    ),
    pytest.param(
        ev(
            Channel.WHATSAPP,
            phones=("+" + WA_ID.value,),
            handles=(Handle("whatsapp", WA_ID.value),),
        ),
        {WA_ID: Proof.OWN, PHONE_2_ID: Proof.OWN},
        id="whatsapp: wa id and its number proved",
    ),
    pytest.param(
        ev(Channel.WEBFORM, phones=(PHONE,), emails=(EMAIL,), hint_phones=(PHONE_2,)),
        {PHONE_ID: Proof.GIVEN, EMAIL_ID: Proof.GIVEN, PHONE_2_ID: Proof.READ},
        id="form: typed fields given, message text read",
    ),
    pytest.param(
        ev(Channel.IMPORT, phones=(PHONE,), emails=(EMAIL,)),
        {PHONE_ID: Proof.GIVEN, EMAIL_ID: Proof.GIVEN},
        id="import: row cells given",
    ),
    pytest.param(
        ev(Channel.EMAIL, emails=(EMAIL,), hint_phones=(PHONE,), phones=(PHONE,)),
        {EMAIL_ID: Proof.OWN, PHONE_ID: Proof.GIVEN},
        id="an identity both given and read keeps the stronger standing",
    ),
]


@pytest.mark.parametrize(("event", "expected"), PROOF_TABLE)
def test_standing_of_each_identity_per_channel(
    event: InboundEvent, expected: dict[Identity, Proof]
) -> None:
    assert proofs(event, event_identities(event, "DE")) == expected


# Anna is the older record with an open deal; Bernd is newer with nothing open. Without
# precedence Anna would win every conflict.
ANNA, BERND = 3, 7


@dataclass(frozen=True)
class Conflict:
    event: InboundEvent
    anna: tuple[Identity, ...]  # the identities that find Anna
    bernd: tuple[Identity, ...]  # … and Bernd
    winner: int
    chose: str | None = None  # what the conflict note says decided; None: ranking did

    def cands(self) -> Candidates:
        anna = contact(ANNA, "Anna Meier", via=self.anna, hit=0, deals=(deal(14),))
        return Candidates(contacts=(anna, contact(BERND, "Bernd Vogel", via=self.bernd, hit=1)))


MAIL = ev(Channel.EMAIL, emails=(EMAIL,), hint_phones=(PHONE,), meta=MAIL_META)
REPLY_TO = ev(Channel.EMAIL, emails=(OTHER_EMAIL,), hint_phones=(PHONE,), meta=MAIL_META)
CALL = ev(Channel.CALL, phones=(PHONE_2,), emails=(EMAIL,))
TELEGRAM = ev(Channel.TELEGRAM, handles=(Handle("telegram", "4242"),), hint_phones=(PHONE,))
FORM = ev(Channel.WEBFORM, phones=(PHONE,), emails=(EMAIL,))
FORM_TEXT = ev(Channel.WEBFORM, emails=(EMAIL,), hint_phones=(PHONE,))
OWN_DETAILS = "by the sender's own details"
CONFLICTS = [
    pytest.param(
        Conflict(MAIL, (PHONE_ID,), (EMAIL_ID,), BERND, "chose contact Bernd Vogel #7 by the From"),
        id="mail: From is Bernd, signature phone is Anna -> Bernd",
    ),
    pytest.param(
        Conflict(REPLY_TO, (PHONE_ID,), (OTHER_EMAIL_ID,), BERND, OWN_DETAILS),
        id="mail: Reply-To given still beats a phone read from the text",
    ),
    pytest.param(
        Conflict(MAIL, (PHONE_ID, EMAIL_ID), (PHONE_ID,), ANNA, "by the From address"),
        id="mail: the From's own client wins even where the text phone is shared",
    ),
    pytest.param(
        Conflict(CALL, (EMAIL_ID,), (PHONE_2_ID,), BERND, "by the caller id"),
        id="call: caller id is Bernd, an email given with it is Anna -> Bernd",
    ),
    pytest.param(
        Conflict(TELEGRAM, (PHONE_ID,), (TG_ID,), BERND, "by the messenger id"),
        id="telegram: user id is Bernd, a phone in the message is Anna -> Bernd",
    ),
    pytest.param(
        Conflict(FORM, (PHONE_ID,), (EMAIL_ID,), ANNA),
        id="form: phone and email of equal standing -> ranking (Anna's open deal)",
    ),
    pytest.param(
        Conflict(FORM_TEXT, (PHONE_ID,), (EMAIL_ID,), BERND, OWN_DETAILS),
        id="form: typed email beats a phone in the message text",
    ),
]


@pytest.mark.parametrize("case", CONFLICTS)
def test_the_proved_identity_decides_a_conflict(case: Conflict) -> None:
    e = case.event
    decision = decide(e, event_identities(e, "DE"), case.cands(), MatchSettings(), (), T0)
    outcome = Outcome.ATTACHED_DEAL if case.winner == ANNA else Outcome.NEW_REPEAT_LEAD
    assert (decision.contact_id, decision.outcome) == (case.winner, outcome)
    assert decision.conflict is not None
    if case.chose is not None:
        assert case.chose in decision.conflict
        assert "wins" in decision.reason
    else:
        assert " by " not in decision.conflict
