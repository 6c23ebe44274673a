"""Release a false positive: a mail in the spam folder goes back to the watched folder, tagged
`$LeadbotReleased` so the worker handles it like new mail without judging it spam again."""

from __future__ import annotations

from channels.mail.imap import ImapRefused, ImapSession
from channels.mail.mailbox import MailboxConfig
from channels.mail.spamguard import RELEASED_KEYWORD, SPAM_KEYWORD


class NotInSpam(Exception):
    """No such mail in the spam folder."""


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def release(
    config: MailboxConfig, which: str, *, uidvalidity: int | None = None
) -> list[int]:
    """Move the mail with this UID (in the spam folder) or Message-ID back; its spam-folder
    UIDs. `NotInSpam` when nothing matches, `ImapError` when the server fails. `uidvalidity`:
    the folder's when the UID was read (a UID of a renumbered folder names another mail)."""
    which = which.strip()
    if not which or any(c in which for c in "\0\r\n"):
        raise NotInSpam("give a UID or a Message-ID")
    folder = config.spam.folder
    session = await ImapSession.open(config.server, timeout=config.timeout)
    try:
        try:
            selected = await session.select(folder)
        except ImapRefused:
            raise NotInSpam(f"mailbox {config.name} has no spam folder {folder}") from None
        if uidvalidity is not None and selected.uidvalidity != uidvalidity:
            raise NotInSpam(f"{folder} of mailbox {config.name} was renumbered since it was read")
        if which.isdigit():
            uids = await session.search("UID", which)
        else:
            message_id = which if which.startswith("<") else f"<{which}>"
            uids = await session.search("HEADER", "Message-ID", _quoted(message_id))
        if not uids:
            raise NotInSpam(f"no mail {which} in {folder} of mailbox {config.name}")
        for uid in uids:
            await session.remove_flags(uid, SPAM_KEYWORD)
            await session.add_flags(uid, RELEASED_KEYWORD)
            await session.move(uid, config.folder)
        return uids
    finally:
        await session.close()
