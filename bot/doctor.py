"""`leadbot doctor`'s look at the Telegram bot: the token (getMe) and, when the bot runs by
webhook, what Telegram says of it (getWebhookInfo)."""

from __future__ import annotations

from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from bot.settings import TelegramSettings


async def check_telegram(settings: TelegramSettings) -> tuple[bool, str]:
    """(ok, what was found or what to fix), never raising."""
    if settings.token is None:
        return True, "off: no telegram.token configured"
    bot = Bot(settings.token.get_secret_value(), base_url=settings.base_url)
    try:
        async with bot:
            me = await bot.get_me()
            info = await bot.get_webhook_info()
    except InvalidToken:
        return False, "the token was refused (Unauthorized): copy it again from @BotFather"
    except TelegramError as exc:
        return False, f"Telegram did not answer: {exc}"
    line = f"@{me.username} answers"
    if info.url:
        line += f"; webhook {info.url}"
        if info.last_error_message:
            return False, f"{line}, Telegram's last delivery failed: {info.last_error_message}"
    return True, line
