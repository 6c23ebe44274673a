"""The normalized inbound event every channel produces (defined in the pure core)."""

from matching.event import *  # noqa: F403  (exactly what matching.event exports)
from matching.event import __all__ as __all__
