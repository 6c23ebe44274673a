"""Shortcuts the call webhook takes on every request answer as the long way does: the
internal-call check of a number written as compact E.164, and the recent-id memory's
trimming."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from channels.phone import calls, webhooks
from channels.phone.calls import CallDirection, CallReport, CallStage, plainly_internal
from channels.phone.context import QueueStatus, RecentBodies, RecentIds
from matching.normalize import is_withheld

_DIGITS = st.text(alphabet="0123456789\u0660\u00b2 +-", max_size=14)
_NUMBER = (
    st.builds(lambda d: "+" + d, _DIGITS)
    | _DIGITS
    | st.sampled_from(["+4989111222", " +4989111222 ", "+", "101", "anonymous", "sip:1@x"])
    | st.text(max_size=16)
)


@given(
    number=_NUMBER,
    internal=st.frozensets(_NUMBER, max_size=3),
    ours=st.frozensets(_NUMBER | st.just("089 111222"), max_size=3),
    outgoing=st.booleans(),
    region=st.sampled_from(["DE", "US", None]),
)
def test_plainly_internal_of_any_number_is_the_long_ways(
    number: str, internal: frozenset[str], ours: frozenset[str], outgoing: bool, region: str | None
) -> None:
    direction = CallDirection.OUTGOING if outgoing else CallDirection.INCOMING
    report = CallReport(
        call_id="c",
        stage=CallStage.RINGING,
        direction=direction,
        from_number=None if outgoing else number,
        to_number=number if outgoing else None,
    )
    quick = plainly_internal(
        report, line_region=region, internal_extensions=internal, our_numbers=ours
    )
    assert quick == calls._spelled_internal(number.strip(), region, internal, ours)
    # Our own number as sent, and an extension, are internal whatever the spelling's path.
    if number.strip():
        assert plainly_internal(
            report,
            line_region=region,
            internal_extensions=frozenset(),
            our_numbers=frozenset({number.strip()}),
        ) == (not is_withheld(number))


class _LongHand:
    """The recent-id memory as it was: every add trims the expired and the excess at once."""

    def __init__(self, ttl: float, max_size: int) -> None:
        self.ttl, self.max_size = ttl, max_size
        self.seen: OrderedDict[str, float] = OrderedDict()

    def add(self, key: str, now: float) -> None:
        self.seen[key] = now
        self.seen.move_to_end(key)
        while self.seen and (
            len(self.seen) > self.max_size or now - next(iter(self.seen.values())) > self.ttl
        ):
            self.seen.popitem(last=False)

    def has(self, key: str, now: float) -> bool:
        stamp = self.seen.get(key)
        return stamp is not None and now - stamp < self.ttl


@given(
    ttl=st.sampled_from([0.0, 1.0, 5.0]),
    max_size=st.integers(min_value=0, max_value=4),
    steps=st.lists(
        st.tuples(st.sampled_from("abcdef"), st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0])),
        max_size=40,
    ),
)
def test_recent_ids_remember_and_forget_as_the_long_hand(
    ttl: float, max_size: int, steps: list[tuple[str, float]]
) -> None:
    clock = [1000.0]
    with mock.patch.object(time, "monotonic", lambda: clock[0]):
        recent, model = RecentIds(ttl=ttl, max_size=max_size), _LongHand(ttl, max_size)
        for key, wait in steps:
            clock[0] += wait
            recent.add(key)
            model.add(key, clock[0])
            for other in "abcdef":
                assert (other in recent) == model.has(other, clock[0])
            # The same ids kept, in the same order: memory stays bounded the same.
            assert recent._seen == model.seen


@given(
    max_size=st.integers(min_value=1, max_value=4),
    digests=st.lists(st.sampled_from("abcdefg"), max_size=40),
)
def test_recent_bodies_keep_the_latest_digests_as_a_plain_dict_did(
    max_size: int, digests: list[str]
) -> None:
    # Ordered now (a plain dict's oldest-first deletions made every add walk over holes):
    # the same digests remembered, a digest added again keeping its place.
    bodies, model = RecentBodies(max_size=max_size), dict[str, tuple[str, bytes]]()
    for n, digest in enumerate(digests):
        bodies.add(digest, f"e{n}", b'"e%d"' % n)
        if digest not in model and len(model) >= max_size:
            del model[next(iter(model))]
        model[digest] = (f"e{n}", b'"e%d"' % n)
        assert list(bodies._known.items()) == list(model.items())
        assert all(bodies.get(d) == model.get(d) for d in "abcdefg")


@given(
    status=st.sampled_from(["accepted", "duplicate", "ignored"]),
    event=st.text(max_size=40).map(lambda call_id: f"{call_id}:ringing"),
)
def test_the_webhooks_reply_is_what_json_dumps_would_send(status: QueueStatus, event: str) -> None:
    # Built by concatenation from heads made once per status: the same JSON as json.dumps
    # (msgspec writes non-ASCII as UTF-8 where json.dumps would escape it: the same document).
    body = webhooks._reply_body(status, webhooks._encode(event))
    assert json.loads(body) == {"status": status, "event": event}
    if event.isascii():
        assert body == json.dumps({"status": status, "event": event}).encode()
    reply = webhooks._reply(status, webhooks._encode(event))
    assert reply.status == (202 if status == "accepted" else 200) and reply.body == body
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
