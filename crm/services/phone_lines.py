"""External phone lines a phone system registers (Bitrix24's `telephony.externalLine.*`): a
number, a name and whether calls on it may create CRM records. Kept in the `state` table, one
row per line (the key is unique, so two registrations of one number cannot both win)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from crm.db import Database
from crm.errors import Conflict, InvalidInput, NotFound
from crm.models import KeyValue, utcnow

_PREFIX = "phone.line:"
MAX_NUMBER = 100


@dataclass(frozen=True, slots=True)
class PhoneLine:
    id: int  # stable per number while the line exists (its position at registration)
    number: str
    name: str | None
    crm_auto_create: bool


def _key(number: str) -> str:
    number = number.strip()
    if not number:
        raise InvalidInput("NUMBER should not be empty")
    if len(number) > MAX_NUMBER:
        raise InvalidInput(f"NUMBER is longer than {MAX_NUMBER} characters")
    return _PREFIX + number


def _line(row: KeyValue) -> PhoneLine:
    value = row.value
    return PhoneLine(
        id=int(value.get("id") or 0),
        number=row.key.removeprefix(_PREFIX),
        name=value.get("name"),
        crm_auto_create=bool(value.get("crm_auto_create", True)),
    )


class PhoneLines:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[PhoneLine]:
        async with self.db.read() as s:
            rows = await s.scalars(select(KeyValue).where(KeyValue.key.startswith(_PREFIX)))
            return sorted((_line(r) for r in rows), key=lambda line: line.id)

    async def get(self, number: str) -> PhoneLine | None:
        async with self.db.read() as s:
            row = await s.get(KeyValue, _key(number))
            return None if row is None else _line(row)

    async def add(self, number: str, name: str | None, crm_auto_create: bool) -> PhoneLine:
        key = _key(number)
        ident = max((line.id for line in await self.all()), default=0) + 1
        value = {"id": ident, "name": name, "crm_auto_create": crm_auto_create}
        try:
            async with self.db.transaction() as s:
                if await s.get(KeyValue, key) is not None:
                    raise Conflict("Line already exists")
                s.add(KeyValue(key=key, value=value, updated_at=utcnow()))
        except IntegrityError:
            raise Conflict("Line already exists") from None
        return PhoneLine(ident, number.strip(), name, crm_auto_create)

    async def update(
        self, number: str, *, name: str | None = None, crm_auto_create: bool | None = None
    ) -> PhoneLine:
        if name is None and crm_auto_create is None:
            raise InvalidInput("There are no fields to update")
        key = _key(number)
        async with self.db.transaction() as s:
            row = await s.get(KeyValue, key, with_for_update=True)
            if row is None:
                raise NotFound(f"Could not find line with number {number.strip()}")
            value = dict(row.value)
            if name is not None:
                value["name"] = name
            if crm_auto_create is not None:
                value["crm_auto_create"] = crm_auto_create
            row.value, row.updated_at = value, utcnow()
            return _line(row)

    async def delete(self, number: str) -> None:
        key = _key(number)
        async with self.db.transaction() as s:
            row = await s.get(KeyValue, key, with_for_update=True)
            if row is None:
                raise NotFound(f"Could not find line with number {number.strip()}")
            await s.delete(row)
