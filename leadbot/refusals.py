"""Every request Leadbot refuses (a 4xx answer) is counted in /metrics and logged, so a wrong
token, signature or public URL on the sender's side shows up here too.

Counted by route pattern (`/hooks/twilio/voice`, `/rest/{user}/{token}/{method}`: the pattern,
never the path, so no token reaches a label) and status. Logged at WARNING with the reason the
client was given, at most once a minute per route and status: a sender retrying a bad request,
or someone probing, cannot flood the log; the next line says how many were not logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute
from prometheus_client import Counter

log = logging.getLogger("leadbot.refused")

LOG_EVERY = 60.0  # seconds between two lines for one route and status


def route_of(request: web.Request) -> str:
    """The matched route's pattern; "unmatched" for a path no route serves."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None or request.match_info.http_exception is not None:
        return "unmatched"
    return resource.canonical


def reason_of(response: web.StreamResponse) -> str:
    """The reason the client was told: `detail` / `error_description` / `error` of a JSON body."""
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or not body.startswith(b"{"):
        return response.reason or ""
    try:
        doc = json.loads(body)
    except ValueError:
        return response.reason or ""
    if not isinstance(doc, dict):
        return response.reason or ""
    for key in ("detail", "error_description", "error"):
        if isinstance(doc.get(key), str):
            return str(doc[key])[:300]
    return response.reason or ""


# Told of every request to a webhook source: (route pattern, status, reason if refused).
RequestNote = Callable[[str, int, str], None]


class Refusals:
    def __init__(
        self,
        counter: Counter,
        clock: Callable[[], float] = time.monotonic,
        note: RequestNote | None = None,
    ) -> None:
        self.counter = counter
        self.clock = clock
        self.note = note
        # The route patterns of the channels' webhooks (set when the app is built): channel
        # health shows each one's last accepted and last refused request.
        self._sources: frozenset[str] = frozenset()
        # A matched route's source pattern (None: no webhook's), found once per route: this
        # runs on every request.
        self._source_of: dict[AbstractRoute, str | None] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._quiet: dict[tuple[str, int], int] = {}

    def record(self, request: web.Request, response: web.StreamResponse) -> None:
        route, status = route_of(request), response.status
        self.counter.labels(route=route, status=str(status)).inc()
        key, now = (route, status), self.clock()
        last = self._last.get(key)
        if last is not None and now - last < LOG_EVERY:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return
        self._last[key] = now
        more = self._quiet.pop(key, 0)
        log.warning(
            "refused %s %s (%s) from %s: %d %s%s",
            request.method,
            request.path,
            route,
            request.remote,
            status,
            reason_of(response),
            f" [{more} more like it not logged since the last line]" if more else "",
        )

    @property
    def sources(self) -> frozenset[str]:
        return self._sources

    @sources.setter
    def sources(self, patterns: frozenset[str]) -> None:
        self._sources, self._source_of = patterns, {}

    def _source(self, request: web.Request) -> str | None:
        match = request.match_info
        try:
            return self._source_of[match.route]
        except KeyError:
            pass
        route = route_of(request)
        source = route if route in self._sources else None
        if match.http_exception is None:  # a route of the app's (an unmatched one is new)
            self._source_of[match.route] = source
        return source

    def noted(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.note is None or not self._sources:
            return
        source = self._source(request)
        if source is not None:
            status = response.status
            self.note(source, status, reason_of(response) if status >= 400 else "")

    def answered(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every answer (or HTTPException raised as one) passes here: a 4xx is recorded, a
        webhook's request noted."""
        if 400 <= response.status < 500:
            self.record(request, response)
        self.noted(request, response)
