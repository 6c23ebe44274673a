"""The web console: server-rendered pages under /app/ over the same crm services as the bot."""
