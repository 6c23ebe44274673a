"""Mailbox configuration: passwords from config, file or environment, and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from channels.mail.component import (
    MailComponent,
    is_outage,
    mail_component,
    mailbox_config,
    own_addresses,
    read_password,
)
from leadbot.settings import ConfigError, MailboxSettings, Settings


def box(**fields: Any) -> MailboxSettings:
    base: dict[str, Any] = {"name": "sales", "host": "imap.example.org", "user": "info@shop.de"}
    base.update(fields)
    return MailboxSettings(**base)


class _FakeService:
    def __init__(self, settings: Settings, http: bool = True) -> None:
        self.settings = settings
        self.http = http


def test_no_mailboxes_no_component() -> None:
    assert mail_component(_FakeService(Settings())) is None  # type: ignore[arg-type]


def test_bare_workers_do_not_watch_mailboxes() -> None:
    settings = Settings(mailboxes=[{"name": "sales", "host": "h", "user": "u", "password": "p"}])
    assert mail_component(_FakeService(settings)) is not None  # type: ignore[arg-type]
    assert mail_component(_FakeService(settings, http=False)) is None  # type: ignore[arg-type]


def test_every_mailbox_gets_a_worker_config() -> None:
    settings = Settings(mailboxes=[box(password="x"), box(name="support", password="y")])
    comp = mail_component(_FakeService(settings))  # type: ignore[arg-type]
    assert isinstance(comp, MailComponent)
    assert [m.name for m in comp.mailboxes] == ["sales", "support"]
    assert comp.routes() == []


def test_exactly_one_password_source() -> None:
    with pytest.raises(ValidationError, match="exactly one of password"):
        box()
    with pytest.raises(ValidationError, match="exactly one of password"):
        box(password="x", password_env="IMAP_PASSWORD")


def test_password_from_file_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "imap.pw"
    secret.write_text("s3cret\n")
    assert read_password(box(password_file=secret)) == "s3cret"
    monkeypatch.setenv("LEADBOT_TEST_IMAP_PW", "from-env")
    assert read_password(box(password_env="LEADBOT_TEST_IMAP_PW")) == "from-env"
    assert read_password(box(password="plain")) == "plain"


def test_missing_password_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"password_file .*missing\.pw"):
        read_password(box(password_file=tmp_path / "missing.pw"))
    (tmp_path / "empty.pw").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_password(box(password_file=tmp_path / "empty.pw"))
    (tmp_path / "latin1.pw").write_bytes("geheim\xe4\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"password_file .*latin1\.pw is not UTF-8 text"):
        read_password(box(password_file=tmp_path / "latin1.pw"))
    with pytest.raises(ConfigError, match="LEADBOT_TEST_UNSET_VAR is not set"):
        read_password(box(password_env="LEADBOT_TEST_UNSET_VAR"))


def test_duplicate_mailbox_names_are_refused() -> None:
    settings = Settings(mailboxes=[box(password="x"), box(password="y")])
    with pytest.raises(ConfigError, match="'sales' is used twice"):
        mail_component(_FakeService(settings))  # type: ignore[arg-type]


def test_processed_folder_must_differ_from_the_watched_one() -> None:
    with pytest.raises(ConfigError, match="must differ"):
        mailbox_config(box(password="x", processed_folder="INBOX"), "x", frozenset(), "DE")


def test_policy_knows_our_mailboxes_and_the_mailbox_rules() -> None:
    boxes = [
        box(password="x"),
        box(name="b", user="Support@Shop.de", password="y"),
        box(name="c", user="imapuser", password="z"),
    ]
    own = own_addresses(boxes)
    assert own == frozenset({"info@shop.de", "support@shop.de"})  # logins that are addresses
    config = mailbox_config(
        box(password="x", robot_senders=["Forms@Shop.de"], rate_limit_per_hour=5, region="at"),
        "pw-4711",
        own,
        "DE",
    )
    assert config.policy.own_addresses == own
    assert config.policy.robot_senders == frozenset({"forms@shop.de"})
    assert config.policy.rate_limit_per_hour == 5
    assert config.region == "AT"
    assert "pw-4711" not in repr(config.server) + repr(config)  # the password never shows in logs


def test_outages_are_told_apart_from_bugs() -> None:
    from sqlalchemy.exc import OperationalError

    assert is_outage(ConnectionRefusedError())
    assert is_outage(OperationalError("SELECT 1", {}, Exception("database is locked")))
    assert not is_outage(ValueError("bad data"))
    assert not is_outage(KeyError("x"))
