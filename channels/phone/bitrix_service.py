"""Bitrix24-compatible telephony REST over HTTP: `/rest/<user>/<token>/<method>[.json]` for
the `telephony.externalcall.*` methods (register, finish, searchCrmEntities, show, hide,
attachRecord) and `batch` of them.

The replies carry what intake did (the lead a call created, its activity), so register and
finish run intake synchronously (`process_now`) instead of queueing. Registrations live in the
`ExternalCall` table: a repeated register within 30 minutes returns the same CALL_ID and the
same reply, and a repeated finish returns the first finish's reply.

Mapping: USER_ID is our rep id, USER_PHONE_INNER a rep's extension. A new lead from a call goes
to that rep (Bitrix24 assigns it to the call's user); finish hands the records the call created
to the rep who finished it. Only CRM_CREATE=1 lets a call create records (Bitrix24's default is
0); CRM_ENTITY_TYPE / _ID bind the call to that contact, company or lead instead of matching
the number. The call card Bitrix24 pops up (SHOW, show, hide) is a message from the rep bot.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from channels.phone import recordings
from channels.phone.bitrix import (
    FinishRequest,
    RegisterRequest,
    finish_report,
    parse_attach_record,
    parse_card,
    parse_finish,
    parse_register,
    parse_search,
    register_key,
    register_report,
)
from channels.phone.bitrix_batch import (
    BatchKey,
    parse_batch,
    split_command,
    substitute,
)
from channels.phone.bitrix_fields import Printer
from channels.phone.bitrix_params import (
    ATTACH_RECORD,
    BATCH,
    FINISH,
    HIDE,
    MAX_BODY,
    MAX_RECORDING_BODY,
    REGISTER,
    REGISTER_PARAMS,
    SEARCH,
    SHOW,
    BitrixError,
    invalid_credentials,
    method_not_found,
    parse_bitrix_params,
    resolve_method,
)
from channels.phone.bitrix_replies import (
    EntityHit,
    Listed,
    Timing,
    attach_record_result,
    batch_result,
    bitrix_error,
    bitrix_result,
    call_card,
    command_time,
    finish_result,
    listed_result,
    register_result,
    search_result,
)
from channels.phone.bitrix_rest import user_methods
from channels.phone.context import PhoneContext
from crm.dto import IntakeResult
from crm.errors import InvalidInput
from crm.services.telephony import NumberHolder, RepContact
from httpkit import BadInput, read_body
from matching.event import RegisterMode
from matching.text import clean_json

Method = Callable[[dict[str, Any], str], Awaitable[Any]]


async def _body(request: web.Request, limit: int) -> bytes:
    """The request body, up to `limit` bytes (the app's own cap is for ordinary requests)."""
    try:
        return await read_body(request, limit)
    except BadInput as err:  # too large: in Bitrix24's words
        raise BitrixError("INVALID_REQUEST", f"request {err.detail}") from None


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


def _created(crm: dict[str, Any]) -> list[tuple[str, int]]:
    """The (kind, id) a register created, as stored with the registration."""
    out: list[tuple[str, int]] = []
    for item in crm.get("created") or []:
        if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[1], int):
            out.append((str(item[0]), item[1]))
    return out


def _stored_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class BitrixTelephony:
    def __init__(self, ctx: PhoneContext) -> None:
        self.ctx = ctx
        self.calls = ctx.host.crm.external_calls
        self._methods: dict[str, Method] = {
            REGISTER: self.register,
            FINISH: self.finish,
            SEARCH: self.search,
            SHOW: self.show,
            HIDE: self.hide,
            ATTACH_RECORD: self.attach_record,
        }
        crm = ctx.host.crm
        self._methods.update(
            user_methods(crm, ctx.host.process_now, self._printer, lambda: self._methods)
        )

    def _printer(self) -> Printer:
        config = self.ctx.host.crm.config
        return Printer(self.timezone, config.currency, [p.code for p in config.pipelines])

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
        app = request.match_info["user"]
        # A webhook is a (user id, secret code) pair: either one wrong, no webhook is found.
        right = hmac.compare_digest(given, token.get_secret_value().encode())
        if not (right and app.isascii() and app.isdigit()):
            return _error(invalid_credentials())
        try:
            method = resolve_method(request.match_info["method"])
            # Only attachRecord may carry a file (the recording, base64).
            limit = MAX_RECORDING_BODY if method == ATTACH_RECORD and self._recordings else MAX_BODY
            # Cleaned (matching.text) before any method stores a parameter: registrations
            # and cards keep them outside intake, where Service.submit cannot clean them.
            params = clean_json(
                parse_bitrix_params(
                    request.rel_url.raw_query_string,
                    request.headers.get("Content-Type"),
                    await _body(request, limit),
                    limit,
                )
            )
            if method == BATCH:
                result: Any = await self.batch(params, app)
            else:
                result = await self._methods[method](params, app)
        except BitrixError as err:
            return _error(err)
        if method != SEARCH:  # call cards, hand-overs, bound calls: rep messages to send now
            self.ctx.host.outbox_written()
        timing = Timing(start=started, finish=time.time())
        if isinstance(result, Listed):
            return _reply(listed_result(result, timing))
        return _reply(bitrix_result(result, timing))

    async def not_found(self, request: web.Request) -> web.Response:
        """A /rest/ path that names no method: Bitrix24's answer, not the generic 404."""
        return _error(method_not_found())

    async def handle_v3(self, request: web.Request) -> web.Response:
        """REST 3.0's path: the same answers, an error as `{"error": {"code", "message"}}`."""
        response = await self.handle(request)
        if response.status < 400 or not isinstance(response.body, bytes):
            return response
        body = json.loads(response.body)
        error = {"code": body.get("error") or "ERROR", "message": body.get("error_description")}
        return _reply({"error": error}, response.status)

    async def batch(self, params: dict[str, Any], app: str) -> dict[str, Any]:
        """Run the commands in order; a command may use `$result[name][FIELD]` of an earlier
        one. With `halt` the first error stops the rest."""
        halt, commands = parse_batch(params)
        results: dict[BatchKey, Any] = {}
        errors: dict[BatchKey, dict[str, str]] = {}
        times: dict[BatchKey, dict[str, Any]] = {}
        totals: dict[BatchKey, int] = {}
        nexts: dict[BatchKey, int] = {}
        for command in commands:
            started = time.time()
            try:
                method, sub = split_command(command.command)
                result = await self._methods[method](substitute(sub, results), app)
            except BitrixError as err:
                errors[command.key] = bitrix_error(err.code, err.description)
                if halt:
                    break
                continue
            if isinstance(result, Listed):
                if result.total is not None:
                    totals[command.key] = result.total
                if result.next is not None:
                    nexts[command.key] = result.next
                result = result.items
            results[command.key] = result
            times[command.key] = command_time(Timing(start=started, finish=time.time()))
        return batch_result(results, errors, times, totals, nexts)

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

    async def _forced(self, request: RegisterRequest) -> NumberHolder | None:
        """The CRM entity register named (CRM_ENTITY_TYPE / _ID); an error when it is gone."""
        if request.crm_entity_type is None or request.crm_entity_id is None:
            return None
        kind, ident = request.crm_entity_type.lower(), request.crm_entity_id
        holder = await self.ctx.telephony.holder(kind, ident)
        if holder is None:
            raise BitrixError(
                "ERROR_CORE", f"CRM entity {request.crm_entity_type} #{ident} is not found"
            )
        return holder

    async def register(self, params: dict[str, Any], app: str) -> dict[str, Any]:
        request = parse_register(params, tz=self.timezone)
        rep = await self._rep(request.user_id, request.user_phone_inner)
        forced = await self._forced(request)
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
        call_id = registration.call_id
        reply = registration.data.get("register")
        if not isinstance(reply, dict):
            if request.call_start_date is None:
                request = replace(request, call_start_date=now)
            reply = await self._record_register(request, call_id, rep, forced, now)
        if request.show:  # a repeated register shows the card again, as in Bitrix24
            await self._show(call_id, [rep.id], now)
        return reply

    async def _record_register(
        self,
        request: RegisterRequest,
        call_id: str,
        rep: RepContact,
        forced: NumberHolder | None,
        now: datetime,
    ) -> dict[str, Any]:
        event = self.ctx.to_event(register_report(request, call_id), rep=rep)
        if event is None:  # an internal call: nothing in the CRM
            return await self.ctx.telephony.remember(
                call_id, "register", register_result(call_id), finished_at=None
            )
        # CRM_CREATE=1 lets the call create a lead (deal + contact in simple mode); without it
        # (Bitrix24's default is 0) and with a named entity the call only attaches to records.
        create = request.crm_create and forced is None and await self._line_creates(request)
        event = replace(
            event, register_mode=RegisterMode.DEFAULT if create else RegisterMode.ONLY_UPDATE
        )
        outcome = await self.ctx.host.process_now(event)
        activity_id, entity = outcome.activity_id, _primary(outcome)
        if forced is not None:
            target = (forced.owner_type, forced.owner_id)
            bound = await self.calls.record_on_entity(
                call_id, target, event, outcome, rep_id=rep.id, now=now
            )
            if bound is not None:
                activity_id, entity = bound, (forced.owner_type.upper(), forced.owner_id)
        created = [(kind.upper(), ident) for kind, ident in outcome.created]
        crm = {
            "created": created,
            "activity_id": activity_id,
            "responsible_id": outcome.responsible_id if created else None,
        }
        result = register_result(call_id, created=created, entity=entity)
        return await self.ctx.telephony.remember(
            call_id, "register", result, finished_at=None, facts={"crm": crm}
        )

    async def _line_creates(self, request: RegisterRequest) -> bool:
        """False when the call's line is registered with CRM_AUTO_CREATE=N."""
        if request.line_number is None:
            return True
        try:
            line = await self.ctx.host.crm.phone_lines.get(request.line_number)
        except InvalidInput:  # no number a line could be registered with
            return True
        return line is None or line.crm_auto_create

    def _registered(self, data: dict[str, Any]) -> RegisterRequest:
        request = parse_register(data.get("params") or {}, tz=self.timezone)
        if request.call_start_date is None and data.get("started_at"):
            started = datetime.fromisoformat(str(data["started_at"]))
            request = replace(request, call_start_date=started)
        return request

    async def finish(self, params: dict[str, Any], app: str) -> dict[str, Any]:
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
        crm = registration.data.get("crm") or {}
        # Bitrix24 hands what the call created to the rep who finished it, before the outcome
        # is recorded: a call-back task for a missed call then goes to that rep too.
        await self.calls.reassign_created(
            _created(crm),
            _stored_int(crm.get("activity_id")),
            before=_stored_int(crm.get("responsible_id")) or registration.user_id,
            after=rep.id,
            now=now,
        )
        activity_id, entity = await self._record_finish(
            request, registered, rep, _stored_int(crm.get("activity_id")), now
        )
        result = finish_result(
            request, registered, user_id=rep.id, activity_id=activity_id, entity=entity
        )
        stored = await self.ctx.telephony.remember(
            request.call_id, "finish", result, finished_at=now
        )
        await self.calls.hide_card(request.call_id, None, now, finished=True)
        return stored

    async def _record_finish(
        self,
        request: FinishRequest,
        registered: RegisterRequest,
        rep: RepContact,
        activity_id: int | None,
        now: datetime,
    ) -> tuple[int | None, tuple[str, int] | None]:
        event = self.ctx.to_event(finish_report(request, registered, ended_at=now), rep=rep)
        if event is None:
            return None, None
        # Creating records is register's business (CRM_CREATE): the outcome only attaches.
        event = replace(event, register_mode=RegisterMode.ONLY_UPDATE)
        outcome = await self.ctx.host.process_now(event)
        forced = registered.crm_entity_type, registered.crm_entity_id
        if forced[0] is not None and forced[1] is not None:
            target = (forced[0].lower(), forced[1])
            bound = await self.calls.record_on_entity(
                request.call_id, target, event, outcome, rep_id=rep.id, now=now
            )
            if bound is not None:
                return bound, (forced[0], forced[1])
        return outcome.activity_id or activity_id, _primary(outcome)

    async def search(self, params: dict[str, Any], app: str) -> list[dict[str, Any]]:
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

    # --- call cards and recordings ----------------------------------------------------------

    async def _show(self, call_id: str, rep_ids: list[int], now: datetime) -> bool:
        registration = await self.ctx.telephony.registration(call_id)
        if registration is None or registration.finished_at is not None:
            return False
        registered = self._registered(registration.data.get("request") or {})
        e164 = self.ctx.normalize(
            registered.phone_number, self.ctx.lines.region(registered.line_number)
        )
        caller = await self.ctx.telephony.caller(e164) if e164 else None
        forced = None
        if registered.crm_entity_type and registered.crm_entity_id:
            kind = registered.crm_entity_type.lower()
            forced = await self.ctx.telephony.holder(kind, registered.crm_entity_id)
        card = call_card(registered, caller, forced)
        return await self.calls.show_card(call_id, rep_ids, card, now)

    async def _card_request(self, params: dict[str, Any]) -> tuple[str, list[int]] | None:
        """CALL_ID and the reps of a show / hide; None when no such call is in progress."""
        request = parse_card(params)
        registration = await self.ctx.telephony.registration(request.call_id)
        if registration is None or registration.finished_at is not None:
            return None
        if not request.user_ids:  # Bitrix24: the user the call was registered for
            return request.call_id, [registration.user_id] if registration.user_id else []
        active = {r.id for r in await self.ctx.telephony.reps() if r.active}
        if any(u not in active for u in request.user_ids):
            raise BitrixError("ERROR_CORE", "User is not found or is not active")
        return request.call_id, list(request.user_ids)

    async def show(self, params: dict[str, Any], app: str) -> bool:
        """`telephony.externalcall.show`: true, or false when no such call is in progress."""
        asked = await self._card_request(params)
        return asked is not None and await self._show(*asked, datetime.now(UTC))

    async def hide(self, params: dict[str, Any], app: str) -> bool:
        """`telephony.externalcall.hide`: true, or false when no such call is in progress."""
        asked = await self._card_request(params)
        return asked is not None and await self.calls.hide_card(*asked, datetime.now(UTC))

    @property
    def _recordings(self) -> Path | None:
        directory = self.ctx.settings.recordings_dir
        return Path(directory) if directory else None

    async def attach_record(self, params: dict[str, Any], app: str) -> dict[str, Any]:
        """`telephony.externalCall.attachRecord`: RECORD_URL, or the file itself (kept in
        phone.recordings_dir and served from there), goes onto the finished call and its call
        activity."""
        directory = self._recordings
        request = parse_attach_record(params, can_store=directory is not None)
        url, stored = request.record_url, None
        if request.content is not None and directory is not None:
            stored = await recordings.store(directory, request.extension, request.content)
            url = recordings.recording_url(self.ctx, stored)
        assert url is not None  # parse_attach_record gives a link or a file
        found, activity_id = await self.calls.attach_record(
            request.call_id, url, request.filename, datetime.now(UTC)
        )
        if not found:
            if stored is not None and directory is not None:
                await recordings.discard(directory, stored)
            raise BitrixError(
                "", "Call is not found in the statistic table. Looks like it is not finished yet."
            )
        return attach_record_result(request.call_id, url, activity_id)
