"""The CRM records (SQLAlchemy 2 typed ORM). Identical on SQLite and PostgreSQL.

Timestamps are stored as timezone-aware UTC (`UtcDateTime`) so both backends round-trip the same
values. Records that can own communications, activities and timeline entries are addressed as
(owner_type, owner_id) pairs rather than one foreign key per kind, like Bitrix24's entity types.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        # Most values are UTC already (utcnow, asyncpg's results): no conversion to make.
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is UTC:  # asyncpg's timestamptz: UTC already, a conversion per value
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
    }


class Rep(Base):
    __tablename__ = "reps"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    role: Mapped[str] = mapped_column(String(20), default="rep")  # rep | supervisor | admin
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(40))  # E.164, for <Dial> to the rep
    extension: Mapped[str | None] = mapped_column(String(20))  # PBX extension
    invite_code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    invite_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Company(Base):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    responsible_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    comments: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    first_name: Mapped[str | None] = mapped_column(String(150))
    last_name: Mapped[str | None] = mapped_column(String(150))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    responsible_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    comments: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)


class Communication(Base):
    """A phone / email / messenger id of a contact, company or lead."""

    __tablename__ = "communications"
    __table_args__ = (
        Index("ix_communications_kind_value", "kind", "value"),
        Index("ix_communications_owner", "owner_type", "owner_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # phone | email | telegram | whatsapp | other
    raw_value: Mapped[str] = mapped_column(String(320))
    # Normalized (E.164, lower-cased email, messenger id); None when it did not normalize.
    value: Mapped[str | None] = mapped_column(String(320))
    owner_type: Mapped[str] = mapped_column(String(10))  # contact | company | lead
    owner_id: Mapped[int] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(100))  # username, "invalid"
    # A phone's extension ("ext 12", "доб. 12"): shown with the number, never matched on.
    extension: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_status_semantic_modified", "status_semantic", "modified_at"),
        Index("ix_leads_responsible_semantic", "responsible_id", "status_semantic"),
        # The board: a column newest first, and a rep's column, walk these (keyset paging).
        Index("ix_leads_status_created", "status", "created_at", "id"),
        Index(
            "ix_leads_responsible_status_created", "responsible_id", "status", "created_at", "id"
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(50))
    status_semantic: Mapped[str] = mapped_column(String(10))  # process | success | failure
    source: Mapped[str] = mapped_column(String(30), index=True)
    is_return_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(300))
    company_title: Mapped[str | None] = mapped_column(String(300))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    responsible_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    comments: Mapped[str | None] = mapped_column(Text)
    junk_reason: Mapped[str | None] = mapped_column(Text)
    utm: Mapped[dict[str, Any] | None]
    # First rep action; stops escalation. Indexed for the numbers of a period (crm.stats).
    taken_at: Mapped[datetime | None] = mapped_column(index=True)
    escalated_at: Mapped[datetime | None]
    escalation_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)


class Pipeline(Base):
    __tablename__ = "pipelines"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    sort: Mapped[int] = mapped_column(Integer, default=0)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class Stage(Base):
    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("pipeline_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    code: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(200))
    semantic: Mapped[str] = mapped_column(String(10))  # process | success | failure
    sort: Mapped[int] = mapped_column(Integer, default=0)


class Deal(Base):
    __tablename__ = "deals"
    __table_args__ = (
        Index("ix_deals_contact_semantic", "contact_id", "stage_semantic"),
        Index("ix_deals_company_semantic", "company_id", "stage_semantic"),
        Index("ix_deals_responsible_semantic", "responsible_id", "stage_semantic"),
        Index("ix_deals_stage_created", "stage_id", "created_at", "id"),
        Index(
            "ix_deals_responsible_stage_created", "responsible_id", "stage_id", "created_at", "id"
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"))
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id"))
    stage_semantic: Mapped[str] = mapped_column(String(10))  # copied from the stage for queries
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    is_return_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    is_repeated_approach: Mapped[bool] = mapped_column(Boolean, default=False)
    # Created for a known client with nothing open (simple mode's repeat deal): counts like a
    # deal converted from a repeat lead for the repeated-inquiry flag.
    origin_repeat: Mapped[bool] = mapped_column(Boolean, default=False)
    responsible_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    source: Mapped[str | None] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(index=True)  # won / lost in a period
    # Why a lost deal was lost: one of crm.lost_reasons or the rep's own words.
    lost_reason: Mapped[str | None] = mapped_column(String(500))


class Activity(Base):
    __tablename__ = "activities"
    __table_args__ = (
        UniqueConstraint("channel", "external_id"),
        Index("ix_activities_open_tasks", "kind", "done", "counterparty"),
        Index("ix_activities_due", "done", "due_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # call|email|message|webform|meeting|task|comment
    direction: Mapped[str | None] = mapped_column(String(10))  # incoming | outgoing
    subject: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime | None]
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    done_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(String(200))  # e.g. "called back"
    responsible_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    channel: Mapped[str | None] = mapped_column(String(20))
    external_id: Mapped[str | None] = mapped_column(String(500))  # where it came from, per channel
    counterparty: Mapped[str | None] = mapped_column(String(320))  # normalized phone / email
    attempts: Mapped[int] = mapped_column(Integer, default=1)  # missed calls folded into a task
    last_attempt_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    meta: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ActivityBinding(Base):
    __tablename__ = "activity_bindings"
    __table_args__ = (Index("ix_activity_bindings_owner", "owner_type", "owner_id"),)
    activity_id: Mapped[int] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True
    )
    owner_type: Mapped[str] = mapped_column(String(10), primary_key=True)
    owner_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class TimelineEntry(Base):
    __tablename__ = "timeline"
    __table_args__ = (Index("ix_timeline_owner", "owner_type", "owner_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_type: Mapped[str] = mapped_column(String(10))
    owner_id: Mapped[int] = mapped_column(Integer)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))  # None: the system
    action: Mapped[str] = mapped_column(String(50))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ExceptionEntry(Base):
    __tablename__ = "exceptions"
    __table_args__ = (UniqueConstraint("kind", "value"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # phone | email
    value: Mapped[str] = mapped_column(String(320))
    comment: Mapped[str | None] = mapped_column(Text)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundEventLog(Base):
    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("channel", "external_id"),
        # A record's history reads the decisions of its events (crm/services/history.py).
        Index("ix_inbound_events_lead", "lead_id", "received_at"),
        Index("ix_inbound_events_deal", "deal_id", "received_at"),
        Index("ix_inbound_events_contact", "contact_id", "received_at"),
        Index("ix_inbound_events_company", "company_id", "received_at"),
        Index("ix_inbound_events_activity", "activity_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    occurred_at: Mapped[datetime]
    direction: Mapped[str] = mapped_column(String(10))
    outcome: Mapped[str] = mapped_column(String(30), index=True)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    lead_id: Mapped[int | None] = mapped_column(Integer)
    deal_id: Mapped[int | None] = mapped_column(Integer)
    contact_id: Mapped[int | None] = mapped_column(Integer)
    company_id: Mapped[int | None] = mapped_column(Integer)
    activity_id: Mapped[int | None] = mapped_column(Integer)


class OutboxMessage(Base):
    """A rep notification written in the intake transaction; the bot delivers it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "sent_at", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))  # None: not yet routed
    kind: Mapped[str] = mapped_column(String(30))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class CardMessage(Base):
    """Which Telegram message shows which record to which rep (to edit cards in place)."""

    __tablename__ = "card_messages"
    __table_args__ = (
        UniqueConstraint("chat_id", "message_id"),
        Index("ix_card_messages_owner", "owner_type", "owner_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), unique=True)
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    owner_type: Mapped[str] = mapped_column(String(10))
    owner_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    # Comma-separated: read, write. Tokens from before scopes keep read only (migration 0004).
    scopes: Mapped[str] = mapped_column(String(40), default="read", server_default="read")
    # The rep the token acts as (that rep's rights apply); none = the system.
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))


class IdempotentRequest(Base):
    """A write API request made with an Idempotency-Key: its body's hash and, once done, the
    answer to repeat. The row is inserted before the work, so a concurrent copy finds it."""

    __tablename__ = "api_idempotency"
    __table_args__ = (UniqueConstraint("token_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None]  # None while the first request is still being answered
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class KeyValue(Base):
    """Small persisted state: round-robin positions, runtime settings, mailbox sync points."""

    __tablename__ = "state"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MailSpamNote(Base):
    """Why a mail went to its mailbox's spam folder, for the console's quarantine page: the
    server keeps the mail, its keyword says only that Leadbot put it there. Kept 90 days."""

    __tablename__ = "mail_spam_notes"
    __table_args__ = (Index("ix_mail_spam_notes_mailbox_message_id", "mailbox", "message_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(100))
    message_id: Mapped[str] = mapped_column(String(1000))
    layer: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(500))
    noted_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ExternalCall(Base):
    """Bitrix24-style registered calls (CALL_ID reuse within 30 minutes, finish)."""

    __tablename__ = "external_calls"
    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(100), unique=True)
    register_key: Mapped[str] = mapped_column(String(500), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)
    phone: Mapped[str] = mapped_column(String(60))
    call_type: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    entities: Mapped[dict[str, Any] | None]


class WebLink(Base):
    """A one-time web console sign-in link (only its hash is kept)."""

    __tablename__ = "web_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    rep_id: Mapped[int] = mapped_column(ForeignKey("reps.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in web console browser; the cookie carries the token, the row its hash."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    rep_id: Mapped[int] = mapped_column(ForeignKey("reps.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class BoardCounter(Base):
    """Per-column counts and deal sums of the board, kept by database triggers on leads and
    deals (crm/counters.py), so a board reads O(columns) rows instead of counting records.

    `col` is a lead's status or a deal's stage id (as text); `responsible_id` 0 is nobody;
    `currency` '' for leads. PostgreSQL spreads each key over `slot`s (the writer's backend
    pid modulo a few) so concurrent intake transactions rarely wait on one counter row;
    readers sum the slots. `priced` counts the deals with an amount (a sum shows only then).
    """

    __tablename__ = "board_counters"
    __table_args__ = (UniqueConstraint("kind", "col", "responsible_id", "currency", "slot"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(4))
    col: Mapped[str] = mapped_column(String(50))
    responsible_id: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    slot: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(BigInteger)
    priced: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[Decimal] = mapped_column(Numeric(20, 2))


def _counter_triggers(_: MetaData, connection: Connection, **__: Any) -> None:
    # A schema made from the models (SQLite tests, a fresh SQLite file) gets the triggers the
    # migration makes; after every table exists, since they read leads and deals.
    from crm.counters import create_triggers

    create_triggers(connection)


event.listen(Base.metadata, "after_create", _counter_triggers)
