"""A rep answers a mail from the card: it goes out by SMTP (a real local aiosmtpd server, logged
in to) from the mailbox the customer wrote to, threaded onto their mail, and the customer's
answer to it lands on the same lead, even from another address."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from channels.mail import MailPolicy, Verdict, VerdictKind, to_event
from channels.mail.doctor import check_smtp
from channels.mail.parse import parse_message
from channels.mail.settings import MailboxSettings
from channels.mail.smtp import reply_subject, smtp_component
from crm.services.listing import ListFilter
from tests.bot.conftest import World
from tests.fakes.smtp_server import LOGIN, PASSWORD, Smtpd, running_smtpd
from tests.mail.support import customer_mail
from tests.servers import free_port

RITA = 1001
OURS = "sales@beispiel-shop.de"
ANNA = "anna@kunde.example"


@pytest.fixture
def smtpd() -> Iterator[Smtpd]:
    with running_smtpd() as server:
        yield server


def mail_sections(port: int) -> dict[str, Any]:
    """A mailbox "sales" that answers through the SMTP server on `port`."""
    box = {"name": "sales", "host": "127.0.0.1", "port": 1, "security": "none",
           "user": OURS, "password": "imap-password",
           "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "user": LOGIN,
                    "password": PASSWORD, "from_address": OURS, "from_name": "Beispiel Shop",
                    "timeout": 5}}  # fmt: skip
    return {"mailboxes": [box]}


async def mail_world(world: Any, port: int) -> World:
    w: World = await world(extra=[smtp_component], **mail_sections(port))
    await w.rep("Rita", RITA)
    return w


async def deliver(w: World, raw: bytes) -> None:
    """The mail as the IMAP worker hands it to intake (mailbox "sales")."""
    parsed = parse_message(raw, phone_region="DE")
    policy_ = MailPolicy(own_addresses=frozenset({OURS}))
    event = to_event(
        parsed, "sales", "DE", policy_, Verdict(VerdictKind.ACCEPT), now=datetime.now(UTC)
    )
    await w.service.submit(event)


async def answer(w: World, text: str) -> str:
    return await w.reply(RITA, "Anna Kunde", "E-mail", text)


def test_the_reply_subject_gets_one_re() -> None:
    assert reply_subject("Anfrage") == "Re: Anfrage"
    assert reply_subject("RE: AW: re[2]: Anfrage") == "Re: Anfrage"
    assert reply_subject("") == reply_subject(None) == "Re: your message"
    injected = "Anfrage\r\nBcc: victim@example.com"
    assert reply_subject(injected) == "Re: Anfrage Bcc: victim@example.com"


async def test_a_mail_reply_threads_onto_the_customers_mail_and_their_answer_comes_back(
    world: Any, smtpd: Smtpd
) -> None:
    w = await mail_world(world, smtpd.port)
    first = customer_mail(ANNA, name="Anna Kunde", subject="AW: Anfrage Pflanzkübel",
                          message_id="<q2@kunde.example>", in_reply_to="<q1@kunde.example>",
                          references=["<q1@kunde.example>"], to=OURS,
                          body="Guten Tag,\n\nwas kostet der große Kübel?\n\nAnna")  # fmt: skip
    await deliver(w, first)
    text = "Guten Tag Frau Kunde,\n\nder große Kübel kostet 49 € — Lieferung frei.\n\nRita"
    assert await answer(w, text) == "✉️ Sent to Anna Kunde via E-mail."

    [got] = smtpd.received
    assert smtpd.logins == [(LOGIN, PASSWORD)]
    assert (got.envelope_from, got.recipients) == (OURS, [ANNA])
    msg = got.message
    assert msg["From"] == f"Beispiel Shop <{OURS}>" and msg["To"] == ANNA
    assert msg["Subject"] == "Re: Anfrage Pflanzkübel"
    assert msg["In-Reply-To"] == "<q2@kunde.example>"
    assert msg["References"].split() == ["<q1@kunde.example>", "<q2@kunde.example>"]
    ours = msg["Message-ID"]
    assert ours.startswith("<") and ours.endswith("@beispiel-shop.de>")
    assert abs((msg["Date"].datetime - datetime.now(UTC)).total_seconds()) < 60
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    body = msg.get_content().replace("\r\n", "\n")  # CRLF on the wire
    assert body.startswith(text + "\n")
    assert f"{ANNA} wrote:\n> Guten Tag,\n>\n> was kostet der große Kübel?" in body

    leads, total = await w.crm.leads.page(ListFilter())
    assert total == 1
    lead = leads[0]
    acts = await w.crm.activities.of_record("lead", lead.id)
    [out] = [a for a in acts if a.direction == "outgoing"]
    assert (out.kind, out.channel, out.subject, out.body, out.counterparty) == (
        "email", "email", "Re: Anfrage Pflanzkübel", text, ANNA,
    )  # fmt: skip
    assert out.meta["message_id"] == ours and out.meta["mailbox"] == "sales"

    # Anna answers from her other address, and her mail program sends In-Reply-To only:
    # the answer's Message-ID alone takes it to the same lead.
    back = customer_mail("a.kunde@privat.example", name="Anna K.", in_reply_to=ours, to=OURS,
                         subject="Re: Anfrage Pflanzkübel", body="Ich nehme zwei.")  # fmt: skip
    await deliver(w, back)
    news = await w.card(RITA)
    assert news["text"].startswith(f"✉️ New e-mail on lead #{lead.id}")
    assert f"reply in the thread of lead #{lead.id}" in news["text"]
    await w.settle()
    assert (await w.crm.leads.page(ListFilter()))[1] == 1
    acts = await w.crm.activities.of_record("lead", lead.id)
    assert [(a.direction, a.body) for a in acts if a.kind == "email"][-1] == (
        "incoming",
        "Ich nehme zwei.",
    )


async def test_a_refused_recipient_or_a_dead_server_is_told_and_nothing_is_recorded(
    world: Any, smtpd: Smtpd
) -> None:
    smtpd.refuse.add(ANNA)
    w = await mail_world(world, smtpd.port)
    await deliver(w, customer_mail(ANNA, name="Anna Kunde", to=OURS))
    told = await answer(w, "Gern!")
    assert "refused anna@kunde.example" in told and "User unknown" in told
    assert "nothing was sent" in told
    assert smtpd.received == []
    leads, _ = await w.crm.leads.page(ListFilter())
    acts = await w.crm.activities.of_record("lead", leads[0].id)
    assert [a for a in acts if a.direction == "outgoing"] == []


async def test_an_unreachable_mail_server_is_told(world: Any) -> None:
    w = await mail_world(world, free_port())  # nothing listens there
    await deliver(w, customer_mail(ANNA, name="Anna Kunde", to=OURS))
    told = await answer(w, "Gern!")
    assert "did not take the mail" in told and "may or may not have been sent" in told


async def test_doctor_logs_in_to_the_smtp_server_and_names_what_to_fix(smtpd: Smtpd) -> None:
    def box(port: int, password: str) -> MailboxSettings:
        return MailboxSettings.model_validate(
            mail_sections(port)["mailboxes"][0] | {"smtp": {
                "host": "127.0.0.1", "port": port, "security": "none", "user": LOGIN,
                "password": password, "from_address": OURS, "timeout": 5}}
        )  # fmt: skip

    ok, detail = await check_smtp(box(smtpd.port, PASSWORD))
    assert ok and detail == f"{LOGIN}@127.0.0.1:{smtpd.port} logged in; replies go out from {OURS}"
    ok, detail = await check_smtp(box(smtpd.port, "wrong"))
    assert not ok and "check smtp host, port, security, user and password" in detail
    ok, detail = await check_smtp(box(free_port(), PASSWORD))
    assert not ok and detail.startswith(f"{LOGIN}@127.0.0.1:")
    assert smtpd.received == []
