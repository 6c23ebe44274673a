"""Intake in parts: batching and exactly-once (`batching`), rounds and conflict keys
(`rounds`), decision → rows (`apply`), per-channel labels (`labels`), outbox cards
(`notify`), stored outcomes and results (`outcomes`), call-meta merge (`callmeta`)."""

from crm.intake.batching import SETTINGS_TTL, Intake, SeenCache
from crm.intake.callmeta import merge_call_meta
from crm.intake.labels import ACTIVITY_KIND, SOURCE

__all__ = ["ACTIVITY_KIND", "SETTINGS_TTL", "SOURCE", "Intake", "SeenCache", "merge_call_meta"]
