"""The CRM facade: every use case the bot, the channels and the REST API may call. Adapters
reach the CRM only through it (their hosts offer a `Crm`, never the `Database`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from crm.changes import Feed
from crm.config import CrmConfig
from crm.db import Database
from crm.intake import Intake, SeenCache
from crm.models import utcnow
from crm.services.activities import Activities
from crm.services.board import Board
from crm.services.callers import CallerLookup
from crm.services.chat_state import ChatStates
from crm.services.deals import Deals
from crm.services.edits import Edits
from crm.services.escalation import Followups
from crm.services.events import Events
from crm.services.exceptions import Exceptions
from crm.services.external_calls import ExternalCalls
from crm.services.handmade import Handmade
from crm.services.health import ChannelHealth
from crm.services.history import History
from crm.services.idempotency import Idempotency
from crm.services.leads import Leads
from crm.services.mailstate import MailState
from crm.services.messages import Messages
from crm.services.outbox import Outbox
from crm.services.phone_lines import PhoneLines
from crm.services.pipelines import sync_pipelines
from crm.services.prompts import Prompts
from crm.services.quarantine import Quarantine
from crm.services.querying import Queries
from crm.services.records import Records
from crm.services.related import Related
from crm.services.reps import Reps
from crm.services.runtime import RuntimeSettings
from crm.services.search import Search
from crm.services.stats import Stats
from crm.services.team import Team
from crm.services.telephony import Telephony
from crm.services.tokens import Tokens
from crm.services.websessions import WebSessions


class Crm:
    def __init__(
        self,
        db: Database,
        config: CrmConfig,
        *,
        seen: SeenCache | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.config = config
        self.records = Records(db, config.default_region)
        self.leads = Leads(db, config)
        self.deals = Deals(db, config)
        self.activities = Activities(db)
        self.board = Board(db, config, self.leads, self.deals)
        self.history = History(db, config)
        self.related = Related(db, config)  # what a record page links to
        self.exceptions = Exceptions(db, config.default_region)
        self.reps = Reps(db)
        self.search = Search(db, config)
        self.handmade = Handmade(db, config)  # records typed in by hand, duplicate-checked
        # Plain field edits (REST PATCH, Bitrix24 *.update) and lists by a typed filter spec.
        self.edits = Edits(db, config)
        self.queries = Queries(db, config)
        self.tokens = Tokens(db)
        self.idempotency = Idempotency(db)
        self.events = Events(db)
        self.outbox = Outbox(db)
        self.settings = RuntimeSettings(db, config.match)
        self.intake = Intake(db, config, seen=seen, clock=clock)
        self.settings.on_change.append(self.intake.forget_settings)
        # Used by the adapters (bot, mail, phone).
        self.followups = Followups(db)
        self.messages = Messages(db)
        self.chat_states = ChatStates(db)
        self.prompts = Prompts(db)
        self.mail_state = MailState(db)
        self.health = ChannelHealth(db)
        # Mail held in the spam folders (the console's quarantine page).
        self.quarantine = Quarantine(db)
        self.external_calls = ExternalCalls(db, config.default_region)
        self.telephony = Telephony(db)
        self.phone_lines = PhoneLines(db)
        # The caller lookup's fast path; `telephony.caller` answers where it has no reader.
        self.callers = CallerLookup(db, self.telephony)
        # The web console's sign-in links and sessions.
        self.web_sessions = WebSessions(
            db, session_ttl=timedelta(hours=config.web_session_hours), clock=clock
        )
        # Team numbers (bot /stats, the console dashboard).
        self.stats = Stats(db, config, clock)
        # The supervisor's /team, the morning digest.
        self.team = Team(db, config)

    @property
    def changes(self) -> Feed:
        """The change feed: `async for change in crm.changes.subscribe()` (crm.changes)."""
        return self.db.feed

    async def prepare(self) -> None:
        """Start-up work on a migrated database: pipelines from config, configured admins.

        Several workers may start at once; one of them wins each insert and the others
        retry and find the rows in place."""
        for attempt in range(3):
            try:
                async with self.db.transaction() as s:
                    await sync_pipelines(s, self.config)
                await self.reps.ensure_admins(self.config.admin_telegram_ids)
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    async def close(self) -> None:
        """Close the lookup readers (opened at first use); the `Database` is the owner's to
        dispose of, after this."""
        await self.callers.close()
        await self.telephony.close()
