"""The `leadbot` command: serve, worker, db, backup, restore, rep, web, token, exceptions,
ingest, import-csv, dead, doctor, mail. `leadbot COMMAND --help` explains each."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from channels.csv.command import register_cli as register_csv
from channels.mail.command import register_cli as register_mail
from crm.db import Database
from crm.errors import CrmError
from crm.facade import Crm
from crm.journal import JournalInUse
from crm.outage import is_outage
from crm.services.reps import invite_text as reps_invite_text
from leadbot.app import Service, crm_config
from leadbot.cli_common import (
    CliError,
    database_ready,
    ping_or_fail,
    publishing,
    reason_of,
    settings_of,
)
from leadbot.db_commands import register_db_commands
from leadbot.dead import register_cli as register_dead
from leadbot.doctor import register_cli as register_doctor
from leadbot.ingest import DEFAULT_TIMEOUT as DEFAULT_INGEST_TIMEOUT
from leadbot.ingest import ingest_file
from leadbot.logs import configured_secrets, redact, setup_logging
from leadbot.loop import run as run_loop
from leadbot.settings import ConfigError, Settings
from leadbot.web import outage_kind

log = logging.getLogger("leadbot")


async def _serve(settings: Settings, http: bool, workers: int) -> None:
    # The servers are checked before the service is built: a start that fails says one line.
    await database_ready(settings, settings.database.startup_wait, redis=True)
    service = Service(settings, http=http, workers=workers)
    if not settings.telegram.token:
        log.warning(
            "Telegram bot is off: no token configured. Set telegram.token in the config file "
            "or LEADBOT_TELEGRAM__TOKEN to turn it on."
        )
    try:
        await service.run_forever()
    except Exception as exc:
        if is_outage(exc):  # went down between the check above and the start
            what = outage_kind(exc)
            raise CliError(f"cannot start: {what} unavailable: {reason_of(exc)}") from None
        if isinstance(exc, OSError):  # the HTTP port is taken, say
            raise CliError(f"cannot start: {exc}") from None
        if isinstance(exc, JournalInUse):  # `make run` again while the first one runs
            raise CliError(
                f"cannot start: {exc} (stop it first, or give this one another queue.journal_dir)"
            ) from None
        raise


async def _with_crm(settings: Settings, fn: Callable[[Crm], Awaitable[None]]) -> None:
    db = Database(settings.database.url)
    try:
        await ping_or_fail(db, settings.database.url)
        crm = Crm(db, crm_config(settings))
        try:
            async with publishing(db, settings):
                await crm.prepare()
                await fn(crm)
        except CrmError as exc:
            raise CliError(str(exc)) from None
        except Exception as exc:
            if "no such table" in str(exc) or "does not exist" in str(exc):
                raise CliError("the database is not migrated: run `leadbot db upgrade`") from None
            raise
        finally:
            await crm.close()
    finally:
        await db.dispose()


def cmd_serve(args: argparse.Namespace) -> None:
    settings = settings_of(args)
    run_loop(_serve(settings, http=True, workers=args.workers), settings.http.event_loop)


def cmd_worker(args: argparse.Namespace) -> None:
    settings = settings_of(args)
    if not settings.redis.url:
        raise CliError("a separate worker needs a shared queue: set redis.url")
    run_loop(_serve(settings, http=False, workers=args.workers), settings.http.event_loop)


def cmd_rep(args: argparse.Namespace) -> None:
    settings = settings_of(args)

    async def go(crm: Crm) -> None:
        if args.rep_cmd == "add":
            rep = await crm.reps.add(
                args.name,
                role=args.role,
                telegram_user_id=args.telegram_id,
                email=args.email,
                phone=args.phone,
                extension=args.extension,
            )
            print(f"rep #{rep.id} {rep.name} ({rep.role}) added")
            if args.invite:
                code = await crm.reps.create_invite(rep.id)
                print(invite_text(settings, code))
        elif args.rep_cmd == "invite":
            code = await crm.reps.create_invite(args.id)
            print(invite_text(settings, code))
        elif args.rep_cmd == "list":
            for r in await crm.reps.all():
                tg = r.telegram_user_id or "-"
                state = "active" if r.active else "inactive"
                print(f"#{r.id}\t{r.name}\t{r.role}\t{state}\ttelegram {tg}")
        elif args.rep_cmd == "deactivate":
            rep = await crm.reps.deactivate(args.id)
            print(f"rep #{rep.id} {rep.name} deactivated")

    asyncio.run(_with_crm(settings, go))


def invite_text(settings: Settings, code: str) -> str:
    return reps_invite_text(settings.telegram.bot_username, code)


def cmd_web(args: argparse.Namespace) -> None:
    """A one-time web console sign-in link, as the bot's /web gives (the operator may print
    one for any rep)."""
    settings = settings_of(args)
    base = settings.http.public_url.rstrip("/")
    if not settings.console.enabled or not base:
        raise CliError("the web console is off: set console.enabled and http.public_url")

    async def go(crm: Crm) -> None:
        # Telegram user ids are far larger than rep ids: a number is a Telegram id if one
        # matches, else a rep id.
        rep = await crm.reps.by_telegram(args.rep)
        rep_id = rep.id if rep is not None else args.rep
        token = await crm.web_sessions.create_link(rep_id)
        print(f"{base}/app/login/{token}")

    asyncio.run(_with_crm(settings, go))


def cmd_token(args: argparse.Namespace) -> None:
    async def go(crm: Crm) -> None:
        if args.token_cmd == "create":
            scopes = args.scope.split(",")
            token_id, token = await crm.tokens.create(args.name, scopes=scopes, rep_id=args.rep)
            print(f"token #{token_id} created; it is shown only now:\n{token}")
        elif args.token_cmd == "revoke":
            await crm.tokens.revoke(args.id)
            print(f"token #{args.id} revoked")
        else:
            for tok in await crm.tokens.all():
                rep = f"rep #{tok.rep_id}" if tok.rep_id else "system"
                state = "active" if tok.active else "revoked"
                print(f"#{tok.id}\t{tok.name}\t{','.join(tok.scopes)}\t{rep}\t{state}")

    asyncio.run(_with_crm(settings_of(args), go))


def cmd_exceptions(args: argparse.Namespace) -> None:
    async def go(crm: Crm) -> None:
        if args.exc_cmd == "add":
            e = await crm.exceptions.add(args.value, args.comment)
            print(f"added {e.kind} {e.value}")
        elif args.exc_cmd == "remove":
            await crm.exceptions.remove(args.value)
            print(f"removed {args.value}")
        else:
            for e in await crm.exceptions.all():
                print(f"{e.kind}\t{e.value}\t{e.comment or ''}")

    asyncio.run(_with_crm(settings_of(args), go))


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    if not args.timeout > 0:
        raise CliError("--timeout must be more than 0 seconds")
    asyncio.run(database_ready(settings))
    summary = asyncio.run(ingest_file(settings, path, timeout=args.timeout))
    for line in summary.lines():
        print(line)
    if summary.complete:
        return 0
    print(
        f"leadbot: {summary.pending} event(s) still pending after {args.timeout:g} s, "
        f"{summary.failed} given up on (see `leadbot dead list`)",
        file=sys.stderr,
    )
    return 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leadbot", description=__doc__)
    p.add_argument("--config", help="TOML configuration file (default: $LEADBOT_CONFIG)")
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=None,
        help="DEBUG, INFO, WARNING or ERROR (default: log_level of the config, else INFO)",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the HTTP server, the workers, channels and the bot")
    s.add_argument("--workers", type=int, default=1, help="concurrent intake workers")
    s.set_defaults(fn=cmd_serve)
    s = sub.add_parser("worker", help="run intake workers only (needs redis.url)")
    s.add_argument("--workers", type=int, default=1, help="concurrent intake workers")
    s.set_defaults(fn=cmd_worker)

    register_db_commands(sub)

    rep = sub.add_parser("rep", help="sales reps").add_subparsers(dest="rep_cmd", required=True)
    s = rep.add_parser("add", help="add a rep")
    s.add_argument("name", help="the name shown on cards and to supervisors")
    s.add_argument(
        "--role",
        default="rep",
        choices=["rep", "supervisor", "admin"],
        help="rep: own records; supervisor: everyone's; admin: also administers (default: rep)",
    )
    s.add_argument(
        "--telegram-id",
        type=int,
        default=None,
        help="the rep's numeric Telegram user id (else they join with --invite's link)",
    )
    s.add_argument("--email", help="the rep's own address (mail from it is never a lead)")
    s.add_argument("--phone", help="E.164 number calls to this rep's clients are put through to")
    s.add_argument("--extension", help="PBX extension")
    s.add_argument("--invite", action="store_true", help="print a one-time Telegram invite link")
    s.set_defaults(fn=cmd_rep)
    s = rep.add_parser("invite", help="a new one-time invite link for a rep")
    s.add_argument("id", type=int, help="the rep's id (leadbot rep list)")
    s.set_defaults(fn=cmd_rep)
    s = rep.add_parser("list", help="list reps")
    s.set_defaults(fn=cmd_rep)
    s = rep.add_parser("deactivate", help="deactivate a rep")
    s.add_argument("id", type=int, help="the rep's id (leadbot rep list)")
    s.set_defaults(fn=cmd_rep)

    web = sub.add_parser("web", help="the web console").add_subparsers(
        dest="web_cmd", required=True
    )
    s = web.add_parser("link", help="print a one-time sign-in link (10 minutes, one use)")
    s.add_argument("rep", type=int, help="the rep's id (leadbot rep list) or Telegram user id")
    s.set_defaults(fn=cmd_web)

    tok = sub.add_parser("token", help="REST API tokens").add_subparsers(
        dest="token_cmd", required=True
    )
    s = tok.add_parser("create", help="create a token (shown once)")
    s.add_argument("name", help="what the token is for (shown in token list)")
    s.add_argument(
        "--scope",
        default="read",
        help="comma-separated: read, write (default read)",
    )
    s.add_argument(
        "--rep",
        type=int,
        default=None,
        help="act as this rep (their rights apply); default: the system, which may do anything",
    )
    s.set_defaults(fn=cmd_token)
    s = tok.add_parser("revoke", help="revoke a token")
    s.add_argument("id", type=int, help="the token's id (leadbot token list)")
    s.set_defaults(fn=cmd_token)
    s = tok.add_parser("list", help="list tokens")
    s.set_defaults(fn=cmd_token)

    exc = sub.add_parser("exceptions", help="the exception list").add_subparsers(
        dest="exc_cmd", required=True
    )
    s = exc.add_parser("add", help="never capture this phone or email")
    s.add_argument("value", help="a phone number (any spelling) or an email address")
    s.add_argument("--comment", help="why it is on the list")
    s.set_defaults(fn=cmd_exceptions)
    s = exc.add_parser("remove", help="remove a phone or email")
    s.add_argument("value", help="the phone number or email address as added")
    s.set_defaults(fn=cmd_exceptions)
    s = exc.add_parser("list", help="list the exception list")
    s.set_defaults(fn=cmd_exceptions)

    s = sub.add_parser("ingest", help="feed events from a JSON-lines file through the queue")
    s.add_argument("file", help="a file of InboundEvent JSON objects, one per line")
    s.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_INGEST_TIMEOUT,
        help="seconds to wait for the file's events to be processed, by this or other workers "
        f"(default {DEFAULT_INGEST_TIMEOUT:g}); exits 1 if some are still pending then",
    )
    s.set_defaults(fn=cmd_ingest)
    for register in EXTRA_COMMANDS:
        register(sub)
    return p


class _CsvHost:
    """What `import-csv` (channels.csv.command) gets from the command line."""

    def default_region(self, args: argparse.Namespace) -> str:
        return settings_of(args).crm.default_region

    def run_with_crm(self, args: argparse.Namespace, fn: Callable[[Crm], Awaitable[None]]) -> None:
        asyncio.run(_with_crm(settings_of(args), fn))

    def error(self, reason: str) -> Exception:
        return CliError(reason)


class _MailHost:
    """What `mail release` (channels.mail.command) gets from the command line."""

    def mail_settings(self, args: argparse.Namespace) -> Settings:
        return settings_of(args)

    def error(self, reason: str) -> Exception:
        return CliError(reason)


def _extra_commands() -> list[Callable[[Any], None]]:
    """Sub-commands defined elsewhere (import-csv, dead, doctor, mail)."""
    return [
        partial(register_csv, host=_CsvHost()),
        register_dead,
        register_doctor,
        partial(register_mail, host=_MailHost()),
    ]


EXTRA_COMMANDS: list[Callable[[Any], None]] = _extra_commands()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.loaded_settings = settings_of(args)
    except ConfigError as exc:
        setup_logging(args.log_level or "INFO")
        print(f"leadbot: {redact(str(exc))}", file=sys.stderr)
        return 2
    # Before anything logs: the level (the flag overrides the config) and the secret filter.
    settings = args.loaded_settings
    setup_logging(
        args.log_level or settings.log_level, configured_secrets(settings), settings.log_format
    )
    try:
        code: int | None = args.fn(args)  # None: done
    except (ConfigError, CliError) as exc:
        print(f"leadbot: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # through the log, so that the traceback is redacted too
        log.critical("stopped by an unexpected error", exc_info=True)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
