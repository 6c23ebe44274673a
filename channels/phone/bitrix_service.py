"""Bitrix24-compatible telephony REST over HTTP: `/rest/<user>/<token>/<method>[.json]` for
`telephony.externalcall.register`, `.finish` and `.searchCrmEntities`.

The replies carry what intake did (the lead a call created, its activity), so register and
finish run intake synchronously (`process_now`) instead of queueing. Registrations live in the
`ExternalCall` table: a repeated register within 30 minutes returns the same CALL_ID and the
same reply, and a repeated finish returns the first finish's reply.

Mapping: USER_ID is our rep id, USER_PHONE_INNER a rep's extension. A new lead from a call goes
to that rep (Bitrix24 assigns it to the call's user). CRM_CREATE is accepted but, like
Bitrix24's default telephony setting, an incoming call from an unknown number always creates a
lead and an outgoing call never does; CRM_ENTITY_TYPE / _ID are validated, the matcher binds.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from channels.phone.bitrix import (
    FINISH,
    REGISTER,
    REGISTER_PARAMS,
    BitrixError,
    EntityHit,
    RegisterRequest,
    Timing,
    bitrix_error,
    bitrix_result,
    finish_report,
    finish_result,
    parse_bitrix_params,
    parse_finish,
    parse_register,
    parse_search,
    register_key,
    register_report,
    register_result,
    resolve_method,
    search_result,
)
from channels.phone.context import PhoneContext
from crm.dto import IntakeResult
from crm.services.telephony import RepContact


def _reply(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _error(err: BitrixError) -> web.Response:
    return _reply(bitrix_error(err.code, err.description), err.status)


def _primary(result: IntakeResult) -> tuple[str, int] | None:
    """The call's primary CRM entity as Bitrix24 names it: contact, company, else lead."""
    for kind, ident in (
        ("CONTACT", result.contact_id),
        ("COMPANY", result.company_id),
        ("LEAD", result.lead_id),
    ):
        if ident is not None:
            return kind, ident
    return None


class BitrixTelephony:
    def __init__(self, ctx: PhoneContext) -> None:
        self.ctx = ctx

    @property
    def timezone(self) -> tzinfo:
        try:
            return ZoneInfo(self.ctx.host.settings.crm.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return UTC

    async def handle(self, request: web.Request) -> web.Response:
        started = time.time()
        token = self.ctx.settings.bitrix_token
        if token is None:
            return _reply(
                bitrix_error(
                    "ERROR_METHOD_NOT_FOUND",
                    "Bitrix24 telephony REST is not configured: set phone.bitrix_token",
                ),
                404,
            )
        given = request.match_info["token"].encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, token.get_secret_value().encode()):
            return _reply(bitrix_error("INVALID_CREDENTIALS", "Invalid request credentials"), 401)
        try:
            method = resolve_method(request.match_info["method"])
            params = parse_bitrix_params(
                request.rel_url.raw_query_string,
                request.headers.get("Content-Type"),
                await request.read(),
            )
            if method == REGISTER:
                result: Any = await self.register(params, app=request.match_info["user"])
            elif method == FINISH:
                result = await self.finish(params)
            else:
                result = await self.search(params)
        except BitrixError as err:
            return _error(err)
        return _reply(bitrix_result(result, Timing(start=started, finish=time.time())))

    async def _rep(self, user_id: int | None, inner: str | None) -> RepContact:
        """The active rep behind USER_ID, else behind USER_PHONE_INNER (read fresh: a rep
        added a second ago must work)."""
        reps = [r for r in await self.ctx.telephony.reps() if r.active]
        rep = next((r for r in reps if r.id == user_id), None) if user_id else None
        if rep is None and inner:
            rep = next((r for r in reps if (r.extension or "").strip() == inner), None)
        if rep is None:
            raise BitrixError("ERROR_CORE", "User is not found or is not active")
        return rep

    async def register(self, params: dict[str, Any], *, app: str) -> dict[str, Any]:
        request = parse_register(params, tz=self.timezone)
        rep = await self._rep(request.user_id, request.user_phone_inner)
        now = datetime.now(UTC)
        key = register_key(
            rep.id,
            request.phone_number,
            request.type,
            request.line_number,
            request.external_call_id,
            app=app,
        )
        # Only what parse_register reads is kept: finish re-reads the registration from it.
        stored = {k: params[k] for k in REGISTER_PARAMS if k in params}
        stored["USER_ID"] = request.user_id  # as parsed: the raw value may be anything
        registration, _ = await self.ctx.telephony.register(
            key,
            user_id=rep.id,
            phone=request.phone_number,
            call_type=int(request.type),
            request={"params": stored, "started_at": now.isoformat()},
            now=now,
        )
        reply = registration.data.get("register")
        if isinstance(reply, dict):
            return reply  # the same CALL_ID and the same records, however often it is asked
        if request.call_start_date is None:
            request = replace(request, call_start_date=now)
        event = self.ctx.to_event(register_report(request, registration.call_id), rep=rep)
        result = register_result(registration.call_id)
        if event is not None:
            outcome = await self.ctx.host.process_now(event)
            result = register_result(
                registration.call_id,
                created=[(kind.upper(), ident) for kind, ident in outcome.created],
                entity=_primary(outcome),
            )
        return await self.ctx.telephony.remember(
            registration.call_id, "register", result, finished_at=None
        )

    def _registered(self, data: dict[str, Any]) -> RegisterRequest:
        request = parse_register(data.get("params") or {}, tz=self.timezone)
        if request.call_start_date is None and data.get("started_at"):
            started = datetime.fromisoformat(str(data["started_at"]))
            request = replace(request, call_start_date=started)
        return request

    async def finish(self, params: dict[str, Any]) -> dict[str, Any]:
        request = parse_finish(params)
        registration = await self.ctx.telephony.registration(request.call_id)
        if registration is None:
            raise BitrixError("ERROR_CORE", "Call is not found")
        reply = registration.data.get("finish")
        if isinstance(reply, dict):
            return reply  # finishing twice changes nothing
        rep = await self._rep(request.user_id, request.user_phone_inner)
        registered = self._registered(registration.data.get("request") or {})
        now = datetime.now(UTC)
        event = self.ctx.to_event(finish_report(request, registered, ended_at=now), rep=rep)
        activity_id: int | None = None
        entity: tuple[str, int] | None = None
        if event is not None:
            outcome = await self.ctx.host.process_now(event)
            activity_id, entity = outcome.activity_id, _primary(outcome)
        result = finish_result(
            request, registered, user_id=rep.id, activity_id=activity_id, entity=entity
        )
        return await self.ctx.telephony.remember(request.call_id, "finish", result, finished_at=now)

    async def search(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        request = parse_search(params)
        e164 = self.ctx.normalize(request.phone_number)
        if e164 is None:
            return []
        hits = [
            EntityHit(
                entity_type=holder.owner_type.upper(),
                entity_id=holder.owner_id,
                name=holder.name,
                assigned_by_id=holder.responsible.id if holder.responsible else None,
                timeman_status=(
                    "OPENED" if holder.responsible and holder.responsible.active else "CLOSED"
                ),
                user_phone_inner=holder.responsible.extension if holder.responsible else None,
                work_phone=holder.responsible.phone if holder.responsible else None,
            )
            for holder in await self.ctx.telephony.holders(e164)
        ]
        return search_result(hits)
