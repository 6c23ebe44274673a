"""The create-vs-attach table: one row per situation a sales team would notice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from matching.decide import decide
from matching.event import Channel, Direction, InboundEvent, RegisterMode
from matching.model import (
    Candidates,
    CommKind,
    CrmMode,
    Decision,
    EventIdentities,
    Identity,
    MatchSettings,
    Outcome,
)
from tests.matching.factories import (
    EMAIL,
    EMAIL_ID,
    PHONE,
    PHONE_2,
    PHONE_2_ID,
    PHONE_ID,
    T0,
    company,
    contact,
    deal,
    event,
    identities,
    lead,
)

CLASSIC = MatchSettings()
REPEAT_OFF = MatchSettings(repeat_sales=False)
TRADITIONAL = MatchSettings(repeat_sales=False, traditional_mode=True)
SIMPLE = MatchSettings(crm_mode=CrmMode.SIMPLE)
SIMPLE_REPEAT_OFF = MatchSettings(crm_mode=CrmMode.SIMPLE, repeat_sales=False)

OUTGOING = event(direction=Direction.OUTGOING)
ONLY_UPDATE = event(register_mode=RegisterMode.ONLY_UPDATE)
ALWAYS_ADD = event(register_mode=RegisterMode.ALWAYS_ADD)

FORM = event(channel=Channel.WEBFORM, external_id="form:1")
MAIL = event(channel=Channel.EMAIL, external_id="<m1@example.com>", phones=(), emails=(EMAIL,))
ANNA = contact(3, "Anna Meier", responsible=11)
# Acme holds no phone or email itself: the repository adds it as the company of contact #3.
ACME_VIA_ANNA = company(5, via=(), deals=(deal(30, modified=1, responsible=31),))
ACME_LEAD = lead(41, repeat=True, company=5)


def via_anna(acme: dict[str, Any], anna: dict[str, Any] | None = None) -> Candidates:
    """Contact Anna #3 matched; her company Acme #5 added through her, with these fields."""
    return Candidates(
        companies=(company(5, via=(), **acme),), contacts=(contact(3, company=5, **(anna or {})),)
    )


ANNA_WITH_DEALS = contact(
    3,
    "Anna Meier",
    deals=(deal(14, modified=5, responsible=21), deal(12, modified=9, responsible=22)),
)
ANNA_WITH_REPEAT_LEAD = contact(
    3, "Anna Meier", repeat_leads=(lead(40, repeat=True, contact=3, responsible=23),)
)


@dataclass(frozen=True)
class Row:
    cands: Candidates
    expect: dict[str, Any]
    settings: MatchSettings = CLASSIC
    ev: InboundEvent = field(default_factory=event)
    ids: EventIdentities = field(default_factory=identities)
    hits: tuple[Identity, ...] = ()
    reason_has: tuple[str, ...] = ()


def run(row: Row) -> Decision:
    return decide(row.ev, row.ids, row.cands, row.settings, row.hits, T0)


ROWS = [
    # --- issue table ---
    pytest.param(
        Row(
            Candidates(contacts=(ANNA_WITH_DEALS,)),
            {"outcome": Outcome.IGNORED, "contact_id": None, "deal_id": None},
            hits=(PHONE_ID,),
            reason_has=(f"excepted phone {PHONE}",),
        ),
        id="exception hit ignores even a known client with an open deal",
    ),
    pytest.param(
        Row(Candidates(), {"outcome": Outcome.NEW_LEAD, "responsible_id": None}),
        id="no client, no lead -> new lead",
    ),
    pytest.param(
        Row(Candidates(), {"outcome": Outcome.NEW_DEAL, "responsible_id": None}, SIMPLE),
        id="simple: no client, no lead -> new deal",
    ),
    pytest.param(
        Row(
            Candidates(leads=(lead(8, is_open=False, modified=1), lead(5, is_open=False))),
            {"outcome": Outcome.ATTACHED_LEAD, "lead_id": 8, "merge_into_lead": True},
            TRADITIONAL,
            reason_has=("closed lead #8", "traditional"),
        ),
        id="traditional: only closed leads -> newest one reused",
    ),
    pytest.param(
        Row(
            Candidates(leads=(lead(8, is_open=False),)),
            {"outcome": Outcome.NEW_LEAD, "lead_id": None},
            REPEAT_OFF,
        ),
        id="repeat off without traditional: closed lead -> new lead",
    ),
    pytest.param(
        Row(
            Candidates(leads=(lead(5, modified=1, responsible=60), lead(6, modified=3))),
            {
                "outcome": Outcome.ATTACHED_LEAD,
                "lead_id": 6,
                "merge_into_lead": True,
                "link_lead_to_client": False,
            },
            reason_has=("open lead #6", PHONE, "merged"),
        ),
        id="no client, open leads -> newest attached and merged",
    ),
    pytest.param(
        Row(
            Candidates(leads=(lead(7, is_open=False, modified=9), lead(5, modified=1))),
            {"outcome": Outcome.ATTACHED_LEAD, "lead_id": 5},
            TRADITIONAL,
        ),
        id="traditional: an open lead beats a newer closed one",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA_WITH_DEALS,)),
            {
                "outcome": Outcome.ATTACHED_DEAL,
                "deal_id": 12,
                "contact_id": 3,
                "responsible_id": 22,
                "conflict": None,
            },
            reason_has=("Anna Meier #3", "open deal #12"),
        ),
        id="client with open deals -> most recently active deal",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA_WITH_REPEAT_LEAD,)),
            {
                "outcome": Outcome.ATTACHED_LEAD,
                "lead_id": 40,
                "contact_id": 3,
                "responsible_id": 23,
                "merge_into_lead": False,
            },
        ),
        id="client with open repeat lead -> attached to it",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA,)),
            {"outcome": Outcome.NEW_REPEAT_LEAD, "contact_id": 3, "responsible_id": 11},
            reason_has=("new repeat lead",),
        ),
        id="client, nothing open, repeat sales -> repeat lead for client's rep",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(contact(3, responsible=11, active=False),)),
            {"outcome": Outcome.NEW_REPEAT_LEAD, "responsible_id": None},
        ),
        id="client's rep inactive -> repeat lead goes to the queue",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA,)),
            {"outcome": Outcome.ATTACHED_CLIENT, "contact_id": 3, "lead_id": None},
            REPEAT_OFF,
        ),
        id="client, nothing open, repeat sales off -> activity on client",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA,)),
            {"outcome": Outcome.NEW_REPEAT_DEAL, "contact_id": 3, "responsible_id": 11},
            SIMPLE,
        ),
        id="simple: client, nothing open -> repeat deal",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA,)),
            {"outcome": Outcome.NEW_REPEAT_DEAL},
            SIMPLE_REPEAT_OFF,
        ),
        id="simple ignores the repeat-sales switch",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA_WITH_DEALS,)),
            {"outcome": Outcome.ATTACHED_DEAL, "deal_id": 12},
            SIMPLE,
        ),
        id="simple: client with open deal -> attached",
    ),
    # --- identities pointing at different people ---
    pytest.param(
        Row(
            Candidates(
                contacts=(
                    contact(3, "Anna Meier", deals=(deal(14),), via=(PHONE_ID,)),
                    contact(7, "Bob Stone", via=(EMAIL_ID,), hit=1),
                )
            ),
            {"outcome": Outcome.ATTACHED_DEAL, "contact_id": 3, "deal_id": 14},
            ids=identities(emails=(EMAIL,)),
            reason_has=("Anna Meier #3", "Bob Stone #7", f"email {EMAIL}", f"phone {PHONE}"),
        ),
        id="phone of A, email of B -> ranking's choice, conflict named",
    ),
    pytest.param(
        Row(
            Candidates(),
            {"outcome": Outcome.NEW_LEAD},
            ids=identities(phones=(), invalid=("12",)),
            reason_has=("'12'", "not matched"),
        ),
        id="invalid phone -> new lead, reason says it was not matched",
    ),
    pytest.param(
        Row(
            Candidates(),
            {"outcome": Outcome.IGNORED, "exception_hits": (PHONE_2_ID,)},
            ids=identities(phones=(PHONE, PHONE_2)),
            hits=(PHONE_2_ID,),
            reason_has=(PHONE_2,),
        ),
        id="exception on one of two phones -> ignored",
    ),
    pytest.param(
        Row(
            Candidates(
                companies=(company(5, deals=(deal(30, modified=1, responsible=31),)),),
                contacts=(contact(3, company=5, deals=(deal(31, modified=8),)),),
            ),
            {"outcome": Outcome.ATTACHED_DEAL, "deal_id": 30, "company_id": 5, "contact_id": 3},
            reason_has=("company Acme GmbH #5", "contact Anna Meier #3"),
        ),
        id="company and its contact -> company's open deal wins",
    ),
    pytest.param(
        Row(
            Candidates(
                companies=(company(5, via=(EMAIL_ID,)),),
                contacts=(contact(9, "Carl Other", company=6, hit=1),),
            ),
            {
                "outcome": Outcome.NEW_REPEAT_LEAD,
                "company_id": 5,
                "contact_id": None,
                "deal_id": None,
            },
            ev=FORM,
            ids=identities(emails=(EMAIL,)),
            reason_has=("Carl Other #9",),
        ),
        id="contact of another company is not bound",
    ),
    # --- a matched contact's company (found through the contact, R2.7) ---
    pytest.param(
        Row(
            via_anna(
                {"deals": (deal(30, modified=1, responsible=31),)},
                {"deals": (deal(31, modified=8),)},
            ),
            {
                "outcome": Outcome.ATTACHED_DEAL,
                "deal_id": 30,
                "company_id": 5,
                "contact_id": 3,
                "responsible_id": 31,
                "conflict": None,
            },
            reason_has=(
                "known contact Anna Meier #3 of company Acme GmbH #5, "
                "company Acme GmbH #5's open deal #30 → attached",
            ),
        ),
        id="contact's company holds no phone -> the company's open deal wins",
    ),
    pytest.param(
        Row(
            via_anna({}, {"deals": (deal(31, responsible=32),)}),
            {"outcome": Outcome.ATTACHED_DEAL, "deal_id": 31, "company_id": 5, "contact_id": 3},
            reason_has=("contact Anna Meier #3's open deal #31",),
        ),
        id="contact's company with nothing open -> the contact's own deal",
    ),
    pytest.param(
        Row(
            via_anna({"repeat_leads": (ACME_LEAD,)}, {"deals": (deal(31),)}),
            {"outcome": Outcome.ATTACHED_DEAL, "deal_id": 31},
        ),
        id="contact's open deal beats its company's repeat lead (deals first, R2.8)",
    ),
    pytest.param(
        Row(
            via_anna({"repeat_leads": (ACME_LEAD,)}),
            {"outcome": Outcome.ATTACHED_LEAD, "lead_id": 41, "company_id": 5, "contact_id": 3},
            reason_has=("company Acme GmbH #5's open repeat lead #41",),
        ),
        id="contact's company with an open repeat lead -> attached to it",
    ),
    pytest.param(
        Row(
            via_anna({"responsible": 70}, {"responsible": 11}),
            {
                "outcome": Outcome.NEW_REPEAT_LEAD,
                "company_id": 5,
                "contact_id": 3,
                "responsible_id": 70,
            },
        ),
        id="contact's company, nothing open -> repeat lead on both",
    ),
    pytest.param(
        Row(
            Candidates(
                companies=(ACME_VIA_ANNA,),
                contacts=(
                    contact(3, company=5),
                    contact(8, "Olaf Solo", hit=1, deals=(deal(50, modified=1),)),
                ),
            ),
            {"outcome": Outcome.ATTACHED_DEAL, "deal_id": 50, "contact_id": 8, "company_id": None},
            ev=FORM,
            ids=identities(emails=(EMAIL,)),
            reason_has=("conflict",),
        ),
        id="same standing: the newest open deal of any client wins",
    ),
    # --- junk leads ---
    pytest.param(
        Row(
            Candidates(leads=(lead(8, is_open=False),)),
            {"outcome": Outcome.NEW_LEAD, "lead_id": None},
        ),
        id="junk lead without client -> new ordinary lead",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA,), leads=(lead(8, is_open=False, contact=3),)),
            {"outcome": Outcome.NEW_REPEAT_LEAD, "contact_id": 3},
        ),
        id="junk lead linked to a contact -> repeat lead",
    ),
    pytest.param(
        Row(
            Candidates(closed_lead=lead(3, is_open=False, junked=True)),
            {"outcome": Outcome.NEW_LEAD, "lead_id": None},
            reason_has=("lead #3 was junked → new lead",),
        ),
        id="junked lead without client -> new lead, the reason names the junked one",
    ),
    pytest.param(
        Row(
            Candidates(closed_lead=lead(3, is_open=False)),
            {"outcome": Outcome.NEW_DEAL},
            SIMPLE,
            reason_has=("lead #3 is closed → new deal",),
        ),
        id="converted lead without client -> the reason says it is closed",
    ),
    pytest.param(
        Row(
            Candidates(closed_lead=lead(3, is_open=False, junked=True)),
            {"outcome": Outcome.NEW_LEAD},
            ids=identities(invalid=("12",)),
            reason_has=("lead #3 was junked, phone '12' not matched",),
        ),
        id="junked lead and an invalid phone -> both named",
    ),
    # --- blind spot ---
    pytest.param(
        Row(
            Candidates(contacts=(ANNA,), leads=(lead(5, responsible=61),)),
            {
                "outcome": Outcome.ATTACHED_LEAD,
                "lead_id": 5,
                "contact_id": 3,
                "responsible_id": 61,
                "merge_into_lead": True,
                "link_lead_to_client": True,
            },
            reason_has=("open unlinked lead #5", "linked"),
        ),
        id="blind spot: open unlinked lead is linked, no repeat lead",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA,), leads=(lead(5, contact=99),)),
            {"outcome": Outcome.NEW_REPEAT_LEAD, "lead_id": None},
        ),
        id="blind spot only for unlinked leads",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA,), leads=(lead(5, via=(PHONE_2_ID,)),)),
            {"outcome": Outcome.NEW_REPEAT_LEAD, "lead_id": None},
        ),
        id="blind spot only for a lead sharing an identity",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA_WITH_REPEAT_LEAD,), leads=(lead(5, modified=9),)),
            {"outcome": Outcome.ATTACHED_LEAD, "lead_id": 40, "link_lead_to_client": False},
        ),
        id="client's open repeat lead beats an unlinked lead",
    ),
    # --- direction and register modes ---
    pytest.param(
        Row(Candidates(), {"outcome": Outcome.IGNORED}, ev=OUTGOING, reason_has=("outgoing",)),
        id="outgoing, nobody known -> ignored",
    ),
    pytest.param(
        Row(Candidates(contacts=(ANNA,)), {"outcome": Outcome.ATTACHED_CLIENT}, ev=OUTGOING),
        id="outgoing to a client with nothing open -> activity only",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA_WITH_DEALS,)),
            {"outcome": Outcome.ATTACHED_DEAL, "deal_id": 12},
            ev=OUTGOING,
        ),
        id="outgoing to a client with open deal -> attached",
    ),
    pytest.param(
        Row(Candidates(leads=(lead(5),)), {"outcome": Outcome.ATTACHED_LEAD}, ev=OUTGOING),
        id="outgoing to an open lead -> attached",
    ),
    pytest.param(
        Row(Candidates(), {"outcome": Outcome.IGNORED}, ev=ONLY_UPDATE, reason_has=("update",)),
        id="update-only, nobody known -> ignored",
    ),
    pytest.param(
        Row(Candidates(contacts=(ANNA,)), {"outcome": Outcome.ATTACHED_CLIENT}, ev=ONLY_UPDATE),
        id="update-only, known client -> activity only",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA_WITH_DEALS,), leads=(lead(5),)),
            {"outcome": Outcome.NEW_REPEAT_LEAD, "deal_id": None, "contact_id": 3},
            ev=ALWAYS_ADD,
        ),
        id="always-add: client with open deal -> new repeat lead",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA,)),
            {"outcome": Outcome.NEW_REPEAT_LEAD},
            REPEAT_OFF,
            ev=ALWAYS_ADD,
        ),
        id="always-add creates a repeat lead even with repeat sales off",
    ),
    pytest.param(
        Row(
            Candidates(contacts=(ANNA_WITH_DEALS,)),
            {"outcome": Outcome.NEW_REPEAT_DEAL},
            SIMPLE,
            ev=ALWAYS_ADD,
        ),
        id="always-add simple: client with open deal -> new repeat deal",
    ),
    pytest.param(
        Row(Candidates(leads=(lead(5),)), {"outcome": Outcome.NEW_LEAD}, ev=ALWAYS_ADD),
        id="always-add: open lead -> new lead anyway",
    ),
    # --- threads ---
    pytest.param(
        Row(
            Candidates(contacts=(ANNA_WITH_DEALS,), thread_deal_id=14, thread_lead_id=40),
            {
                "outcome": Outcome.ATTACHED_DEAL,
                "deal_id": 14,
                "contact_id": 3,
                "responsible_id": 21,
            },
            ev=MAIL,
            ids=identities(phones=(), emails=(EMAIL,)),
            reason_has=("reply in the thread of deal #14 → attached",),
        ),
        id="thread: reply goes to its deal, not the newest one",
    ),
    pytest.param(
        Row(
            Candidates(leads=(lead(5, responsible=61),), thread_lead_id=5),
            {"outcome": Outcome.ATTACHED_LEAD, "lead_id": 5, "responsible_id": 61},
        ),
        id="thread: reply goes to its lead",
    ),
    # --- who can be reached ---
    pytest.param(
        Row(Candidates(), {"outcome": Outcome.IGNORED}, ids=identities(phones=())),
        id="anonymous caller with nothing to call back -> ignored",
    ),
    pytest.param(
        Row(
            Candidates(),
            {"outcome": Outcome.IGNORED},
            ids=identities(phones=(), invalid=("anonymous",)),
        ),
        id="withheld number is not something to call back",
    ),
    pytest.param(
        Row(Candidates(), {"outcome": Outcome.IGNORED}, ids=identities(phones=(), hints=(PHONE,))),
        id="a phone found only in the text never creates",
    ),
    pytest.param(
        Row(
            Candidates(),
            {"outcome": Outcome.NEW_LEAD},
            ids=identities(phones=(), handles=(Identity(CommKind.TELEGRAM, "42"),)),
        ),
        id="telegram user only -> new lead",
    ),
]


@pytest.mark.parametrize("row", ROWS)
def test_decision_table(row: Row) -> None:
    decision = run(row)
    actual = {name: getattr(decision, name) for name in row.expect}
    assert actual == row.expect
    for part in row.reason_has:
        assert part in decision.reason
    assert decision.reason


@pytest.mark.parametrize(
    ("channel", "words"),
    [
        (Channel.EMAIL, "reply in the thread of lead #5"),
        (Channel.CALL, "same call as lead #5"),  # a call's later webhook, not a mail reply
        (Channel.TELEGRAM, "same conversation as lead #5"),
    ],
)
def test_what_continues_a_thread_is_worded_for_its_channel(channel: Channel, words: str) -> None:
    cands = Candidates(leads=(lead(5, responsible=61),), thread_lead_id=5)
    decision = run(Row(cands, {}, ev=event(channel=channel)))
    assert (decision.outcome, decision.lead_id) == (Outcome.ATTACHED_LEAD, 5)
    assert decision.reason == f"{words} → attached"


def test_conflict_names_both_clients_and_the_choice() -> None:
    decision = run(
        Row(
            Candidates(
                contacts=(
                    contact(3, "Anna Meier", deals=(deal(14),), via=(PHONE_ID,)),
                    contact(7, "Bob Stone", via=(EMAIL_ID,), hit=1),
                )
            ),
            {},
            ids=identities(emails=(EMAIL,)),
        )
    )
    assert decision.conflict == (
        f"phone {PHONE} is contact Anna Meier #3, email {EMAIL} is contact Bob Stone #7; "
        "chose contact Anna Meier #3 by the caller id (open deal #14)"
    )


def test_contacts_of_one_company_are_no_conflict() -> None:
    decision = run(
        Row(
            Candidates(
                companies=(company(5, via=(EMAIL_ID,)),),
                contacts=(contact(3, company=5), contact(4, "Bea", company=5, via=(EMAIL_ID,))),
            ),
            {},
        )
    )
    assert decision.conflict is None
    assert (decision.company_id, decision.contact_id) == (5, 3)


def test_exception_decision_sets_nothing_but_the_reason() -> None:
    decision = run(Row(Candidates(contacts=(ANNA_WITH_DEALS,)), {}, hits=(EMAIL_ID,)))
    assert decision == Decision(
        Outcome.IGNORED, f"excepted email {EMAIL} → ignored", exception_hits=(EMAIL_ID,)
    )


SETTINGS = [CLASSIC, REPEAT_OFF, TRADITIONAL, SIMPLE, SIMPLE_REPEAT_OFF]
SITUATIONS = {
    "nobody": Candidates(),
    "closed lead": Candidates(leads=(lead(8, is_open=False),)),
    "client": Candidates(contacts=(ANNA,)),
    "company": Candidates(companies=(company(5),)),
    "junk-linked client": Candidates(contacts=(ANNA,), leads=(lead(8, is_open=False, contact=3),)),
}
CREATING = {Outcome.NEW_LEAD, Outcome.NEW_REPEAT_LEAD, Outcome.NEW_DEAL, Outcome.NEW_REPEAT_DEAL}


@pytest.mark.parametrize("mode", list(RegisterMode))
@pytest.mark.parametrize("settings", SETTINGS, ids=repr)
@pytest.mark.parametrize("situation", SITUATIONS)
def test_outgoing_never_creates(
    situation: str, settings: MatchSettings, mode: RegisterMode
) -> None:
    ev = event(direction=Direction.OUTGOING, register_mode=mode)
    decision = decide(ev, identities(), SITUATIONS[situation], settings, (), T0)
    assert decision.outcome not in CREATING


def test_what_the_channel_filtered_is_ignored_whoever_it_is() -> None:
    """A bounce from a known client's address still makes no activity: the channel said why."""
    bounce = event(meta={"filtered": "delivery status notification"})
    for cands in (Candidates(), Candidates(contacts=(ANNA_WITH_DEALS,))):
        decision = run(Row(cands, {}, ev=bounce))
        assert decision == Decision(Outcome.IGNORED, "delivery status notification → ignored")
