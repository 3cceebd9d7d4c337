"""A :class:`~cpuidkit.analysis.review.document.Review` as JSON: the data behind the report, keys sorted."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cpuidkit.analysis.review.document import Review

__all__ = ["render_json"]


def render_json(r: Review) -> str:
    return json.dumps(r.as_dict(), indent=1, sort_keys=True) + "\n"
