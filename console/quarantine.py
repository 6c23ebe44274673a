"""The quarantine page (/app/quarantine): mail the spam filter moved to each mailbox's spam
folder, with the reason, and a Release button that does what `leadbot mail release` does.

Supervisors and admins; the crm service (`crm.services.quarantine`) refuses everyone else, so
the page does not check roles itself. A mailbox whose server cannot be reached, or does not
answer within `console.quarantine_timeout`, shows that in its own section beside the others; a
failed release comes back to the page as a message, never as a server error.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from aiohttp import web

from console.web import (
    PREFIX,
    Context,
    Refused,
    crm_of,
    current_actor,
    flash,
    page,
    page_number,
    redirect,
)
from crm.dto import Actor
from crm.errors import NotFound
from crm.services.quarantine import PAGE_SIZE, MailboxUnavailable, Quarantine
from httpkit import read_form

log = logging.getLogger(__name__)

QUARANTINE = f"{PREFIX}/quarantine"


async def _section(quarantine: Quarantine, mailbox: str, actor: Actor, number: int) -> Context:
    try:
        held = await quarantine.held(
            mailbox, actor, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
    except MailboxUnavailable as exc:
        return {"name": mailbox, "held": None, "error": str(exc), "page": number, "more": False}
    except Exception:
        # Whatever one mailbox's answer did (a mail no parser expected), the other mailboxes
        # are still listed: the page never fails for one of them.
        log.exception("quarantine page: mailbox %s could not be listed", mailbox)
        error = f"mailbox {mailbox}: an unexpected error (logged)"
        return {"name": mailbox, "held": None, "error": error, "page": number, "more": False}
    more = number * PAGE_SIZE < held.total
    return {"name": mailbox, "held": held, "error": None, "page": number, "more": more}


@page("quarantine.html")
async def quarantine(request: web.Request) -> Context:
    """Each mailbox's newest held mail; `?mailbox=NAME&page=N` pages through one of them."""
    actor = current_actor(request)
    service = crm_of(request).quarantine
    names = service.mailboxes(actor)
    only = request.query.get("mailbox")
    if only is not None and only not in names:
        raise Refused(404, f"no mailbox {only[:100]!r} is configured")
    number = page_number(request) if only else 1
    shown = [only] if only else names
    sections = await asyncio.gather(*(_section(service, n, actor, number) for n in shown))
    return {"title": "Quarantine", "sections": sections, "single": only is not None}


@page("quarantine.html")
async def release(request: web.Request) -> web.StreamResponse:
    """The Release button: the mailbox and the UID come as form fields (a mailbox's name may
    hold any character, a `/` too), with the folder's UIDVALIDITY the page was read under."""
    form = await read_form(request)
    mailbox, raw_uid, validity = (form.get(k, "") for k in ("mailbox", "uid", "uidvalidity"))
    if not isinstance(mailbox, str) or not isinstance(raw_uid, str) or not raw_uid.isdigit():
        raise Refused(422, "name a mailbox and the UID of a mail in its spam folder")
    response = redirect(f"{QUARANTINE}?mailbox={quote(mailbox, safe='')}")
    try:
        folder = await crm_of(request).quarantine.release(
            mailbox,
            int(raw_uid),
            current_actor(request),
            uidvalidity=int(validity) if isinstance(validity, str) and validity.isdigit() else None,
        )
    except (NotFound, MailboxUnavailable) as exc:
        flash(response, f"Not released: {exc}", error=True)
        return response
    flash(
        response,
        f"Released UID {raw_uid} of {mailbox}: it is back in {folder}, where Leadbot takes it "
        "as new mail.",
    )
    return response


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get(QUARANTINE, quarantine, allow_head=False),
        web.post(f"{QUARANTINE}/release", release),
    ]
