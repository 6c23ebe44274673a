"""An accepted (or attach-only) mail as the `InboundEvent` the matcher works on."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from channels.event import Channel, Direction, InboundEvent, RegisterMode
from channels.mail.filters import MailPolicy, Verdict, VerdictKind, customer
from channels.mail.parse import ParsedMail

BODY_LIMIT = 20_000  # characters of the full body kept in meta["body"]
_CLOCK_SKEW = timedelta(days=1)  # a Date further ahead than this is a wrong clock
_EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def to_event(
    parsed: ParsedMail,
    mailbox: str,
    region: str | None,
    policy: MailPolicy,
    verdict: Verdict,
    *,
    now: datetime,
) -> InboundEvent:
    """Build the event; `now` (aware) stands in for a missing or implausible Date header.

    An ignored mail's event carries the filter's reason as `meta["filtered"]`: intake logs it
    as ignored and writes nothing else.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    person = customer(parsed, policy)
    if person is parsed.sender and parsed.sender.address in policy.robot_senders:
        # A configured form robot without Reply-To: the customer's address is in the fields.
        emails = _address_in_body(parsed, policy)
        display_name = None
    else:
        emails = (person.address,)
        # "alice@example.com <bob@example.com>": an address shown as the name is no name.
        display_name = person.name if person.name and "@" not in person.name else None
    occurred = parsed.date if parsed.date and parsed.date <= now + _CLOCK_SKEW else now
    if verdict.kind is VerdictKind.ATTACH_ONLY:
        mode = RegisterMode.ONLY_UPDATE
    elif parsed.sender.address in policy.robot_senders:
        mode = RegisterMode.ALWAYS_ADD
    else:
        mode = RegisterMode.DEFAULT
    return InboundEvent(
        channel=Channel.EMAIL,
        external_id=parsed.message_id,
        occurred_at=occurred,
        direction=Direction.INCOMING,
        display_name=display_name,
        emails=emails,
        subject=parsed.subject or None,
        text=parsed.preview or None,
        attachments=parsed.attachments,
        source="EMAIL",
        line=mailbox,
        phone_region=region,
        register_mode=mode,
        hint_phones=parsed.hint_phones,
        meta={
            "message_id": parsed.message_id,
            "mailbox": mailbox,  # a rep's answer goes out from the mailbox it came to
            "in_reply_to": parsed.in_reply_to,
            "references": list(parsed.references),
            "from": parsed.sender.address,
            "customer": person.address,  # the rate limit counts per customer address
            "to": list(parsed.to),
            "cc": list(parsed.cc),
            "body": parsed.text[:BODY_LIMIT],
            "verdict_reason": verdict.reason,
            # An ignored mail still reaches the event log, with why; intake makes no record.
            **({"filtered": verdict.reason} if verdict.kind is VerdictKind.IGNORE else {}),
        },
    )


def _address_in_body(parsed: ParsedMail, policy: MailPolicy) -> tuple[str, ...]:
    ours = policy.own_addresses | policy.robot_senders | {parsed.sender.address}
    for match in _EMAIL_IN_TEXT.finditer(parsed.text):
        address = match[0].lower().rstrip(".")
        if address not in ours:
            return (address,)
    return ()
