"""A mailbox that cannot log in makes /readyz 503 (per-check JSON) and
leadbot_mailbox_connected 0, and shows its last error in channel health; one that logs in is
ready and 1, and shows its last sync."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from channels.mail.component import mail_component
from crm.dto import Actor

from .dovecot import Dovecot
from .support import eventually, mailbox


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.text()


async def _ready(port: int) -> Any:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as r:
        return r.status, await r.json()


async def test_wrong_password_makes_readyz_503_and_the_gauge_0(
    start_service: Any, dovecot: Dovecot
) -> None:
    service = await start_service(
        components=[mail_component],
        mailboxes=[
            mailbox(dovecot, name="sales"),
            mailbox(dovecot, name="support", password="wrong-password"),
        ],
    )

    async def refused() -> Any:
        status, body = await _ready(service.port)
        check = body["checks"]["mailbox:support"]
        return (status, body) if check["logged_in"] is False else None

    async def logged_in() -> bool:
        _, body = await _ready(service.port)
        return bool(body["checks"]["mailbox:sales"]["logged_in"])

    status, body = await eventually(refused, timeout=20, what="a refused login")
    await eventually(logged_in, timeout=20, what="the good mailbox logged in")
    status, body = await _ready(service.port)
    assert status == 503 and body["status"] == "unavailable"
    bad = body["checks"]["mailbox:support"]
    assert bad["ok"] is False and "refused" in bad["error"] and bad["since"] > 0
    assert "wrong-password" not in str(body)
    good = body["checks"]["mailbox:sales"]
    assert good["ok"] is True and good["error"] is None
    # The refused one never read its folder; the good one has, moments ago.
    assert bad["last_sync_age"] is None

    async def synced() -> bool:
        _, body = await _ready(service.port)
        age = body["checks"]["mailbox:sales"]["last_sync_age"]
        return age is not None and 0 <= age < 30

    await eventually(synced, timeout=20, what="the good mailbox read to its end")
    _, metrics = await _get(service.port, "/metrics")
    assert 'leadbot_mailbox_connected{mailbox="support"} 0.0' in metrics
    assert 'leadbot_mailbox_connected{mailbox="sales"} 1.0' in metrics
    found = re.search(r'leadbot_mailbox_last_sync_age_seconds\{mailbox="sales"\} (\S+)', metrics)
    assert found is not None and 0 <= float(found.group(1)) < 30
    assert 'leadbot_mailbox_last_sync_age_seconds{mailbox="support"}' not in metrics
    # The mailbox worker's own reconnect loop handles the refusal: not a supervised failure.
    tasks = body["checks"]["tasks"]["tasks"]
    assert tasks["mailbox.support"]["state"] == "running"
    assert tasks["mailbox.support"]["restarts"] == 0

    async def health() -> Any:
        boxes = {b.name: b for b in await service.crm.health.mailboxes(Actor(None, "admin"))}
        good, bad = boxes.get("sales"), boxes.get("support")
        return (good, bad) if good and good.last_sync and bad and bad.last_error else None

    good, bad = await eventually(health, timeout=20, what="both mailboxes' channel health")
    assert "refused" in bad.last_error.lower() and bad.last_error_at is not None
    assert bad.last_sync is None and "wrong-password" not in bad.last_error
    assert good.last_error is None
