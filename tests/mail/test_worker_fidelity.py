"""Through real IMAP: odd senders, robots without markers, mislabelled charsets, broken MIME."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from channels.mail.mailbox import QUARANTINE_KEYWORD

from . import handmade
from .dovecot import Dovecot
from .support import count_is, events, eventually, leads, uids_in, watching, worker_of

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["sqlite"])]

Start = Callable[..., Awaitable[Any]]


def _row(table: list[Any], name: str) -> bytes:
    """The mail of row `name`, with a Message-ID of its own."""
    raw: bytes = next(row[1] for row in table if row[0] == name)
    return raw.replace(b"<handmade@example.org>", f"<{name}@example.org>".encode())


async def _activities(service: Any, lead_id: int) -> list[tuple[str | None, str | None]]:
    acts = await service.crm.activities.of_record("lead", lead_id)
    return [(a.subject, a.body) for a in acts if a.kind == "email"]


async def test_a_sender_no_one_can_answer_is_quarantined_never_processed(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot, processed_folder="Processed")
    await dovecot.append(_row(handmade.GARBLED_FROM, "name-only-utf8"))
    await dovecot.append(_row(handmade.ADDRESSES, "name-only-with-reply-to"))
    await dovecot.append(_row(handmade.ADDRESSES, "address-as-name"))

    await eventually(lambda: count_is(service, 2), what="the two answerable mails")
    await eventually(lambda: uids_in(dovecot, "Leadbot-Quarantine"), what="the quarantine")
    [uid] = await dovecot.uids("Leadbot-Quarantine")
    assert QUARANTINE_KEYWORD in await dovecot.flags("Leadbot-Quarantine", uid)
    assert len(await dovecot.uids("Processed")) == 2
    assert worker_of(service).stats.quarantined == 1
    # Keyed on the address a reply would go to; an address shown as the name is no name.
    by_email = {tuple(e.payload["emails"]): e.payload for e in await events(service.db)}
    assert by_email[("sergej@example.ru",)]["display_name"] == "Сергей Обухов"
    assert by_email[("bob@example.com",)]["display_name"] is None
    assert sorted(lead.name or "" for lead in await leads(service.db)) == ["", "Сергей Обухов"]


async def test_bounces_and_list_mail_without_markers_stay_unread_with_their_reason(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot, processed_folder="Processed")
    bounce = await dovecot.append(_row(handmade.BOUNCES, "gmail-style-name"))
    listed = await dovecot.append(_row(handmade.LISTS, "request-address"))
    await dovecot.append(_row(handmade.CUSTOMERS, "request-in-local-part"))

    await eventually(lambda: count_is(service, 3), what="three mails in the event log")
    reasons = {e.payload["meta"]["from"]: (e.outcome, e.reason) for e in await events(service.db)}
    assert reasons["notifications@mx.provider.example"][0] == "ignored"
    assert (
        "bounce: sent by 'Mail Delivery Subsystem'"
        in reasons["notifications@mx.provider.example"][1]
    )
    assert "mailing list: sent by list address" in reasons["handwerk-request@lists.example.org"][1]
    assert reasons["anfrage.request@kunde.example"][0] == "new_lead"
    assert len(await leads(service.db)) == 1
    # The robots' mail is a human's business: unread, where it arrived.
    await eventually(lambda: uids_in(dovecot, "Processed"), what="the customer's mail moved")
    assert sorted(await dovecot.uids("INBOX")) == sorted([bounce, listed])
    for uid in (bounce, listed):
        assert "\\Seen" not in await dovecot.flags("INBOX", uid)


async def test_mislabelled_and_damaged_text_reaches_the_rep_readable(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    await dovecot.append(_row(handmade.CHARSETS, "gb2312-holding-gbk"))
    await dovecot.append(_row(handmade.CHARSETS, "utf8-one-bad-byte"))
    await dovecot.append(handmade.KOI8_HEADERS)

    await eventually(lambda: count_is(service, 3), what="three leads")
    seen = []
    for lead in await leads(service.db):
        seen += await _activities(service, lead.id)
        seen.append((lead.name, None))
    texts = " ".join(f"{a} {b}" for a, b in seen)
    assert "朱镕基先生：请报价" in texts
    assert "Здравствуйте, пришли\ufffdте, пожалуйста" in texts
    assert "заказ компрессоров" in texts and "иван петров" in texts


async def test_broken_mime_is_read_as_clients_read_it_and_attached_mail_has_its_size(
    start_service: Start, dovecot: Dovecot
) -> None:
    service = await watching(start_service, dovecot)
    await dovecot.append(handmade.NO_BOUNDARY_TEXT.replace(b"<handmade@", b"<no-boundary@"))
    await dovecot.append(handmade.FORWARDED.replace(b"<handmade@", b"<forwarded@"))

    await eventually(lambda: count_is(service, 2), what="both mails")
    payloads = {e.external_id: e.payload for e in await events(service.db)}
    assert payloads["<no-boundary@example.org>"]["text"].startswith("Guten Tag,\nbitte rufen")
    [attached] = payloads["<forwarded@example.org>"]["attachments"]
    assert attached["name"] == "anfrage.eml"
    assert attached["size"] == len(handmade.FORWARDED_INNER)
    assert await uids_in(dovecot, "Leadbot-Quarantine") == []
