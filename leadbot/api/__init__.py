"""The read-only REST API under /api/v1 (bearer tokens, JSON, OpenAPI document)."""

from leadbot.api.component import ApiComponent, api_component

__all__ = ["ApiComponent", "api_component"]
