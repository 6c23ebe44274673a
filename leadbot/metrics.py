"""Prometheus metrics, one registry per service instance (nothing global at import time)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter(
            "leadbot_events_received_total",
            "Inbound events received",
            ["channel"],
            registry=self.registry,
        )
        self.processed = Counter(
            "leadbot_events_processed_total",
            "Inbound events processed",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.failed = Counter(
            "leadbot_events_failed_total",
            "Inbound events whose processing raised",
            ["channel"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "leadbot_inbound_rejected_total",
            "Input a channel acknowledged but could not read (logged with the reason)",
            ["channel"],
            registry=self.registry,
        )
        self.refused = Counter(
            "leadbot_http_refused_total",
            "Requests answered 4xx, by route pattern and status (each logged, rate-limited)",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "leadbot_event_processing_seconds",
            "From receipt to committed outcome",
            ["channel"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.queue_depth = Gauge(
            "leadbot_queue_depth", "Events waiting in the queue", registry=self.registry
        )
        self.outbox_pending = Gauge(
            "leadbot_outbox_pending",
            "Rep notifications not yet delivered",
            registry=self.registry,
        )
        # Health (docs/operations/health.md): set from the supervisor, the queue's backlog and
        # the mailbox workers each time /metrics is read (the backlog also every 5 s).
        self.task_up = Gauge(
            "leadbot_task_up",
            "1 while a supervised task runs (or finished its one-off work), 0 otherwise",
            ["task"],
            registry=self.registry,
        )
        self.task_restarts = Gauge(
            "leadbot_task_restarts",
            "Times a supervised task was restarted after an unexpected end",
            ["task"],
            registry=self.registry,
        )
        self.backlog_items = Gauge(
            "leadbot_queue_backlog_items",
            "Items waiting for intake or handed out and not yet done",
            registry=self.registry,
        )
        self.backlog_age = Gauge(
            "leadbot_queue_oldest_age_seconds",
            "How long the oldest item waiting for intake has waited (0: none)",
            registry=self.registry,
        )
        self.mailbox_connected = Gauge(
            "leadbot_mailbox_connected",
            "1 when the mailbox's last login succeeded",
            ["mailbox"],
            registry=self.registry,
        )
        # --- queue dead letters (crm.queue, crm.deadletters) ---
        self.dead_letters = Counter(
            "leadbot_dead_letters_total",
            "Queued items this process gave up on and moved to the dead letters",
            registry=self.registry,
        )
        self.dead_letters_waiting = Gauge(
            "leadbot_dead_letters_waiting",
            "Dead letters waiting for an operator (leadbot dead list)",
            registry=self.registry,
        )
        self.cards = CardCounters(self.registry)


class CardCounters:
    """Cards delivered and refused: what the rep bot's notifier reports (bot.notifier)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._sent = Counter(
            "leadbot_notifications_sent_total",
            "Outbox cards Telegram accepted, one per card and recipient, in any form",
            ["kind"],
            registry=registry,
        )
        self._fallback = Counter(
            "leadbot_cards_fallback_total",
            "Cards delivered in a reduced form after Telegram refused the full one (400)",
            ["form"],
            registry=registry,
        )
        self._undeliverable = Counter(
            "leadbot_cards_undeliverable_total",
            "Cards Telegram refused for a recipient in every form",
            ["reason"],
            registry=registry,
        )
        self._dropped = Counter(
            "leadbot_cards_dropped_total",
            "Notifications no recipient received (the rep blocked the bot, every stand-in refused)",
            registry=registry,
        )

    def sent(self, kind: str) -> None:
        self._sent.labels(kind).inc()

    def fallback(self, form: str) -> None:
        self._fallback.labels(form).inc()

    def undeliverable(self, reason: str) -> None:
        self._undeliverable.labels(reason).inc()

    def dropped(self) -> None:
        self._dropped.inc()
