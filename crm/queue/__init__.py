"""The event queue between channels and intake, with two backends behind one interface.

In-process (default): an asyncio queue, nothing to install (journaled on disk by
`crm.journal`). Redis Streams (when a Redis URL is configured): a consumer group shares the work
among worker processes; a message is acknowledged (and deleted) only after intake committed it,
and messages a dead worker left pending are reclaimed with XAUTOCLAIM. Idempotent intake makes
a redelivered message take effect once.

What travels is a `QueueItem`: a normalized `InboundEvent`, or a `RawInput` a channel accepted
(verified, validated) and left for the worker to turn into its event, so that a busy webhook
answers sooner.

Every queue retries an item intake could not take, with capped exponential backoff. An outage
(`crm.outage.is_outage`: the database or Redis is down) never counts toward giving up; after
`RetryPolicy.max_failures` other failures the item moves to the dead letters, where
`leadbot dead` lists it, puts it back or drops it.

Modules: `contract` (items, outcomes, retry policy, the protocol), `local` (in process),
`redis_stream` (Redis Streams), `batching` (batches and grouped writes), `wire` (the item
format on Redis and in the journal).
"""

from crm.queue.batching import GroupCommit, next_batch
from crm.queue.contract import (
    DONE,
    MAX_BATCH,
    Backlog,
    DeadHook,
    EventQueue,
    Handler,
    OutageWait,
    Outcome,
    QueueItem,
    RawInput,
    RetryPolicy,
    describe,
    handle_batch,
    outcome_of,
    wait_or_stop,
)
from crm.queue.local import InProcessQueue, LocalQueue, Waiting
from crm.queue.redis_stream import RedisSeen, RedisStreamQueue
from crm.queue.wire import decode_item, encode_item

__all__ = [
    "DONE",
    "MAX_BATCH",
    "Backlog",
    "DeadHook",
    "EventQueue",
    "GroupCommit",
    "Handler",
    "InProcessQueue",
    "LocalQueue",
    "OutageWait",
    "Outcome",
    "QueueItem",
    "RawInput",
    "RedisSeen",
    "RedisStreamQueue",
    "RetryPolicy",
    "Waiting",
    "decode_item",
    "describe",
    "encode_item",
    "handle_batch",
    "next_batch",
    "outcome_of",
    "wait_or_stop",
]
