"""A rep's answer as an SMS: one `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` to
Twilio's REST API (basic auth with the account SID and auth token, form body To / From / Body).
From is the number of ours the customer last wrote to, else the configured `from_number`.

Twilio answers 201 with the message resource (its `sid` is the outgoing activity's external id)
or a 4xx with `{"code", "message"}`: the rep reads that message. Anything else means the SMS may
or may not have gone out; the rep is told so.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from crm.dto import ActivityView
from crm.errors import Conflict
from crm.replies import Sent
from matching.event import Channel

MAX_CHARS = 1600  # Twilio refuses longer bodies (error 21617)


class TwilioSms:
    """The SMS channel's `ReplySender`."""

    channel = Channel.SMS

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        timeout: float = 10.0,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        basic = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.headers = {"Authorization": f"Basic {basic}"}
        self.from_number = from_number
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def max_chars(self) -> int:
        return MAX_CHARS

    def refusal(self, answering: ActivityView | None) -> str | None:
        return None

    def sender_for(self, answering: ActivityView | None) -> str:
        """The number the customer wrote to, when we know it: an answer from another of our
        numbers reads as a stranger's and its replies would reach a line nobody watches."""
        ours = answering.meta.get("to") if answering is not None else None  # checked on receipt
        return ours if isinstance(ours, str) and ours else self.from_number

    async def send(self, to: str, text: str, *, answering: ActivityView | None = None) -> Sent:
        sender = self.sender_for(answering)
        form = {"To": to, "From": sender, "Body": text}
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as http,
                http.post(self.url, data=form, headers=self.headers) as resp,
            ):
                status = resp.status
                doc: Any = await resp.json(content_type=None) if resp.content_length != 0 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise Conflict(
                f"Twilio did not answer; the SMS may not have been sent ({type(err).__name__})"
            ) from None
        if 200 <= status < 300 and isinstance(doc, dict) and isinstance(doc.get("sid"), str):
            meta = {
                "message_sid": doc["sid"],
                "from": sender,
                "status": doc.get("status"),
            }
            return Sent(doc["sid"], meta)
        if 400 <= status < 500 and isinstance(doc, dict):
            reason = str(doc.get("message") or "refused")[:300]
            code = f" (error {doc['code']})" if doc.get("code") else ""
            raise Conflict(f"Twilio did not send the SMS: {reason}{code}")
        raise Conflict(
            f"Twilio did not answer as expected (HTTP {status}); the SMS may not have been sent"
        )
