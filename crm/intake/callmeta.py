"""Merging the metadata of several events of one call into its one activity."""

from __future__ import annotations

from typing import Any

# How far a call has got; events may arrive out of order (retries, several workers).
_STAGE_RANK = {"ringing": 0, "answered": 1, "ended": 2, "missed": 2}
_OUTCOME_KEYS = ("stage", "missed", "disposition")


def merge_call_meta(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Later events of a call refine its activity (duration, disposition, recording); an
    earlier stage that arrives late fills gaps but never takes the call's outcome back."""
    late = _STAGE_RANK.get(str(new.get("stage")), -1) < _STAGE_RANK.get(str(old.get("stage")), -1)
    merged = {**old, **{k: v for k, v in new.items() if v is not None}}
    if late:
        for key in _OUTCOME_KEYS:
            if key in old:
                merged[key] = old[key]
    return merged
