"""Settings an admin may change at run time (/settings in the bot), persisted in the database."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import Database
from crm.dto import Actor
from crm.errors import Forbidden, InvalidInput
from crm.models import KeyValue, utcnow
from matching.model import CrmMode, MatchSettings

KEY = "settings.match"


async def current_match_settings(s: AsyncSession, default: MatchSettings) -> MatchSettings:
    row = await s.get(KeyValue, KEY)
    if row is None:
        return default
    v = row.value
    return MatchSettings(
        crm_mode=CrmMode(v.get("crm_mode", default.crm_mode.value)),
        repeat_sales=bool(v.get("repeat_sales", default.repeat_sales)),
        traditional_mode=bool(v.get("traditional_mode", default.traditional_mode)),
    )


class RuntimeSettings:
    def __init__(self, db: Database, default: MatchSettings) -> None:
        self.db = db
        self.default = default
        # Called after a change (intake drops its cached copy right away).
        self.on_change: list[Callable[[], None]] = []

    async def get(self) -> MatchSettings:
        async with self.db.transaction() as s:
            return await current_match_settings(s, self.default)

    async def update(
        self,
        actor: Actor,
        *,
        crm_mode: str | None = None,
        repeat_sales: bool | None = None,
        traditional_mode: bool | None = None,
    ) -> MatchSettings:
        if actor.role != "admin":
            raise Forbidden("only an admin can change the CRM settings")
        async with self.db.transaction() as s:
            cur = await current_match_settings(s, self.default)
            try:
                mode = CrmMode(crm_mode) if crm_mode is not None else cur.crm_mode
            except ValueError:
                raise InvalidInput("CRM mode must be classic or simple") from None
            repeat = cur.repeat_sales if repeat_sales is None else repeat_sales
            traditional = cur.traditional_mode if traditional_mode is None else traditional_mode
            # Bitrix24: turning repeat sales on also turns traditional lead mode off.
            if repeat:
                traditional = False
            new = MatchSettings(crm_mode=mode, repeat_sales=repeat, traditional_mode=traditional)
            value = {
                "crm_mode": new.crm_mode.value,
                "repeat_sales": new.repeat_sales,
                "traditional_mode": new.traditional_mode,
            }
            row = await s.get(KeyValue, KEY)
            if row is None:
                s.add(KeyValue(key=KEY, value=value, updated_at=utcnow()))
            else:
                row.value, row.updated_at = value, utcnow()
        for hook in self.on_change:
            hook()
        return new
