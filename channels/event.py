"""The normalized inbound event every channel produces (defined in the pure core)."""

from matching.event import Attachment, Channel, Direction, Handle, InboundEvent, RegisterMode

__all__ = ["Attachment", "Channel", "Direction", "Handle", "InboundEvent", "RegisterMode"]
