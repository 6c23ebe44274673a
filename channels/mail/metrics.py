"""The mailbox workers' counters as Prometheus metrics, read from their stats at scrape time
(one collector per mail component on the host's registry; nothing global)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from channels.mail.worker import MailboxWorker


class MailCounters(Collector):
    def __init__(self, workers: Callable[[], Sequence[MailboxWorker]]) -> None:
        self._workers = workers

    def describe(self) -> list[Metric]:
        return []  # no fixed names to reserve: mailboxes come and go with the config

    def collect(self) -> Iterator[Metric]:
        spam = CounterMetricFamily(
            "leadbot_mail_spam",
            "Mails moved to the spam folder (never a record), by the layer that caught them",
            labels=["mailbox", "layer"],
        )
        unscanned = CounterMetricFamily(
            "leadbot_mail_unscanned",
            "Mails that went on unscanned because spamd was down or too slow",
            labels=["mailbox"],
        )
        age = GaugeMetricFamily(
            "leadbot_mailbox_last_sync_age_seconds",
            "Seconds since the mailbox's folder was last read to its end (absent before the first)",
            labels=["mailbox"],
        )
        now = time.time()
        for worker in self._workers():
            name = worker.config.name
            synced = worker.stats.sync_age(now)
            if synced is not None:
                age.add_metric([name], synced)
            for layer, count in sorted(worker.stats.spam.items()):
                spam.add_metric([name, layer], count)
            if worker.config.spam.spamd is not None:
                unscanned.add_metric([name], worker.spam_guard.unscanned)
        yield spam
        yield unscanned
        yield age
