"""One entry point for every format of a review: ``render(r, "markdown" | "html" | "json")``."""

from __future__ import annotations

from cpuidkit.analysis.review.document import Review
from cpuidkit.analysis.review.to_html import render_html
from cpuidkit.analysis.review.to_json import render_json
from cpuidkit.analysis.review.to_markdown import render_markdown
from cpuidkit.errors import InputError

__all__ = ["FORMATS", "render"]

FORMATS = ("markdown", "html", "json")
_RENDERERS = {"markdown": render_markdown, "html": render_html, "json": render_json}


def render(r: Review, format: str = "markdown") -> str:
    try:
        to_text = _RENDERERS[format]
    except KeyError:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, got {format!r}") from None
    return to_text(r)
