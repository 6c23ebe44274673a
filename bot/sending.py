"""The few Bot API calls that show our rendered HTML: send a card, edit one in place.

`deliver_card` is how the outbox sends: when Telegram refuses a card with 400, the same card
goes once more without the part the error blames (the HTML on a parse error, else the
buttons), so a rejected keyboard or a rendering bug costs a rep the buttons, not the lead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden

from bot.views import (
    Rendered,
    plain_text,
)

log = logging.getLogger(__name__)
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def markup(rendered: Rendered) -> InlineKeyboardMarkup | None:
    if not rendered.rows:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(label, callback_data=data) for label, data in row]
            for row in rendered.rows
        ]
    )


async def send_card(
    bot: Bot, chat_id: int, rendered: Rendered, *, as_html: bool = True, buttons: bool = True
) -> Message:
    return await bot.send_message(
        chat_id,
        rendered.text if as_html else plain_text(rendered.text),
        parse_mode=ParseMode.HTML if as_html else None,
        reply_markup=markup(rendered) if buttons else None,
        link_preview_options=NO_PREVIEW,
    )


# The forms a card can reach a chat in (label values of leadbot_cards_fallback_total).
FULL = "full"
WITHOUT_BUTTONS = "without_buttons"
PLAIN_TEXT = "plain_text"
PLAIN_TEXT_WITHOUT_BUTTONS = "plain_text_without_buttons"
# Why a chat got no card at all (label values of leadbot_cards_undeliverable_total).
BLOCKED = "blocked"
CHAT_NOT_FOUND = "chat_not_found"
BAD_REQUEST = "bad_request"


@dataclass(frozen=True, slots=True)
class Delivered:
    message: Message
    form: str  # FULL, or the fallback Telegram accepted
    refusal: str | None  # Telegram's description of the last refusal, when there was one


class Undeliverable(Exception):
    """Telegram refused every form of the card for this chat; `reason` is one of BLOCKED,
    CHAT_NOT_FOUND, BAD_REQUEST and `description` is Telegram's own words."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = description


async def deliver_card(bot: Bot, chat_id: int, rendered: Rendered) -> Delivered:
    """Send a card; on a 400 drop the blamed part and try once more (at most three sends).

    A parse error of the HTML entities blames the text: it goes as plain text, buttons kept.
    Any other 400 blames the request's extras: the buttons go. A 400 that nothing can fix
    ("chat not found") and a 403 (the bot is blocked) end at once. Other errors (429, 5xx,
    timeouts) propagate: the caller retries the whole card later."""
    as_html, buttons = True, bool(rendered.rows)
    refusal: str | None = None
    while True:
        try:
            message = await send_card(bot, chat_id, rendered, as_html=as_html, buttons=buttons)
        except Forbidden as err:
            raise Undeliverable(BLOCKED, str(err)) from err
        except BadRequest as err:
            refusal = str(err)
            lowered = refusal.lower()
            if "chat not found" in lowered:
                raise Undeliverable(CHAT_NOT_FOUND, refusal) from err
            if as_html and "can't parse entities" in lowered:
                as_html = False
            elif buttons:
                buttons = False
            else:
                raise Undeliverable(BAD_REQUEST, refusal) from err
            continue
        return Delivered(message, _form(as_html, buttons or not rendered.rows), refusal)


def fallback_note(sent: Delivered, item_id: int, rep_id: int) -> str | None:
    """None for a card delivered in full; else the refusal is logged (once, as a warning) and
    the outbox row's note saying how the rep got the card is returned."""
    if sent.form == FULL:
        return None
    form = sent.form.replace("_", " ")
    log.warning(
        "outbox #%s: Telegram refused the card for rep #%s (%s); sent %s",
        item_id, rep_id, sent.refusal, form,
    )  # fmt: skip
    return f"rep #{rep_id} got it {form} ({sent.refusal})"


def _form(as_html: bool, buttons: bool) -> str:
    if as_html:
        return FULL if buttons else WITHOUT_BUTTONS
    return PLAIN_TEXT if buttons else PLAIN_TEXT_WITHOUT_BUTTONS


async def edit_card(bot: Bot, chat_id: int, message_id: int, rendered: Rendered) -> bool:
    """Redraw a message; False when Telegram would not (unchanged, deleted, too old)."""
    try:
        await bot.edit_message_text(
            rendered.text,
            chat_id=chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=markup(rendered),
            link_preview_options=NO_PREVIEW,
        )
    except BadRequest as err:
        if "not modified" not in str(err).lower():
            log.warning("card %s/%s not redrawn: %s", chat_id, message_id, err)
        return False
    return True
