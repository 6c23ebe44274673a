"""What reps see in the CRM after mail arrives: leads, activities, threads, filters, queues."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from channels.mail.component import mail_component
from crm.services.mailstate import MailState

from .dovecot import Dovecot
from .samples import raw
from .support import (
    count_is,
    customer_mail,
    events,
    eventually,
    leads,
    mailbox,
    message_id,
    seen,
    watching,
    worker_of,
)

pytestmark = pytest.mark.slow

Start = Callable[..., Awaitable[Any]]


async def _email_activities(service: Any, lead_id: int) -> list[str]:
    acts = await service.crm.activities.of_record("lead", lead_id)
    return [a.subject for a in acts if a.kind == "email"]


async def test_second_mail_from_the_same_address_joins_the_open_lead(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    await dovecot.append(customer_mail("anna@gartenbau.example", subject="Anfrage Kübel"))
    await eventually(lambda: count_is(service, 1), what="the first mail")
    await dovecot.append(customer_mail("Anna@Gartenbau.example", subject="Noch eine Frage"))
    await eventually(lambda: count_is(service, 2), what="the second mail")

    [lead] = await leads(service.db)
    assert lead.status_semantic == "process"
    assert await _email_activities(service, lead.id) == ["Anfrage Kübel", "Noch eine Frage"]
    assert [e.outcome for e in await events(service.db)] == ["new_lead", "attached_lead"]


async def test_reply_from_a_colleague_follows_the_thread(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    first = customer_mail("anna@gartenbau.example", subject="Angebot Terrassenplatten")
    await dovecot.append(first)
    await eventually(lambda: count_is(service, 1), what="the first mail")
    # Our rep answered from his own mail client (not seen here); a colleague of Anna replies.
    reply = customer_mail(
        "bernd.koch@other-domain.example",
        subject="Re: Angebot Terrassenplatten",
        in_reply_to="<our-answer-1@beispiel-shop.de>",
        references=[message_id(first), "<our-answer-1@beispiel-shop.de>"],
    )
    await dovecot.append(reply)
    await eventually(lambda: count_is(service, 2), what="the reply")

    [lead] = await leads(service.db)
    assert len(await _email_activities(service, lead.id)) == 2
    assert (await events(service.db))[1].lead_id == lead.id


async def test_new_leads_go_to_the_mailbox_queue(start_service: Start, dovecot: Dovecot) -> None:
    service = await watching(start_service, dovecot)
    await service.crm.reps.add("Other rep")
    queued = await service.crm.reps.add("Mail rep")
    await service.stop()  # restart with the rep in this mailbox's queue
    service = await watching(start_service, dovecot, queue=[queued.id])
    await dovecot.append(customer_mail("neu@kunde.example"))

    [lead] = await eventually(lambda: leads(service.db), what="the lead")
    assert lead.responsible_id == queued.id


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_mail_from_a_rep_is_ignored_and_left_unread(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    await service.crm.reps.add("Max", email="Max.Vertrieb@beispiel-shop.de")
    rep_uid = await dovecot.append(customer_mail("max.vertrieb@beispiel-shop.de"))
    await dovecot.append(raw("dsn_bounce.eml"))
    await dovecot.append(raw("auto_submitted.eml"))
    await dovecot.append(customer_mail("kunde@example.org"))

    await eventually(lambda: leads(service.db), what="the customer's lead")
    logged = await events(service.db)
    assert len(await leads(service.db)) == 1
    assert [e.payload["emails"] for e in logged if e.outcome != "ignored"] == [
        ["kunde@example.org"]
    ]
    # The three robots' and the rep's mails are in the event log, each with why.
    ignored = [e for e in logged if e.outcome == "ignored"]
    assert len(ignored) == 3 and all(e.reason.endswith("→ ignored") for e in ignored)
    assert worker_of(service).stats.ignored == 3
    # Ignored mail is a human's business: no \Seen, not moved.
    assert "\\Seen" not in await dovecot.flags("INBOX", rep_uid)


async def test_more_mails_an_hour_than_the_limit_only_attach(
    start_service: Start, dovecot: Dovecot
) -> None:
    robot = "wordpress@beispiel-shop.de"
    service = await watching(start_service, dovecot, robot_senders=[robot], rate_limit_per_hour=2)
    for n in range(4):  # a web-form robot: every mail would be a new lead
        form = customer_mail(
            robot,
            reply_to="Lukas Richter <lukas.richter@example.org>",
            subject=f"Neue Kontaktanfrage {n}",
            body="Von: Lukas Richter\nNachricht: Haben Sie die Lounge-Gruppe noch?",
        )
        await dovecot.append(form)
        await eventually(lambda n=n: count_is(service, n + 1), what=f"form mail {n}")

    logged = await events(service.db)
    assert [e.outcome for e in logged] == [
        "new_lead",
        "new_lead",
        "attached_lead",
        "attached_lead",
    ]
    assert [e.payload["register_mode"] for e in logged[2:]] == ["only_update"] * 2
    assert len(await leads(service.db)) == 2


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_mail_from_an_excepted_sender_is_logged_but_never_a_lead(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    await service.crm.exceptions.add("partner@lieferant.example", "supplier, not a customer")
    uid = await dovecot.append(customer_mail("Partner@Lieferant.example"))

    [logged] = await eventually(lambda: events(service.db), what="the event")
    assert logged.outcome == "ignored" and await leads(service.db) == []
    # Committed through intake (visible in the event log), so it counts as handled.
    await eventually(lambda: seen(dovecot, uid), what="flagged read")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_several_mailboxes_each_with_folder_region_queue_and_secret(
    start_service: Start,
    dovecot: Dovecot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await dovecot.create_folder("Support")
    secret = tmp_path / "imap.pw"
    secret.write_text(dovecot.password + "\n")
    monkeypatch.setenv("LEADBOT_TEST_SUPPORT_PW", dovecot.password)
    service = await start_service(components=[], mailboxes=[])  # only to create the reps
    sales_rep = await service.crm.reps.add("Sales rep")
    support_rep = await service.crm.reps.add("Support rep")
    await service.stop()
    service = await start_service(
        components=[mail_component],
        mailboxes=[
            mailbox(dovecot, password=None, password_file=str(secret), queue=[sales_rep.id]),
            mailbox(
                dovecot,
                name="support",
                folder="Support",
                region="AT",
                password=None,
                password_env="LEADBOT_TEST_SUPPORT_PW",
                queue=[support_rep.id],
            ),
        ],
    )
    await dovecot.append(customer_mail("kaeufer@example.de"))
    await dovecot.append(customer_mail("frage@example.at"), folder="Support")

    await eventually(lambda: count_is(service, 2), what="a mail from each mailbox")
    by_line = {e.payload["line"]: e for e in await events(service.db)}
    assert by_line["sales"].payload["emails"] == ["kaeufer@example.de"]
    assert by_line["support"].payload["emails"] == ["frage@example.at"]
    assert by_line["support"].payload["phone_region"] == "AT"
    assert by_line["sales"].payload["phone_region"] == "DE"  # crm.default_region
    owners = {lead.id: lead.responsible_id for lead in await leads(service.db)}
    assert owners[by_line["sales"].lead_id] == sales_rep.id
    assert owners[by_line["support"].lead_id] == support_rep.id
    state = MailState(service.db)
    assert [(await state.load(n)) is not None for n in ("sales", "support")] == [True, True]
