"""WhatsApp Cloud API: webhook parsing and signature (webhook), message types (content), HTTP
(routes), config (settings)."""
