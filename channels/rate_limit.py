"""A sliding-window rate limiter with the clock passed in, so it is pure and testable.

The web-form route keeps one per form and keys it by client address. State lives in memory of
one process; that is enough to stop a bot hammering one form, not a distributed quota.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class RateLimiter:
    """At most `limit` hits per `window` seconds per key; `limit` 0 means unlimited."""

    def __init__(self, limit: int, window: float = 60.0, *, max_keys: int = 10_000) -> None:
        if limit < 0 or window <= 0 or max_keys < 1:
            raise ValueError("limit must be >= 0, window > 0 and max_keys >= 1")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        # The keys in the order they came (the oldest is dropped first when too many are
        # busy), and the same keys in the order of their last hit (the idle ones lead): a
        # flood of new addresses finds what to drop without a walk over all of them.
        # OrderedDicts: a plain dict whose oldest key is deleted over and over walks the
        # holes the deletions leave to find the next oldest.
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._last: OrderedDict[str, None] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        """Count a hit for `key` at `now` (monotonic seconds) if it is within the limit."""
        if self.limit == 0:
            return True
        hits = self._recent(key, now)
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        self._hits[key] = hits
        last = self._last
        if key in last:
            last.move_to_end(key)
        else:
            last[key] = None
        if len(self._hits) > self.max_keys:
            self._evict(now)
        return True

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may hit again (0 when it may now); for a Retry-After header."""
        if self.limit == 0:
            return 0.0
        hits = self._recent(key, now)
        if len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.window - now)

    def __len__(self) -> int:
        """Number of keys currently tracked."""
        return len(self._hits)

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits and self._hits.pop(key, None) is not None:
            del self._last[key]
        return hits

    def _evict(self, now: float) -> None:
        # Forget idle keys first (those hit last before the window); if a flood of distinct
        # addresses remains, drop the oldest ones so memory stays bounded.
        idle = now - self.window
        hits, last = self._hits, self._last
        while last:
            key = next(iter(last))
            if hits[key][-1] > idle:
                break
            del last[key], hits[key]
        while len(hits) > self.max_keys:
            del last[hits.popitem(last=False)[0]]
