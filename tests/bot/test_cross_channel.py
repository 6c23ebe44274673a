"""The issue's acceptance scenario over the real entry points, on SQLite and PostgreSQL: one
person calls (signed phone webhook), then writes on Telegram and shares that same phone (fake
Bot API), then fills in the web form with their e-mail. It all ends up on one record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from channels.phone.component import phone_component
from channels.webform.routes import forms_component
from crm.dto import SYSTEM
from crm.services.listing import ListFilter
from tests.bot.conftest import PHONE_SECRET, World

RITA = 1001
ANNA = 5001


@pytest.mark.parametrize("mode", ["classic", "simple"])
async def test_call_then_telegram_then_web_form_is_one_person(world: Any, mode: str) -> None:
    w: World = await world(
        extra=[phone_component, forms_component],
        phone={"webhook_secret": PHONE_SECRET},
        forms=[{"key": "contact"}],
    )
    await w.rep("Rita", RITA)
    await w.crm.settings.update(SYSTEM, crm_mode=mode)
    await w.missed_call("CA-77", "+49 30 1234567", caller_name="Anna Schulz")
    assert "Missed call" in (await w.card(RITA))["text"]

    w.tg.user(ANNA, "Anna", "anna_s")
    w.tg.user_message(ANNA, "Hallo, ich hatte angerufen. Rufen Sie mich zurück?")
    # Telegram gives the account's number without "+"; it is still a German number.
    w.tg.shared_contact(ANNA, "49301234567", contact_user_id=ANNA)
    await w.new_messages(ANNA, 2)  # the phone question, then the thanks
    news = await w.card(RITA)
    assert news["text"].startswith("💬 New message on ")
    assert "Rufen Sie mich zurück?" in news["text"] and "telegram @anna_s" in news["text"]

    form = {"name": "Anna Schulz", "phone": "030 1234567", "email": "anna@example.com",
            "message": "Bitte Angebot per E-Mail."}  # fmt: skip
    headers = {"Content-Type": "application/json"}
    assert await w.post("/forms/contact", json.dumps(form).encode(), headers) == 202
    await w.card(RITA)
    await w.settle()

    contacts, contact_total = await w.crm.records.list_contacts()
    leads, lead_total = await w.crm.leads.page(ListFilter())
    deals, deal_total = await w.crm.deals.page(ListFilter())
    if mode == "classic":
        assert (lead_total, deal_total, contact_total) == (1, 0, 0)
        owner, comms = ("lead", leads[0].id), leads[0].comms
    else:
        assert (lead_total, deal_total, contact_total) == (0, 1, 1)
        assert deals[0].contact_id == contacts[0].id
        owner, comms = ("contact", contacts[0].id), contacts[0].comms
    assert {(c.kind, c.value) for c in comms} == {
        ("phone", "+49301234567"),
        ("telegram", str(ANNA)),
        ("email", "anna@example.com"),
    }
    acts = await w.crm.activities.of_record(*owner)
    inbound = [(a.kind, a.channel) for a in acts if a.direction == "incoming"]
    assert inbound == [("call", "call"), ("message", "telegram"), ("webform", "webform")]
