"""Twilio's request signature (X-Twilio-Signature), sans-I/O: the voice webhooks of the phone
channel and the SMS channel's incoming messages are signed the same way.

The caller passes the auth token, the *public* URL Twilio called and the parameters it sent.
Failures raise `httpkit.SignatureError` with a reason safe to return to the client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

from httpkit import SignatureError

TWILIO_HEADER = "X-Twilio-Signature"
# Where Twilio names a non-default algorithm: "algorithm=HMAC_SHA256" among other settings.
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

_ALGORITHMS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}

# Form parameters as a plain dict, a dict of lists, or a multidict (aiohttp / werkzeug) whose
# `getall` returns every value of a repeated name.
TwilioParams = Mapping[str, str] | Mapping[str, Sequence[str]]


def _bytes(text: str) -> bytes:
    # Header and form values may carry lone surrogates (undecodable bytes): they must fail the
    # comparison, not raise.
    return text.encode("utf-8", "surrogatepass")


def algorithm_of(settings_header: str | None) -> str:
    """The algorithm the `X-Twilio-Webhooks-Signature-Settings` header names; HMAC_SHA1 when
    it names none."""
    for part in (settings_header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "algorithm" and value.strip():
            return value.strip()
    return "HMAC_SHA1"


def _values(params: TwilioParams, name: str) -> list[str]:
    getall = getattr(params, "getall", None)
    if callable(getall):
        return [str(v) for v in getall(name)]
    value = params[name]
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def twilio_signature(
    auth_token: str, url: str, params: TwilioParams | None, algorithm: str = "HMAC_SHA1"
) -> str:
    """X-Twilio-Signature for a request: the URL, then each parameter name (sorted) followed by
    each of its distinct values (sorted), HMAC with the auth token, base64.

    Raises ValueError for an algorithm other than HMAC_SHA1 / HMAC_SHA256.
    """
    digest = _ALGORITHMS.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}")
    message = url
    for name in sorted(set(params or {})):
        # Twilio's own validator drops repeated identical values, so we do too.
        for value in sorted(set(_values(params or {}, name))):
            message += name + value
    mac = hmac.new(_bytes(auth_token), _bytes(message), digest)
    return base64.b64encode(mac.digest()).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given plus with / without an explicit default port: Twilio is inconsistent
    about which one it signs."""
    variants = [url]
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return variants
    netloc = parts.netloc
    if port is not None:
        bare = netloc[: netloc.rfind(":")]
    else:
        bare = netloc + (":443" if parts.scheme == "https" else ":80")
    variants.append(urlunsplit(parts._replace(netloc=bare)))
    if port is not None:
        variants.append(urlunsplit(parts))
    return variants


def verify_twilio(
    auth_token: str,
    url: str,
    params: TwilioParams | None,
    signature: str | None,
    *,
    body: bytes | None = None,
    algorithm: str = "HMAC_SHA1",
) -> None:
    """Check X-Twilio-Signature against the *public* URL Twilio called (scheme, host, path and
    query, as configured for a reverse proxy). Raises SignatureError.

    JSON-body webhooks carry `?bodySHA256=<hex>` in the URL: then `body` must hash to it and
    the signature covers the URL alone.
    """
    if signature is None or not signature.strip():
        raise SignatureError(f"missing {TWILIO_HEADER} header")
    if algorithm.upper() not in _ALGORITHMS:
        raise SignatureError(f"unsupported signature algorithm {algorithm!r}")
    body_hash = parse_qs(urlsplit(url).query).get("bodySHA256")
    if body_hash:
        if body is None:
            raise SignatureError("bodySHA256 given but no body")
        actual = hashlib.sha256(body).hexdigest().encode()
        if not hmac.compare_digest(actual, _bytes(body_hash[0])):
            raise SignatureError("body does not match bodySHA256")
        params = None
    given = _bytes(signature.strip())
    matched = False
    for variant in _url_variants(url):
        expected = twilio_signature(auth_token, variant, params, algorithm).encode()
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise SignatureError("signature mismatch")
