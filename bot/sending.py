"""The few Bot API calls that show our rendered HTML: send a card, edit one in place."""

from __future__ import annotations

import logging

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.views import Rendered

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


async def send_card(bot: Bot, chat_id: int, rendered: Rendered) -> Message:
    return await bot.send_message(
        chat_id,
        rendered.text,
        parse_mode=ParseMode.HTML,
        reply_markup=markup(rendered),
        link_preview_options=NO_PREVIEW,
    )


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
