"""Messages a rep sent to a customer (e.g. relayed through the Telegram bot), as activities."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from crm.db import Database
from crm.dto import ActivityView, Actor
from crm.errors import Conflict, InvalidInput, NotFound
from crm.models import Activity, utcnow
from crm.services.access import check_access
from crm.services.rows import OWNER_MODELS, add_timeline, bind_activity
from crm.services.views import activity_views

MAX_BODY = 20_000


class Messages:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record_outgoing(
        self,
        owner_type: str,
        owner_id: int,
        text: str,
        actor: Actor,
        *,
        channel: str,
        external_id: str,
        counterparty: str | None = None,
        meta: dict[str, Any] | None = None,
        activity_kind: str = "message",
        subject: str | None = None,
    ) -> ActivityView:
        """A done, outgoing activity (`activity_kind`: `message`, or `email` for mail) on the
        record (and on its contact / company, so the client's history shows it too).
        `external_id` is unique per channel: recording the same sent message twice raises
        Conflict."""
        text = text.strip()
        if not text:
            raise InvalidInput("the message is empty")
        model = OWNER_MODELS.get(owner_type)
        if model is None:
            raise InvalidInput(f"unknown record type {owner_type!r}")
        try:
            async with self.db.transaction() as s:
                owner = await s.get(model, owner_id)
                if owner is None:
                    raise NotFound(f"{owner_type} #{owner_id} does not exist")
                check_access(actor, owner.responsible_id, f"{owner_type} #{owner_id}")
                now = utcnow()
                act = Activity(
                    kind=activity_kind,
                    direction="outgoing",
                    subject=(subject or f"Message to the customer ({channel})")[:500],
                    body=text[:MAX_BODY],
                    done=True,
                    done_at=now,
                    responsible_id=owner.responsible_id or actor.rep_id,
                    author_id=actor.rep_id,
                    channel=channel,
                    external_id=external_id[:500],
                    counterparty=counterparty,
                    meta=meta or {},
                    created_at=now,
                )
                s.add(act)
                await s.flush()
                owners: list[tuple[str, int | None]] = [(owner_type, owner_id)]
                if owner_type in ("lead", "deal", "contact"):
                    owners += [("contact", getattr(owner, "contact_id", None))]
                    owners += [("company", getattr(owner, "company_id", None))]
                await bind_activity(s, act.id, owners, fresh=True)
                add_timeline(
                    s, owner_type, owner_id, "message_sent", actor, after={"activity_id": act.id}
                )
                return (await activity_views(s, [act]))[0]
        except IntegrityError:
            raise Conflict("this message is recorded already") from None
