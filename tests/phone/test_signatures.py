"""Generic HMAC header and X-Twilio-Signature: vectors, Twilio's own validator, tampering."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from channels.phone import signatures
from channels.phone.signatures import (
    DEFAULT_WINDOW,
    check_generic,
    sign_generic,
    verify_generic,
)
from httpkit import SignatureError
from httpkit.twilio import twilio_signature, verify_twilio

SECRET = "whsec-test"
BODY = b'{"event":"call.ringing","call_id":"c1"}'
NOW = 1_700_000_000


# --- generic ----------------------------------------------------------------------------------


def test_generic_round_trip_returns_the_timestamp() -> None:
    header = sign_generic(SECRET, NOW, BODY)
    assert header.startswith(f"t={NOW},v1=")
    assert verify_generic(SECRET, header, BODY, now=NOW + 10) == NOW


def test_generic_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hmac

    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_generic(SECRET, NOW, BODY) == f"t={NOW},v1={expected}"


@given(
    secret=st.one_of(st.binary(max_size=200), st.sampled_from([b"", b"k" * 64, b"k" * 65])),
    timestamp=st.integers(min_value=0, max_value=10**12 - 1),
    body=st.binary(max_size=500),
)
def test_generic_signature_agrees_with_hmac_for_any_key_length(
    secret: bytes, timestamp: int, body: bytes
) -> None:
    # The key's hash states are made once per secret (keys longer than SHA-256's block are
    # hashed first): the digest must be the standard library's for every key.
    import hmac

    expected = hmac.digest(secret, b"%d." % timestamp + body, "sha256").hex()
    header = sign_generic(secret, timestamp, body)
    assert header == f"t={timestamp},v1={expected}"
    assert verify_generic(secret, header, body, timestamp) == timestamp


@pytest.mark.parametrize("header", [None, "", "   "])
def test_generic_missing_header(header: str | None) -> None:
    with pytest.raises(SignatureError, match="missing"):
        verify_generic(SECRET, header, BODY, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"t={NOW}",
        "v1=" + "a" * 64,
        f"t=abc,v1={'a' * 64}",
        f"t={NOW},v1=xyz",
        f"t={NOW},t={NOW},v1={'a' * 64}",
        "t=" + "9" * 40 + ",v1=" + "a" * 64,
        "x" * 5000,
    ],
)
def test_generic_malformed_header(header: str) -> None:
    with pytest.raises(SignatureError, match="malformed"):
        verify_generic(SECRET, header, BODY, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 86_400])
def test_generic_outside_window_is_rejected(skew: int) -> None:
    header = sign_generic(SECRET, NOW, BODY)
    with pytest.raises(SignatureError, match="window"):
        verify_generic(SECRET, header, BODY, now=NOW + skew)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_generic_window_edges_are_accepted(skew: int) -> None:
    verify_generic(SECRET, sign_generic(SECRET, NOW, BODY), BODY, now=NOW + skew)


def test_generic_tampered_body_timestamp_or_secret_is_rejected() -> None:
    header = sign_generic(SECRET, NOW, BODY)
    with pytest.raises(SignatureError, match="mismatch"):
        verify_generic(SECRET, header, BODY + b" ", now=NOW)
    # A replay with a fresh t= but the old v1= does not verify.
    forged = header.replace(f"t={NOW}", f"t={NOW + 100}")
    with pytest.raises(SignatureError, match="mismatch"):
        verify_generic(SECRET, forged, BODY, now=NOW + 100)
    with pytest.raises(SignatureError, match="mismatch"):
        verify_generic("other", header, BODY, now=NOW)


def test_generic_rotation_on_either_side() -> None:
    old = sign_generic("old", NOW, BODY)
    new = sign_generic("new", NOW, BODY)
    # The sender signs with both secrets while rotating.
    both = f"{old},v1={new.split('v1=')[1]}"
    assert verify_generic("new", both, BODY, now=NOW) == NOW
    # We accept both secrets while rotating ours.
    assert verify_generic(["old", "new"], old, BODY, now=NOW) == NOW
    assert verify_generic(("new", b"old"), new, BODY, now=NOW) == NOW
    # Hex case does not matter.
    t_part, v_part = new.split(",")
    assert verify_generic("new", f"{t_part},{v_part.upper().replace('V1=', 'v1=')}", BODY, NOW)
    # Unknown schemes are ignored, not rejected.
    assert verify_generic("new", new + ",v0=whatever", BODY, now=NOW) == NOW


def test_generic_check_names_the_digest_that_matched() -> None:
    old, new = sign_generic("old", NOW, BODY), sign_generic("new", NOW, BODY)
    # The digest is ours for the secret that matched: the same body and second give the
    # same digest, whichever of the sender's signatures came first.
    assert check_generic(["old", "new"], old, BODY, now=NOW) == (NOW, old.split("v1=")[1])
    both = f"{old},v1={new.split('v1=')[1]}"
    assert check_generic("new", both, BODY, now=NOW) == (NOW, new.split("v1=")[1])
    # Another second: another digest.
    later = sign_generic("new", NOW + 1, BODY)
    assert check_generic("new", later, BODY, now=NOW)[1] != new.split("v1=")[1]


def _answer(check: Callable[[], tuple[int, str]]) -> tuple[int, str] | str:
    try:
        return check()
    except SignatureError as err:
        return err.reason


_HEADER_PARTS = st.sampled_from(
    [
        "t=",
        "t=0",
        "t=+1",
        "t=1700000000",
        "t=\u00b2",
        ",",
        "v1=",
        ",v1=",
        "v0=x",
        " ",
        "=",
        "\udcff",
    ]
)


@given(
    secret=st.binary(max_size=80),
    skew=st.integers(min_value=-400, max_value=400),
    body=st.binary(max_size=100),
    change=st.one_of(
        st.none(),
        st.tuples(st.integers(min_value=0, max_value=90), st.characters()),
        st.lists(_HEADER_PARTS | st.text(max_size=70), max_size=6).map("".join),
    ),
)
def test_generic_usual_header_is_answered_as_the_general_parser_does(
    secret: bytes, skew: int, body: bytes, change: tuple[int, str] | str | None
) -> None:
    # The header senders send is read by a shortcut (`_usual`): whatever the header, the
    # answer (timestamp and digest, or the refusal's reason) is the general parser's.
    header = sign_generic(secret, NOW, body)
    if isinstance(change, tuple):  # one character replaced (or added at the end)
        at, char = change
        header = header[:at] + char + header[at + 1 :]
    elif isinstance(change, str):
        header = change
    now = NOW + skew
    usual = _answer(lambda: check_generic(secret, header, body, now))
    assert usual == _answer(lambda: signatures._check(secret, header, body, now, DEFAULT_WINDOW))
    if change is None and abs(skew) <= DEFAULT_WINDOW:
        assert signatures._usual(secret, header, body, now, DEFAULT_WINDOW) is not None


# --- Twilio -----------------------------------------------------------------------------------

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_published_vector() -> None:
    assert twilio_signature("12345", VECTOR_URL, VECTOR_PARAMS) == VECTOR_SIGNATURE
    verify_twilio("12345", VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE)


def test_twilio_vector_also_verifies_with_an_explicit_default_port() -> None:
    url = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    verify_twilio("12345", url, VECTOR_PARAMS, VECTOR_SIGNATURE)


def test_twilio_signed_with_port_verifies_without_and_vice_versa() -> None:
    validator = RequestValidator("tok")
    with_port = "http://crm.example.com:8080/hooks/twilio/voice"
    signed = validator.compute_signature(with_port, VECTOR_PARAMS)
    verify_twilio("tok", with_port, VECTOR_PARAMS, signed)
    signed_bare = validator.compute_signature("https://crm.example.com/hooks/twilio/voice", {})
    verify_twilio("tok", "https://crm.example.com:443/hooks/twilio/voice", {}, signed_bare)


def test_twilio_rejects_tampering_and_missing_header() -> None:
    with pytest.raises(SignatureError, match="mismatch"):
        verify_twilio("12345", VECTOR_URL, {**VECTOR_PARAMS, "To": "+1"}, VECTOR_SIGNATURE)
    with pytest.raises(SignatureError, match="mismatch"):
        verify_twilio(
            "12345", VECTOR_URL.replace("foo=1", "foo=2"), VECTOR_PARAMS, VECTOR_SIGNATURE
        )
    with pytest.raises(SignatureError, match="mismatch"):
        verify_twilio("wrong", VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE)
    with pytest.raises(SignatureError, match="mismatch"):
        verify_twilio("12345", VECTOR_URL, VECTOR_PARAMS, "ünïcode-garbage")
    with pytest.raises(SignatureError, match="missing"):
        verify_twilio("12345", VECTOR_URL, VECTOR_PARAMS, None)


def test_twilio_duplicate_keys_agree_with_twilio() -> None:
    form = MultiDict([("b", "2"), ("a", "z"), ("a", "y"), ("a", "z")])
    expected = RequestValidator("tok").compute_signature(VECTOR_URL, form)
    assert twilio_signature("tok", VECTOR_URL, form) == expected
    as_lists = {"a": ["z", "y"], "b": ["2"]}
    assert twilio_signature("tok", VECTOR_URL, as_lists) == expected
    verify_twilio("tok", VECTOR_URL, form, expected)


def test_twilio_body_sha256_variant() -> None:
    body = '{"CallSid":"CA1","CallStatus":"ringing"}'
    url = f"https://crm.example.com/hooks/twilio/status?bodySHA256={hashlib.sha256(body.encode()).hexdigest()}"
    validator = RequestValidator("tok")
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body, signature)
    verify_twilio("tok", url, None, signature, body=body.encode())
    with pytest.raises(SignatureError, match="bodySHA256"):
        verify_twilio("tok", url, None, signature, body=body.encode() + b" ")
    with pytest.raises(SignatureError, match="no body"):
        verify_twilio("tok", url, None, signature)


def test_twilio_sha256_algorithm_matches_twilio() -> None:
    expected = RequestValidator("tok").compute_signature(VECTOR_URL, VECTOR_PARAMS, "HMAC_SHA256")
    verify_twilio("tok", VECTOR_URL, VECTOR_PARAMS, expected, algorithm="HMAC_SHA256")
    with pytest.raises(SignatureError, match="mismatch"):
        verify_twilio("tok", VECTOR_URL, VECTOR_PARAMS, expected)
    with pytest.raises(SignatureError, match="unsupported"):
        verify_twilio("tok", VECTOR_URL, VECTOR_PARAMS, expected, algorithm="MD5")


_names = st.text(min_size=1, max_size=12)
_values = st.text(max_size=20)
_urls = st.builds(
    lambda scheme, host, port, path, query: f"{scheme}://{host}{port}/{path}{query}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z]{1,10}\.example\.com", fullmatch=True),
    st.sampled_from(["", ":443", ":80", ":8443"]),
    st.from_regex(r"[a-zA-Z0-9/_.-]{0,20}", fullmatch=True),
    st.sampled_from(["", "?a=1", "?x=%2B49+30&y=", "?q=a%20b"]),
)


@given(
    token=st.text(min_size=1, max_size=20),
    url=_urls,
    pairs=st.lists(st.tuples(_names, _values), max_size=8),
)
def test_twilio_agrees_with_twilio_for_any_params(
    token: str, url: str, pairs: list[tuple[str, str]]
) -> None:
    form = MultiDict(pairs)
    validator = RequestValidator(token)
    expected = validator.compute_signature(url, form)
    assert twilio_signature(token, url, form) == expected
    assert validator.validate(url, form, expected)
    verify_twilio(token, url, form, expected)
