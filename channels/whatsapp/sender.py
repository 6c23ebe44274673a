"""A rep's answer on WhatsApp: one `POST /{version}/{phone_number_id}/messages` to the Cloud
API (bearer token, a `text` message) to the customer's phone number (`to`) or, when only their
business-scoped user id is known, to that id (`recipient`).

Free-form messages are allowed only within 24 hours of the customer's last message (the
customer-service window; our own messages do not reopen it). Outside it nothing is sent and the
rep is told why; approved templates, the only way to write then, are not offered. Meta's own
refusal of a closed window (error 131047) gets the same sentence, for a clock that disagrees.
A timeout or a 5xx is not retried: the message may have gone out, and a second POST would send
it twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from crm.dto import ActivityView
from crm.errors import Conflict
from crm.replies import Sent
from matching.event import Channel

MAX_CHARS = 4096  # the Cloud API's limit for a text body
WINDOW = timedelta(hours=24)
WINDOW_CLOSED = 131047  # "Re-engagement message": more than 24 h since the customer wrote
_PHONE = re.compile(r"\+?[0-9]{5,15}")
# Short enough for Telegram's 200-character button answer, where a rep first reads it.
CLOSED = (
    "WhatsApp allows a free-form reply only within 24 hours of the customer's last message "
    "({since}). Nothing was sent; call them or wait until they write again."
)


def window_closed(answering: ActivityView | None, now: datetime) -> str | None:
    """Why a free-form message may not be sent now, or None when the window is open."""
    if answering is None:
        return CLOSED.format(since="they have not written on WhatsApp")
    last = answering.last_attempt_at or answering.created_at
    if last.tzinfo is None:  # SQLite hands back naive UTC
        last = last.replace(tzinfo=UTC)
    if now - last < WINDOW:
        return None
    hours = int((now - last).total_seconds() // 3600)
    return CLOSED.format(since=f"they last wrote {hours} hours ago")


class CloudApiReplies:
    """The WhatsApp channel's `ReplySender`."""

    channel = Channel.WHATSAPP

    def __init__(
        self,
        *,
        base_url: str,
        api_version: str,
        phone_number_id: str,
        access_token: str,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/{api_version}/{phone_number_id}/messages"
        self.headers = {"Authorization": f"Bearer {access_token}"}
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.clock = clock

    @property
    def max_chars(self) -> int:
        return MAX_CHARS

    def refusal(self, answering: ActivityView | None) -> str | None:
        return window_closed(answering, self.clock())

    async def send(self, to: str, text: str, *, answering: ActivityView | None = None) -> Sent:
        if (closed := self.refusal(answering)) is not None:
            raise Conflict(closed)
        # Back to the number (else the business-scoped id) the customer last wrote from.
        wrote = answering.meta if answering is not None else {}
        to = str(wrote.get("wa_id") or wrote.get("user_id") or to)
        # A phone number (wa_id: digits) goes in `to`, a business-scoped user id in `recipient`.
        phone = _PHONE.fullmatch(to) is not None
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            ("to" if phone else "recipient"): to.lstrip("+"),
            "type": "text",
            "text": {"body": text, "preview_url": False},
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as http,
                http.post(self.url, json=body, headers=self.headers) as resp,
            ):
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Conflict(
                "WhatsApp did not answer; the message may or may not have been sent "
                f"({type(err).__name__}). Check with the customer before sending it again."
            ) from None
        doc = _json(raw)
        if 200 <= status < 300 and (message_id := _message_id(doc)) is not None:
            return Sent(message_id, {"wamid": message_id, "recipient": to})
        error = doc.get("error") if isinstance(doc, dict) else None
        if 400 <= status < 500 and isinstance(error, dict):
            if error.get("code") == WINDOW_CLOSED:
                raise Conflict(CLOSED.format(since="Meta says it has passed"))
            data = error.get("error_data")
            details = data.get("details") if isinstance(data, dict) else None
            reason = str(details or error.get("message") or "refused")[:300]
            code = f" (error {error['code']})" if error.get("code") else ""
            raise Conflict(f"WhatsApp did not send the message: {reason}{code}")
        raise Conflict(
            f"WhatsApp did not answer as expected (HTTP {status}); the message may or may not "
            "have been sent. Check with the customer before sending it again."
        )


def _json(raw: bytes) -> Any:
    """The answer's JSON; None for anything else (a proxy's error page)."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _message_id(doc: Any) -> str | None:
    messages = doc.get("messages") if isinstance(doc, dict) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        found = messages[0].get("id")
        return found if isinstance(found, str) and found else None
    return None
