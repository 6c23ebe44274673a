"""Webhook authentication: our generic HMAC-SHA256 scheme (Twilio's X-Twilio-Signature is
`httpkit.twilio`, shared with the SMS channel).

Everything here is pure: the caller passes the secret, the raw body / parsed parameters, the
public URL and the current time. Failures raise `SignatureError` with a reason that is safe to
return to the client (it never contains the expected signature).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence

from httpkit import SignatureError

GENERIC_HEADER = "X-Leadbot-Signature"
DEFAULT_WINDOW = 300  # seconds a signed timestamp stays acceptable, both directions (clock skew)

_MAX_HEADER = 4096
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# What senders (and sign_generic) send: one t= and one v1=, nothing else. Read in one match;
# anything else goes through the general parser.
_CANONICAL = re.compile(r"t=([0-9]{1,12}),v1=([0-9a-fA-F]{64})")
# One secret, or several while one is rotated.
Secrets = str | bytes | Sequence[str | bytes]


def _key(secret: str | bytes) -> bytes:
    return _bytes(secret) if isinstance(secret, str) else secret


def _bytes(text: str) -> bytes:
    # Header and form values may carry lone surrogates (undecodable bytes): they must fail the
    # comparison, not raise.
    return text.encode("utf-8", "surrogatepass")


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer hash states made once: a message
    costs two copies and two updates. hmac.digest fetches the digest from OpenSSL and keys it
    anew on every call, which in a busy server costs several times as much."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def hexdigest(self, head: bytes, body: bytes) -> str:
        inner = self._inner.copy()
        inner.update(head)
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


_BLOCK = hashlib.sha256().block_size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=16)  # the configured secrets: one, two during a rotation
def _hmac_of(key: bytes) -> _HmacSha256:
    return _HmacSha256(key)


def _generic_digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    return _hmac_of(_key(secret)).hexdigest(b"%d." % timestamp, body)


def sign_generic(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The `X-Leadbot-Signature` value a sender puts on `body`: `t=<unix>,v1=<hex>`."""
    return f"t={timestamp},v1={_generic_digest(secret, timestamp, body)}"


def _parse_generic_header(header: str) -> tuple[int, list[str]]:
    canonical = _CANONICAL.fullmatch(header)
    if canonical is not None:
        return int(canonical[1]), [canonical[2].lower()]
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        value = value.strip()
        if name == "t":
            if timestamp is not None or not _TIMESTAMP.match(value):
                raise SignatureError("malformed signature header: bad t=")
            timestamp = int(value)
        elif name == "v1":
            if not _HEX_SHA256.match(value.lower()):
                raise SignatureError("malformed signature header: bad v1=")
            signatures.append(value.lower())
        # Other schemes (v0, v2 …) are ignored so senders can add one without breaking us.
    if timestamp is None or not signatures:
        raise SignatureError("malformed signature header: needs t= and v1=")
    return timestamp, signatures


def verify_generic(
    secret: Secrets, header: str | None, body: bytes, now: float, window: int = DEFAULT_WINDOW
) -> int:
    """Check an `X-Leadbot-Signature` header; returns its timestamp or raises SignatureError.

    Several secrets (ours, during a rotation) and several v1= values (the sender's, during its
    rotation) are accepted: any pair that agrees is enough. Replays inside the window are not
    detected here; the call id + stage external id makes a replayed event a duplicate.
    """
    return check_generic(secret, header, body, now, window)[0]


def _usual(key: bytes, header: str, body: bytes, now: float, window: int) -> tuple[int, str] | None:
    """What every request of a sender that signs as `sign_generic` does comes to: one secret,
    the header `t=<digits>,v1=<64 lower-case hex>`, a valid signature. Checked without the
    general parser's lists; None for anything else, which the general path then refuses with
    its reason (or accepts: upper-case hex, several v1= during the sender's rotation)."""
    sep = len(header) - 68
    if sep < 3 or header[:2] != "t=" or header[sep : sep + 4] != ",v1=" or not header.isascii():
        return None
    stamp = header[2:sep]
    if not (stamp.isdigit() and len(stamp) <= 12):
        return None
    timestamp = int(stamp)
    if abs(now - timestamp) > window:
        return None
    digest = _hmac_of(key).hexdigest(b"%d." % timestamp, body)
    # A v1= that is not hex never equals the digest; the general path words its refusal.
    return (timestamp, digest) if hmac.compare_digest(header[-64:], digest) else None


def check_generic(
    secret: Secrets, header: str | None, body: bytes, now: float, window: int = DEFAULT_WINDOW
) -> tuple[int, str]:
    """`verify_generic`, also returning the (hex) digest that matched. The same digest again
    means the same body signed for the same second: a replay, known without parsing it."""
    if isinstance(secret, bytes) and header is not None:
        usual = _usual(secret, header, body, now, window)
        if usual is not None:
            return usual
    return _check(secret, header, body, now, window)


def _check(
    secret: Secrets, header: str | None, body: bytes, now: float, window: int
) -> tuple[int, str]:
    if header is None or not header.strip():
        raise SignatureError(f"missing {GENERIC_HEADER} header")
    if len(header) > _MAX_HEADER:
        raise SignatureError("malformed signature header: too long")
    timestamp, signatures = _parse_generic_header(header)
    if abs(now - timestamp) > window:
        raise SignatureError(f"signature timestamp outside the {window} s window")
    secrets: Iterable[str | bytes] = (secret,) if isinstance(secret, (str, bytes)) else secret
    expected = [_generic_digest(s, timestamp, body) for s in secrets]
    # Compare every pair so the time taken does not depend on which one matched. Both sides
    # are lower-case hex (the header's checked by _HEX_SHA256), so comparing str is safe.
    matched: str | None = None
    for candidate in signatures:
        for digest in expected:
            if hmac.compare_digest(candidate, digest):
                matched = digest
    if matched is None:
        raise SignatureError("signature mismatch")
    return timestamp, matched
