"""Bitrix24 `crm.activity.list|add`, `crm.timeline.comment.add`, `crm.duplicate.findbycomm`
and the reference lists: `crm.status.list` (lead statuses, sources, deal stages),
`crm.dealcategory.list`, `crm.dealcategory.stage.list`, `crm.category.list`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from channels.phone.bitrix_crm import BitrixCrm
from channels.phone.bitrix_fields import ACTIVITY_TYPES, OWNER_TYPES, when
from channels.phone.bitrix_filters import ListRequest
from channels.phone.bitrix_params import BitrixError
from channels.phone.bitrix_replies import Listed
from channels.phone.bitrix_values import ci, number, record_fields, record_id, text
from crm.config import StatusDef
from crm.dto import ActivityView, Actor
from crm.services.querying import Condition
from matching.channels import sources

Method = Callable[[dict[str, Any], Actor], Awaitable[Any]]
MAX_COMM_VALUES = 20  # Bitrix24's limit on findbycomm's values
_ENTITY_TYPES = {"lead": "lead", "deal": "deal", "contact": "contact", "company": "company"}
NOT_COMMENT = Condition("kind", "ne", "comment")
_SEMANTICS = {"process": "process", "success": "success", "failure": "failure"}


def _when(value: str | None) -> datetime | None:
    return None if value is None else when(value, UTC)


def _status(entity: str, sort: int, status: StatusDef, category: int | None) -> dict[str, Any]:
    return {
        "ID": str(sort + 1),
        "ENTITY_ID": entity,
        "STATUS_ID": status.code,
        "NAME": status.name,
        "NAME_INIT": status.name,
        "SORT": str((sort + 1) * 10),
        "SYSTEM": "Y",
        "CATEGORY_ID": None if category is None else str(category),
        "COLOR": None,
        "SEMANTICS": {"success": "S", "failure": "F"}.get(status.semantic),
        "EXTRA": {"SEMANTICS": _SEMANTICS[status.semantic], "COLOR": None},
    }


class BitrixCatalog:
    def __init__(self, records: BitrixCrm) -> None:
        self.records = records
        self.crm = records.crm

    def methods(self) -> dict[str, Method]:
        return {
            "crm.activity.list": self.activity_list,
            "crm.activity.get": self.activity_get,
            "crm.activity.add": self.activity_add,
            "crm.timeline.comment.add": self.comment_add,
            "crm.duplicate.findbycomm": self.find_by_comm,
            "crm.status.list": self.status_list,
            "crm.dealcategory.list": self.category_list_old,
            "crm.dealcategory.stage.list": self.category_stages,
            "crm.category.list": self.category_list,
        }

    # --- activities and comments ------------------------------------------------------------

    async def activity_list(self, params: dict[str, Any], actor: Actor) -> Listed:
        printer = self.records.printer

        def load(request: ListRequest) -> Awaitable[tuple[list[ActivityView], int | None]]:
            # Timeline comments are no activities in Bitrix24 (crm.timeline.comment.list).
            query = request.query
            query = replace(query, conditions=(*query.conditions, NOT_COMMENT))
            return self.crm.queries.activities(query, actor)

        return await self.records.list_of("activity", params, load, printer.activity)

    async def activity_get(self, params: dict[str, Any], actor: Actor) -> dict[str, Any]:
        view = await self.crm.activities.get(record_id(params), actor)
        return self.records.printer.activity(view)

    async def activity_add(self, params: dict[str, Any], actor: Actor) -> int:
        fields = record_fields(params)
        owner_type = OWNER_TYPES.get(text(fields, "OWNER_TYPE_ID") or "")
        owner_id = number(fields, "OWNER_ID")
        if owner_type is None or owner_id is None:
            raise BitrixError(
                "", "OWNER_TYPE_ID and OWNER_ID must name a lead, deal, contact or company"
            )
        kind = ACTIVITY_TYPES.get(text(fields, "TYPE_ID") or "", "task")
        due = _when(text(fields, "END_TIME")) or _when(text(fields, "START_TIME"))
        subject = text(fields, "SUBJECT") or text(fields, "DESCRIPTION") or kind
        view = await self.crm.activities.schedule(
            owner_type,
            owner_id,
            due_at=due or datetime.now(UTC),
            subject=subject,
            kind=kind,
            responsible_id=number(fields, "RESPONSIBLE_ID"),
            actor=actor,
        )
        if str(fields.get("COMPLETED", "")).upper() == "Y":
            await self.crm.activities.complete(view.id, actor)
        return view.id

    async def comment_add(self, params: dict[str, Any], actor: Actor) -> int:
        fields = record_fields(params)
        kind = _ENTITY_TYPES.get((text(fields, "ENTITY_TYPE") or "").lower())
        ident = number(fields, "ENTITY_ID")
        comment = text(fields, "COMMENT")
        if kind is None or ident is None:
            raise BitrixError(
                "", "ENTITY_TYPE and ENTITY_ID must name a lead, deal, contact or company"
            )
        if comment is None:
            raise BitrixError("", "COMMENT is empty")
        return (await self.crm.activities.comment(kind, ident, comment, actor)).id

    # --- duplicates -------------------------------------------------------------------------

    async def find_by_comm(self, params: dict[str, Any], actor: Actor) -> Any:
        kind = str(ci(params, "type") or "").upper()
        if kind not in ("PHONE", "EMAIL"):
            raise BitrixError("", "Communication type is not defined.")
        raw = ci(params, "values")
        values = (
            list(raw.values()) if isinstance(raw, dict) else raw if isinstance(raw, list) else []
        )
        values = [str(v) for v in values if isinstance(v, str | int) and str(v).strip()]
        if not values:
            raise BitrixError("", "Communication values is not defined.")
        if len(values) > MAX_COMM_VALUES:
            raise BitrixError("", f"Too many communication values (at most {MAX_COMM_VALUES}).")
        only = str(ci(params, "entity_type") or "").upper() or None
        if only not in (None, "LEAD", "CONTACT", "COMPANY"):
            raise BitrixError("", "Entity type is not supported in current context.")
        phones = values if kind == "PHONE" else []
        emails = values if kind == "EMAIL" else []
        hits = await self.crm.search.duplicates(phones, emails, actor)
        out: dict[str, list[int]] = {}
        for name, ids in (
            ("LEAD", hits.leads),
            ("CONTACT", hits.contacts),
            ("COMPANY", hits.companies),
        ):
            if ids and only in (None, name):
                out[name] = ids
                if len(ids) >= MAX_COMM_VALUES:
                    break  # Bitrix24 stops at a type with 20 hits
        return out or []

    # --- statuses and funnels ---------------------------------------------------------------

    def _statuses(self) -> list[dict[str, Any]]:
        config = self.crm.config
        out = [_status("STATUS", i, s, None) for i, s in enumerate(config.lead_statuses)]
        known = list(dict.fromkeys([*sources(), "WEB", "ADVERTISING", "PARTNER", "OTHER"]))
        out += [
            _status("SOURCE", i, StatusDef(code, code.title(), "process"), None)
            for i, code in enumerate(known)
        ]
        for category, pipeline in enumerate(config.pipelines):
            entity = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
            for i, stage in enumerate(pipeline.stages):
                item = _status(entity, i, stage, category)
                if category:
                    item["STATUS_ID"] = f"C{category}:{stage.code}"
                out.append(item)
        for position, item in enumerate(out, start=1):
            item["ID"] = str(position)
        return out

    async def status_list(self, params: dict[str, Any], actor: Actor) -> list[dict[str, Any]]:
        flt = ci(params, "filter")
        rows = self._statuses()
        if isinstance(flt, dict):
            for key, value in flt.items():
                name = str(key).lstrip("=").upper()
                if name in ("ENTITY_ID", "STATUS_ID", "CATEGORY_ID"):
                    rows = [r for r in rows if str(r[name]) == str(value)]
        return rows

    def _category(self, index: int) -> dict[str, Any]:
        pipeline = self.crm.config.pipelines[index]
        return {"ID": str(index), "NAME": pipeline.name, "SORT": str(index * 10), "IS_LOCKED": "N"}

    async def category_list_old(self, params: dict[str, Any], actor: Actor) -> list[dict[str, Any]]:
        # Bitrix24's deprecated list leaves the general funnel (0) out.
        return [self._category(i) for i in range(1, len(self.crm.config.pipelines))]

    async def category_list(self, params: dict[str, Any], actor: Actor) -> dict[str, Any]:
        categories = [
            {
                "id": i,
                "name": p.name,
                "sort": i * 10,
                "entityTypeId": 2,
                "isDefault": "Y" if i == 0 else "N",
            }
            for i, p in enumerate(self.crm.config.pipelines)
        ]
        return {"categories": categories}

    async def category_stages(self, params: dict[str, Any], actor: Actor) -> list[dict[str, Any]]:
        raw = ci(params, "id")
        try:
            index = int(str(raw or 0))
        except ValueError:
            raise BitrixError("", "id must be a number") from None
        pipelines = self.crm.config.pipelines
        if not 0 <= index < len(pipelines):
            raise BitrixError("", f"Deal category {index} is not found")
        return [
            {
                "NAME": s.name,
                "SORT": str((i + 1) * 10),
                "STATUS_ID": s.code if index == 0 else f"C{index}:{s.code}",
            }
            for i, s in enumerate(pipelines[index].stages)
        ]
