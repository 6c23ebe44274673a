"""`leadbot mail release MAILBOX UID|MESSAGE-ID`: a mail the spam filter caught back into the
watched folder, where the running service handles it like new mail (not judged spam again).

`leadbot.cli` registers it and hands it a `MailCliHost`.
"""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
from typing import Any, Protocol

from channels.mail.component import MailSettings, configured_mailbox
from channels.mail.imap import ImapError
from channels.mail.release import NotInSpam, release


class MailCliHost(Protocol):
    def mail_settings(self, args: argparse.Namespace) -> MailSettings:
        """The settings the command line names."""
        ...

    def error(self, reason: str) -> Exception:
        """The exception the root prints as one line before exiting non-zero."""
        ...


def register_cli(subparsers: Any, host: MailCliHost) -> None:
    """Add `mail release` to the `leadbot` command line."""
    p = subparsers.add_parser("mail", help="mailbox tools: release mail the spam filter caught")
    sub = p.add_subparsers(dest="mail_cmd", required=True)
    s = sub.add_parser(
        "release",
        help="move a mail from the spam folder back to the watched folder",
        description="The mail is tagged $LeadbotReleased and moved back; the running service "
        "handles it like new mail and does not judge it spam again.",
    )
    s.add_argument("mailbox", help="the mailbox's name in the config")
    s.add_argument("message", help="the mail's UID in the spam folder, or its Message-ID")
    s.set_defaults(fn=partial(cmd_release, host=host))


def cmd_release(args: argparse.Namespace, host: MailCliHost) -> None:
    settings = host.mail_settings(args)
    boxes = {box.name: box for box in settings.mailboxes}
    box = boxes.get(args.mailbox)
    if box is None:
        known = ", ".join(sorted(boxes)) or "none configured"
        raise host.error(f"no mailbox {args.mailbox!r} (mailboxes: {known})")
    config = configured_mailbox(box, settings.mailboxes, settings.crm.default_region)
    try:
        uids = asyncio.run(release(config, args.message))
    except NotInSpam as exc:
        raise host.error(str(exc)) from None
    except (ImapError, OSError) as exc:
        raise host.error(f"mailbox {box.name}: {exc}") from None
    for uid in uids:
        print(f"released UID {uid} from {config.spam.folder} to {config.folder}")
