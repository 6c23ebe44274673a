"""Bitrix24 `user.get`, `user.current`, `profile`, the system methods (`app.info`, `methods`,
`method.get`, `scope`) and `telephony.externalLine.*`. Users are Leadbot's reps: the id is the
rep id, UF_PHONE_INNER the rep's extension."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from channels.phone.bitrix_fields import selected, user
from channels.phone.bitrix_filters import list_request, paged
from channels.phone.bitrix_params import BitrixError
from channels.phone.bitrix_replies import Listed
from channels.phone.bitrix_values import ci
from crm.dto import Actor
from crm.facade import Crm
from crm.services.phone_lines import PhoneLine

Method = Callable[[dict[str, Any], Actor], Awaitable[Any]]
SCOPES = ("basic", "crm", "telephony", "user", "user_basic")


def _line(line: PhoneLine) -> dict[str, Any]:
    return {
        "NUMBER": line.number,
        "NAME": line.name,
        "CRM_AUTO_CREATE": "Y" if line.crm_auto_create else "N",
    }


def _flag(params: dict[str, Any], name: str) -> bool | None:
    value = ci(params, name.lower())
    if value is None or value == "":
        return None
    text = str(value).strip().upper()
    if text not in ("Y", "N", "1", "0", "TRUE", "FALSE"):
        raise BitrixError("ERROR_CORE", f"{name} must be Y or N")
    return text in ("Y", "1", "TRUE")


def _number(params: dict[str, Any]) -> str:
    value = ci(params, "number")
    if value is None or not str(value).strip():
        raise BitrixError("ERROR_CORE", "NUMBER should not be empty")
    return str(value).strip()


class BitrixUsers:
    def __init__(self, crm: Crm, served: Callable[[], Iterable[str]], timezone: str) -> None:
        self.crm = crm
        self.served = served  # every method name this endpoint serves
        self.timezone = timezone

    def methods(self) -> dict[str, Method]:
        return {
            "user.get": self.user_get,
            "user.current": self.user_current,
            "profile": self.profile,
            "app.info": self.app_info,
            "methods": self.method_names,
            "method.get": self.method_get,
            "scope": self.scope,
            "telephony.externalline.add": self.line_add,
            "telephony.externalline.get": self.line_get,
            "telephony.externalline.update": self.line_update,
            "telephony.externalline.delete": self.line_delete,
        }

    # --- users ------------------------------------------------------------------------------

    async def user_get(self, params: dict[str, Any], actor: Actor) -> Listed:
        # user.get also takes its filter fields as top-level parameters (user.get?ID=5).
        loose = {k: v for k, v in params.items() if k.upper() in ("ID", "ACTIVE", "EMAIL")}
        if loose and ci(params, "filter") is None:
            params = {**params, "FILTER": loose}
        request = list_request("rep", params)
        rows, total = await self.crm.queries.reps(request.query)
        following, total = paged(request, len(rows), total)
        users = [selected(user(r), request.select, multifields=False) for r in rows]
        return Listed(users, following, total)

    async def _me(self, actor: Actor) -> dict[str, Any]:
        if actor.rep_id is None:
            raise BitrixError("", "No user behind this webhook")
        return user(await self.crm.reps.get(actor.rep_id))

    async def user_current(self, params: dict[str, Any], actor: Actor) -> dict[str, Any]:
        return await self._me(actor)

    async def profile(self, params: dict[str, Any], actor: Actor) -> dict[str, Any]:
        me = await self._me(actor)
        return {
            "ID": me["ID"],
            "ADMIN": bool(me["IS_ADMIN"]),
            "NAME": me["NAME"],
            "LAST_NAME": me["LAST_NAME"],
            "PERSONAL_GENDER": "",
            "TIME_ZONE": self.timezone,
        }

    # --- system -----------------------------------------------------------------------------

    async def app_info(self, params: dict[str, Any], actor: Actor) -> dict[str, Any]:
        # Bitrix24 answers a webhook ACCESS_DENIED here; connectors that call it at start-up
        # to learn the licence get a plain, always-installed "application" instead.
        return {
            "ID": 1,
            "CODE": "leadbot",
            "VERSION": 1,
            "STATUS": "L",
            "INSTALLED": True,
            "PAYMENT_EXPIRED": "N",
            "DAYS": None,
            "LANGUAGE_ID": "en",
            "LICENSE": "selfhosted",
            "LICENSE_TYPE": "selfhosted",
        }

    async def method_names(self, params: dict[str, Any], actor: Actor) -> list[str]:
        return sorted(self.served())

    async def method_get(self, params: dict[str, Any], actor: Actor) -> dict[str, bool]:
        name = str(ci(params, "name") or "").strip().lower()
        known = name in set(self.served())
        return {"isExisting": known, "isAvailable": known}

    async def scope(self, params: dict[str, Any], actor: Actor) -> list[str]:
        return list(SCOPES)

    # --- external lines ---------------------------------------------------------------------

    async def line_add(self, params: dict[str, Any], actor: Actor) -> dict[str, int]:
        name = ci(params, "name")
        auto = _flag(params, "CRM_AUTO_CREATE")
        line = await self.crm.phone_lines.add(
            _number(params), str(name) if name else None, True if auto is None else auto
        )
        return {"ID": line.id}

    async def line_get(self, params: dict[str, Any], actor: Actor) -> list[dict[str, Any]]:
        return [_line(line) for line in await self.crm.phone_lines.all()]

    async def line_update(self, params: dict[str, Any], actor: Actor) -> dict[str, int]:
        name = ci(params, "name")
        line = await self.crm.phone_lines.update(
            _number(params),
            name=str(name) if name is not None else None,
            crm_auto_create=_flag(params, "CRM_AUTO_CREATE"),
        )
        return {"ID": line.id}

    async def line_delete(self, params: dict[str, Any], actor: Actor) -> list[Any]:
        await self.crm.phone_lines.delete(_number(params))
        return []
