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
        self.notifications = Counter(
            "leadbot_notifications_sent_total",
            "Telegram notifications delivered",
            ["kind"],
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
