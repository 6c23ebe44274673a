"""Channel health for admins: webhook sources' last accepted and refused requests, dead
letters with retry, and the effective settings with every secret masked."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy
from pydantic import BaseModel

from channels.webform.routes import forms_component
from crm.dto import SYSTEM, Actor
from crm.errors import Forbidden, NotFound
from crm.facade import Crm
from crm.models import KeyValue
from crm.queue import RawInput
from crm.services.health import ACCEPTED_EVERY, HOOK_PREFIX, WebhookHealth
from crm.services.listing import ListFilter
from leadbot.app import Service
from leadbot.settings import Settings, effective
from matching.event import Channel
from tests.conftest import make_event
from tests.mail.support import eventually

ADMIN = Actor(None, "admin")


async def _post(service: Service, key: str, data: dict[str, str]) -> int:
    url = f"http://127.0.0.1:{service.port}/forms/{key}"
    async with aiohttp.ClientSession() as http, http.post(url, data=data) as r:
        return r.status


async def test_a_refused_webhook_shows_its_reason_and_an_accepted_one_its_time(
    start_service: Any,
) -> None:
    service: Service = await start_service(components=[forms_component], forms=[{"key": "web"}])
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    assert await _post(service, "web", {"name": "Ann", "phone": "030 1234567"}) < 400
    between = datetime.now(UTC)
    assert await _post(service, "nope", {"name": "Ann", "phone": "030 1234567"}) == 404
    after = datetime.now(UTC) + timedelta(milliseconds=1)
    hooks = {h.source: h for h in await service.crm.health.webhooks(ADMIN)}
    web = hooks["/forms/{form_key}"]
    assert web.last_accepted is not None and web.last_refused is not None
    # The times of the requests, in UTC (noted as clock readings, written as datetimes).
    assert before <= web.last_accepted <= between <= web.last_refused <= after
    assert web.last_accepted.utcoffset() == web.last_refused.utcoffset() == timedelta(0)
    assert web.refused_status == 404 and "form" in (web.refused_reason or "")
    assert "/healthz" not in hooks  # only the channels' webhooks are sources
    with pytest.raises(Forbidden):
        await service.crm.health.webhooks(Actor(1, "supervisor"))


async def test_a_flood_of_refusals_is_written_once_a_second_not_per_request(
    start_service: Any,
) -> None:
    service: Service = await start_service(components=[forms_component], forms=[{"key": "web"}])
    writes: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT INTO STATE", "UPDATE STATE")):
            writes.append(statement)

    sqlalchemy.event.listen(service.db.engine.sync_engine, "before_cursor_execute", seen)
    statuses = await asyncio.gather(*(_post(service, f"x{i}", {}) for i in range(50)))
    assert set(statuses) == {404}
    await asyncio.sleep(2.5)
    sqlalchemy.event.remove(service.db.engine.sync_engine, "before_cursor_execute", seen)
    assert 1 <= len(writes) <= 3, writes  # a write per second with news, not 50


async def test_a_dead_letter_is_listed_with_its_reason_and_retried(
    tmp_path: Path, start_service: Any
) -> None:
    service: Service = await start_service(
        queue={"journal_dir": str(tmp_path / "journal"), "max_failures": 2, "retry_delay": 0.05}
    )
    await service.submit_raw(
        Channel.CALL, RawInput("test.kind", 1.0, {"id": "1", "phone": "+49 30 7770001"})
    )
    letters = await eventually(
        lambda: service.crm.health.dead_letters(ADMIN), timeout=20, what="a dead letter"
    )
    assert len(letters) == 1 and "no converter for 'test.kind'" in letters[0].reason
    assert letters[0].failures == 2 and letters[0].readable
    service.converters["test.kind"] = lambda raw: make_event(
        external_id=f"k-{raw.doc['id']}", phones=(raw.doc["phone"],)
    )
    with pytest.raises(Forbidden):
        await service.crm.health.retry_dead_letter(letters[0].id, Actor(7, "rep"))
    await service.crm.health.retry_dead_letter(letters[0].id, SYSTEM)

    async def leads() -> list[Any]:
        return (await service.crm.leads.page(ListFilter()))[0]

    made = await eventually(leads, timeout=20, what="the retried event's lead")
    assert len(made) == 1 and "7770001" in made[0].title
    assert await service.crm.health.dead_letters(ADMIN) == []
    with pytest.raises(NotFound):
        await service.crm.health.retry_dead_letter(letters[0].id, ADMIN)


def _secret_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every SecretStr field of the settings, as dotted paths (lists by their model)."""
    found: set[str] = set()
    for name, info in model.model_fields.items():
        text = repr(info.annotation)
        if "SecretStr" in text:
            found.add(prefix + name)
        ann = info.annotation
        for candidate in (*getattr(ann, "__args__", ()), ann):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found |= _secret_fields(candidate, f"{prefix}{name}.")
    return found


def test_no_secret_appears_in_the_effective_settings(tmp_path: Path) -> None:
    password_file = tmp_path / "mail-password"
    password_file.write_text("MARKER-mailfile\n")
    settings = Settings(
        database={"url": "postgresql+asyncpg://leadbot:MARKER-dsn@db.example:5432/leadbot"},
        redis={"url": "redis://:MARKER-redis@cache.example:6379/2"},
        telegram={
            "token": "123456:MARKER-telegram-token-aaaaaaaaaaaaaaaaaaaa",
            "webhook_secret": "MARKER-tg-webhook",
            "customer_token": "654321:MARKER-customer-token-bbbbbbbbbbbbbbbbbbb",
            "webhook_url": "https://bot.example/hooks/telegram?secret=MARKER-in-url",
        },
        phone={
            "webhook_secret": "MARKER-phone-webhook",
            "twilio_auth_token": "MARKER-twilio",
            "bitrix_token": "MARKER-bitrix",
            "lookup_token": "MARKER-lookup",
        },
        whatsapp={
            "verify_token": "MARKER-wa-verify",
            "app_secret": "MARKER-wa-app",
            "access_token": "MARKER-wa-access",
        },
        sms={"account_sid": "AC123", "auth_token": "MARKER-sms"},
        mailboxes=[
            {
                "name": "a",
                "host": "imap.example",
                "user": "u",
                "password": "MARKER-mail",
                "smtp": {
                    "host": "smtp.example",
                    "password": "MARKER-smtp",
                    "from_address": "sales@example.com",
                },
            },
            {"name": "b", "host": "imap.example", "user": "u", "password_file": password_file},
        ],
    )
    shown = effective(settings)
    text = json.dumps(shown)
    assert "MARKER" not in text, text
    # What is not secret stays readable; set secrets show as ***.
    assert shown["telegram"]["token"] == "***" and shown["sms"]["account_sid"] == "AC123"
    assert shown["database"]["url"].startswith("postgresql+asyncpg://leadbot:***@db.example")
    assert "cache.example" in shown["redis"]["url"]
    assert shown["mailboxes"][0]["password"] == "***" and shown["phone"]["lookup_token"] == "***"
    # Every SecretStr the settings have was set above (a new secret field joins this test).
    paths = _secret_fields(Settings)
    set_here = {
        "telegram.token", "telegram.webhook_secret", "telegram.customer_token",
        "phone.webhook_secret", "phone.twilio_auth_token", "phone.bitrix_token",
        "phone.lookup_token", "whatsapp.verify_token", "whatsapp.app_secret", "sms.auth_token",
        "whatsapp.access_token", "mailboxes.password", "mailboxes.smtp.password",
    }  # fmt: skip
    assert paths <= set_here, paths - set_here


async def test_a_source_that_only_goes_on_accepting_is_written_every_accepted_every(
    crm: Crm,
) -> None:
    """Under a steady flow of accepted requests a source is written at its first request,
    then once every ACCEPTED_EVERY seconds; a refusal at the next flush; the admin's read
    and the service's stop write all that is noted."""
    health = crm.health
    clock = [1000.0]
    health.clock = lambda: clock[0]
    writes: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT INTO STATE", "UPDATE STATE")):
            writes.append(statement)

    async def stored() -> WebhookHealth:
        async with crm.db.read() as s:
            row = await s.get(KeyValue, HOOK_PREFIX + "/hooks/calls/lookup")
            assert row is not None
            return WebhookHealth.from_json("/hooks/calls/lookup", row.value)

    sqlalchemy.event.listen(crm.db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        health.webhook("/hooks/calls/lookup", 200)
        await health.flush()
        assert len(writes) == 1  # the first request: at once
        first = (await stored()).last_accepted
        for _ in range(5):  # a second apart, each with requests
            clock[0] += 1
            health.webhook("/hooks/calls/lookup", 200)
            await health.flush()
        assert len(writes) == 1 and (await stored()).last_accepted == first
        health.webhook("/hooks/calls/lookup", 401, "unauthorized")
        await health.flush()
        assert len(writes) == 2  # a refusal: at the next flush
        refused = await stored()
        assert refused.refused_status == 401 and refused.last_accepted is not None
        assert first is not None and refused.last_accepted > first  # accepted news went too
        clock[0] += 1
        health.webhook("/hooks/calls/lookup", 200)
        await health.flush()
        assert len(writes) == 2
        clock[0] += ACCEPTED_EVERY
        await health.flush()
        assert len(writes) == 3
        later = (await stored()).last_accepted
        health.webhook("/hooks/calls/lookup", 200)
        [shown] = await health.webhooks(ADMIN)  # the admin's read: everything first
        assert len(writes) == 4 and shown.last_accepted is not None
        assert later is not None and shown.last_accepted > later
        await health.flush()
        assert len(writes) == 4  # nothing left to write
    finally:
        sqlalchemy.event.remove(crm.db.engine.sync_engine, "before_cursor_execute", seen)
