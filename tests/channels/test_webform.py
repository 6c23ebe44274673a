"""Web-form submissions: mapping, validation, honeypot, UTM, CORS and the rate limiter."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.event import Channel, InboundEvent, RegisterMode
from channels.rate_limit import RateLimiter
from channels.webform.submission import (
    FormConfig,
    FormError,
    HoneypotTripped,
    cors_headers,
    fields_from_json,
    fields_from_pairs,
    parse_submission,
    submission_id_for,
)

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
CONTACT = FormConfig(key="contact", region="DE")


def submit(cfg: FormConfig, fields: dict[str, str | list[str]], sid: str = "req-1") -> InboundEvent:
    return parse_submission(cfg, fields, client_ip="203.0.113.7", submission_id=sid, now=NOW)


def test_default_field_names_fill_the_event() -> None:
    fields: dict[str, str | list[str]] = {
        "name": " Anna Meier ",
        "company": "Meier GmbH",
        "phone": "030 1234567",
        "email": "Anna@Example.de",
        "message": "Bitte um Rückruf",
        "subject": "Angebot",
    }
    event = parse_submission(CONTACT, fields, client_ip="203.0.113.7", submission_id="r1", now=NOW)
    assert event.channel is Channel.WEBFORM
    assert event.source == "WEBFORM"
    assert event.line == "contact"
    assert event.external_id == "contact:r1"
    assert event.occurred_at == NOW
    assert event.display_name == "Anna Meier"
    assert event.company_name == "Meier GmbH"
    assert event.phones == ("030 1234567",)
    assert event.emails == ("Anna@Example.de",)
    assert event.phone_region == "DE"
    assert event.text == "Bitte um Rückruf"
    assert event.subject == "Web form contact: Anna Meier"
    assert event.meta["form_subject"] == "Angebot"
    assert event.meta["client_ip"] == "203.0.113.7"
    assert event.register_mode is RegisterMode.DEFAULT


def test_custom_field_map_and_title_template() -> None:
    cfg = FormConfig(
        key="landing-1",
        field_map={"first_name": "vorname", "last_name": "nachname", "phone": "tel"},
        title_template="{subject} ({form})",
        responsible_queue=(3, 5),
    )
    fields: dict[str, str | list[str]] = {
        "vorname": "Jürgen",
        "nachname": "Müller",
        "tel": "+49 171 1234567",
        "subject": "Messe",
    }
    event = parse_submission(cfg, fields, client_ip="::1", submission_id="x", now=NOW)
    assert (event.first_name, event.last_name) == ("Jürgen", "Müller")
    assert event.display_name == "Jürgen Müller"
    assert event.phones == ("+49 171 1234567",)
    assert event.subject == "Messe (landing-1)"
    assert event.meta["responsible_queue"] == [3, 5]


def test_json_and_form_encoded_shapes_give_the_same_event() -> None:
    as_json = fields_from_json(
        {"email": "a@b.de", "interests": ["CRM", "Telefonie"], "newsletter": True, "qty": 3}
    )
    pairs = [("email", "a@b.de"), ("interests", "CRM"), ("interests", "Telefonie")]
    as_form = fields_from_pairs([*pairs, ("newsletter", "yes"), ("qty", "3")])
    assert as_json == as_form
    event = parse_submission(CONTACT, as_form, client_ip="1", submission_id="s", now=NOW)
    assert event.meta["fields"] == {"interests": "CRM, Telefonie", "newsletter": "yes", "qty": "3"}


@pytest.mark.parametrize("body", [[1, 2], "text", None, {"nested": {"a": 1}}])
def test_json_bodies_we_cannot_read_are_400(body: object) -> None:
    with pytest.raises(FormError) as caught:
        fields_from_json(body)
    assert caught.value.status == 400


def test_utm_parameters_and_unmapped_fields_go_to_meta() -> None:
    fields: dict[str, str | list[str]] = {
        "email": "kunde@example.com",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "spring",
        "utm_term": "",
        "page": "/preise",
        "submission_id": "client-abc-123",
        "website": "",
    }
    event = parse_submission(CONTACT, fields, client_ip="1", submission_id="s", now=NOW)
    assert event.meta["utm"] == {
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "spring",
    }
    assert event.meta["fields"] == {"page": "/preise"}


def test_always_new_forms_always_add_a_lead() -> None:
    cfg = FormConfig(key="promo", duplicate_mode="always_new")
    event = parse_submission(cfg, {"email": "a@b.de"}, client_ip="1", submission_id="s", now=NOW)
    assert event.register_mode is RegisterMode.ALWAYS_ADD
    assert event.meta["duplicate_mode"] == "always_new"


def test_filled_honeypot_is_silently_dropped() -> None:
    with pytest.raises(HoneypotTripped):
        submit(CONTACT, {"email": "bot@spam.example", "website": "http://spam.example"})


def test_honeypot_can_be_disabled_and_then_website_is_just_a_field() -> None:
    cfg = FormConfig(key="plain", honeypot_field="")
    fields: dict[str, str | list[str]] = {"email": "a@b.de", "website": "https://b.de"}
    event = parse_submission(cfg, fields, client_ip="1", submission_id="s", now=NOW)
    assert event.meta["fields"] == {"website": "https://b.de"}


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ({}, 400, "empty"),
        ({"name": "  ", "message": ""}, 400, "empty"),
        ({"name": "Anna", "message": "call me"}, 400, "phone number or an email"),
        ({"email": "anna(at)example.de"}, 422, "not a valid email"),
        ({"email": "anna@example.de", "phone": "030 123"}, 200, ""),
        ({"email": "not-an-email", "phone": "030 1234567"}, 422, "not a valid email"),
        ({"phone": "call me maybe"}, 422, "not a phone number"),
        ({"phone": "12"}, 422, "not a phone number"),
        ({"email": "x" * 20_001}, 413, "longer than"),
        ({f"f{i}": "v" for i in range(201)}, 413, "more than"),
    ],
)
def test_submissions_nobody_can_answer_are_rejected(
    fields: dict[str, str | list[str]], status: int, reason: str
) -> None:
    if status == 200:
        submit(CONTACT, fields)
        return
    with pytest.raises(FormError, match=reason) as caught:
        submit(CONTACT, fields)
    assert caught.value.status == status


def test_client_submission_id_makes_retries_idempotent() -> None:
    fields: dict[str, str | list[str]] = {"email": "a@b.de", "submission_id": "7f3c9e2a-retry"}
    first = submit(CONTACT, fields, submission_id_for(fields, "request-1"))
    again = submit(CONTACT, fields, submission_id_for(fields, "request-2"))
    assert first == again
    assert submission_id_for({"submission_id": "<script>"}, "request-3") == "request-3"
    assert submission_id_for({}, "request-4") == "request-4"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": "bad key/"},
        {"key": "ok", "field_map": {"fax": "fax"}},
        {"key": "ok", "field_map": {"email": "website"}},
        {"key": "ok", "duplicate_mode": "replace"},
        {"key": "ok", "rate_limit_per_minute": -1},
        {"key": "ok", "success_redirect": "javascript:alert(1)"},
        {"key": "ok", "title_template": "{name.__class__}"},
        {"key": "ok", "title_template": "{unknown}"},
        {"key": "ok", "title_template": "{name"},
    ],
)
def test_bad_form_config_is_refused_at_startup(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"form|key"):
        FormConfig(**kwargs)  # type: ignore[arg-type]


def test_form_config_is_immutable_and_hashable() -> None:
    cfg = FormConfig(key="k", field_map={"phone": "tel"})
    assert cfg.field_map["phone"] == "tel"
    assert cfg.field_map["email"] == "email"
    with pytest.raises(TypeError):
        cfg.field_map["phone"] = "x"  # type: ignore[index]
    assert hash(cfg) == hash(FormConfig(key="k", field_map={"phone": "tel"}))


# --- CORS ------------------------------------------------------------------------------------


def test_cors_allows_only_configured_origins() -> None:
    cfg = FormConfig(key="k", cors_origins=("https://www.example.de/",))
    headers = cors_headers(cfg, "https://WWW.example.de")
    assert headers["Access-Control-Allow-Origin"] == "https://WWW.example.de"
    assert headers["Vary"] == "Origin"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert cors_headers(cfg, "https://evil.example") == {}
    assert cors_headers(cfg, None) == {}
    assert cors_headers(FormConfig(key="k"), "https://www.example.de") == {}


def test_cors_wildcard() -> None:
    cfg = FormConfig(key="k", cors_origins=("*",))
    assert cors_headers(cfg, "https://any.example")["Access-Control-Allow-Origin"] == "*"


def test_cors_never_echoes_the_null_origin() -> None:
    cfg = FormConfig(key="k", cors_origins=("null",))
    assert cors_headers(cfg, "null") == {}


# --- rate limiter ----------------------------------------------------------------------------


def test_rate_limiter_slides_its_window() -> None:
    limiter = RateLimiter(limit=2, window=60.0)
    assert limiter.allow("1.2.3.4", 0.0)
    assert limiter.allow("1.2.3.4", 10.0)
    assert not limiter.allow("1.2.3.4", 20.0)
    assert limiter.retry_after("1.2.3.4", 20.0) == pytest.approx(40.0)
    assert limiter.allow("5.6.7.8", 20.0)  # other clients are not affected
    assert limiter.allow("1.2.3.4", 60.5)  # the hit at 0 has left the window
    assert not limiter.allow("1.2.3.4", 61.0)
    assert limiter.retry_after("1.2.3.4", 70.0) == pytest.approx(0.0)


def test_refused_hits_do_not_extend_the_block() -> None:
    limiter = RateLimiter(limit=1, window=10.0)
    assert limiter.allow("ip", 0.0)
    for t in range(1, 10):
        assert not limiter.allow("ip", float(t))
    assert limiter.allow("ip", 10.0)


def test_zero_limit_means_unlimited() -> None:
    limiter = FormConfig(key="k", rate_limit_per_minute=0).rate_limiter()
    assert all(limiter.allow("ip", 0.0) for _ in range(1000))


def test_rate_limiter_memory_stays_bounded() -> None:
    limiter = RateLimiter(limit=5, window=60.0, max_keys=100)
    for n in range(1000):
        limiter.allow(f"10.0.{n // 256}.{n % 256}", float(n) / 100)
    assert len(limiter) <= 100
    later = RateLimiter(limit=5, window=1.0, max_keys=10)
    for n in range(10):
        later.allow(f"a{n}", 0.0)
    later.allow("fresh", 5.0)  # every old key is idle by now and is dropped first
    assert len(later) == 1


class _DictLimiter:
    """The limiter as it was: a plain dict, walked for the idle keys on every eviction."""

    def __init__(self, limit: int, window: float, *, max_keys: int) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        hits = self._recent(key, now)
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        self._hits[key] = hits
        if len(self._hits) > self.max_keys:
            for k in [k for k, h in self._hits.items() if h[-1] <= now - self.window]:
                del self._hits[k]
            while len(self._hits) > self.max_keys:
                del self._hits[next(iter(self._hits))]
        return True

    def retry_after(self, key: str, now: float) -> float:
        hits = self._recent(key, now)
        return 0.0 if len(hits) < self.limit else max(0.0, hits[0] + self.window - now)

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            self._hits.pop(key, None)
        return hits


@settings(max_examples=300)
@given(
    st.integers(1, 3),
    st.integers(1, 6),
    st.lists(st.tuples(st.sampled_from("abcdefghij"), st.floats(0, 5), st.booleans()), max_size=80),
)
def test_rate_limiter_keeps_and_drops_the_keys_it_did_on_a_plain_dict(
    limit: int, max_keys: int, hits: list[tuple[str, float, bool]]
) -> None:
    new = RateLimiter(limit, 2.0, max_keys=max_keys)
    old = _DictLimiter(limit, 2.0, max_keys=max_keys)
    now = 0.0
    for key, step, ask in hits:
        now += step
        if ask:
            assert new.retry_after(key, now) == old.retry_after(key, now)
        else:
            assert new.allow(key, now) == old.allow(key, now)
        assert list(new._hits.items()) == list(old._hits.items())
        # … and the keys by their last hit, the idle ones first.
        times = [new._hits[k][-1] for k in new._last]
        assert set(new._last) == set(new._hits) and times == sorted(times)


def test_form_limiter_uses_the_configured_rate() -> None:
    limiter = FormConfig(key="k", rate_limit_per_minute=3).rate_limiter()
    assert [limiter.allow("ip", 1.0) for _ in range(4)] == [True, True, True, False]
