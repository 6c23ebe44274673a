"""💬 Reply follows the customer: one person writes on Telegram, WhatsApp, by SMS and by mail
(each through its real entry point), and after each message the rep's answer goes out through
that channel, and the rep is told which one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from channels.mail.smtp import smtp_component
from channels.sms.routes import sms_component
from channels.whatsapp.routes import whatsapp_component
from crm.services.listing import ListFilter
from tests.bot.conftest import World
from tests.bot.test_mail_replies import OURS, deliver, mail_sections
from tests.bot.test_sms import ACCOUNT, TOKEN, sid, sms_section
from tests.bot.test_sms import OURS as SMS_OURS
from tests.bot.test_sms import incoming as sms_in
from tests.bot.test_sms import post as sms_post
from tests.bot.test_whatsapp_replies import ACCESS, PNID, wa_section
from tests.bot.test_whatsapp_replies import incoming as wa_in
from tests.fakes.smtp_server import Smtpd, running_smtpd
from tests.fakes.twilio_rest import FakeTwilioRest
from tests.fakes.whatsapp_cloud import FakeCloudApi
from tests.mail.support import customer_mail

RITA = 1001
ANNA_TG = 5001
PHONE = "+491711234567"


@pytest.fixture
def smtpd() -> Iterator[Smtpd]:
    with running_smtpd() as server:
        yield server


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilioRest]:
    async with FakeTwilioRest(ACCOUNT, TOKEN) as server:
        yield server


@pytest.fixture
async def cloud() -> AsyncIterator[FakeCloudApi]:
    async with FakeCloudApi(PNID, ACCESS) as server:
        yield server


async def reply(w: World, label: str, text: str) -> str:
    """Press 💬 Reply on the newest card, check the prompt names `label`, send `text`."""
    return await w.reply(RITA, "Anna", label, text)


async def test_the_reply_goes_through_the_channel_of_the_latest_message(
    world: Any, cloud: FakeCloudApi, twilio: FakeTwilioRest, smtpd: Smtpd
) -> None:
    w: World = await world(
        extra=[whatsapp_component, sms_component, smtp_component],
        whatsapp=wa_section(cloud), sms=sms_section(twilio), **mail_sections(smtpd.port),
    )  # fmt: skip
    await w.rep("Rita", RITA)

    # Telegram, with the phone shared: a new lead.
    w.tg.user(ANNA_TG, "Anna", "anna_k")
    w.tg.user_message(ANNA_TG, "Hallo, was kostet der Kübel?")
    w.tg.shared_contact(ANNA_TG, PHONE.lstrip("+"), contact_user_id=ANNA_TG)
    await w.new_messages(ANNA_TG, 2)  # the phone question, then the thanks
    assert await reply(w, "Telegram", "49 €.") == "✉️ Sent to Anna via Telegram."
    assert (await w.new_messages(ANNA_TG))[0]["text"] == "49 €."

    # WhatsApp from that number: the same lead, answered on WhatsApp.
    await wa_in(w, "wamid.X1", "Und in Blau?", wa_id=PHONE.lstrip("+"))
    assert await reply(w, "WhatsApp", "Auch in Blau.") == "✉️ Sent to Anna via WhatsApp."
    assert [s.body["text"]["body"] for s in cloud.sent] == ["Auch in Blau."]

    # An SMS from it: by SMS.
    assert (await sms_post(w, sms_in(sid(9), PHONE, "Lieferzeit?")))[0] == 200
    assert await reply(w, "SMS", "Zwei Tage.") == "✉️ Sent to Anna via SMS."
    assert [(s.form["To"], s.form["Body"]) for s in twilio.sent] == [(PHONE, "Zwei Tage.")]
    assert twilio.sent[0].form["From"] == SMS_OURS

    # A mail signed with that number: by mail.
    mail = customer_mail("anna@kunde.example", name="Anna", to=OURS, subject="Bestellung",
                         body="Ich bestelle zwei.\n\nAnna\nTel. +49 171 1234567")  # fmt: skip
    await deliver(w, mail)
    assert await reply(w, "E-mail", "Danke!") == "✉️ Sent to Anna via E-mail."
    [got] = smtpd.received
    assert got.recipients == ["anna@kunde.example"] and got.message["Subject"] == "Re: Bestellung"

    leads, total = await w.crm.leads.page(ListFilter())
    assert total == 1
    acts = await w.crm.activities.of_record("lead", leads[0].id)
    assert [(a.channel, a.kind) for a in acts if a.direction == "outgoing"] == [
        ("telegram", "message"), ("whatsapp", "message"), ("sms", "message"), ("email", "email"),
    ]  # fmt: skip
