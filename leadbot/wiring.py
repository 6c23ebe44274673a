"""Which components a full service runs; each factory returns None when not configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.component import bot_component
from channels.mail.component import mail_component
from channels.phone.component import phone_component
from channels.webform_routes import forms_component
from channels.whatsapp_routes import whatsapp_component
from leadbot.api import api_component

if TYPE_CHECKING:
    from leadbot.app import ComponentFactory

COMPONENTS: list[ComponentFactory] = [
    api_component,
    phone_component,
    whatsapp_component,
    forms_component,
    mail_component,
    bot_component,
]
