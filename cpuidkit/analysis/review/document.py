"""The document a review is: a title, a header table, sections of blocks, figures and the data behind them.

A :class:`Section` holds blocks (paragraphs, lists, tables, figure references) whose text uses two
inline marks, ```code``` and ``**bold**``; the renderers (:mod:`~cpuidkit.analysis.review.to_markdown`,
:mod:`~cpuidkit.analysis.review.to_html`, :mod:`~cpuidkit.analysis.review.to_json`) turn a
:class:`Review` into a file.  In a notebook a Review shows itself as HTML (with its figures) or Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cpuidkit.analysis.review.to_html import render_html_fragment
from cpuidkit.analysis.review.to_markdown import render_markdown

__all__ = ["Section", "Review"]


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)

    def p(self, text: str) -> Section:
        self.blocks.append(("p", text))
        return self

    def ul(self, items: list[str]) -> Section:
        if items:
            self.blocks.append(("ul", list(items)))
        return self

    def table(self, header: list[str], rows: list[list[str]]) -> Section:
        self.blocks.append(("table", header, rows))
        return self

    def figure(self, name: str, caption: str) -> Section:
        self.blocks.append(("figure", name, caption))
        return self


@dataclass(repr=False)
class Review:
    """A review: a title, a header table, sections, figures (SVG text) and the data behind them."""

    title: str
    header: list[tuple[str, str]]
    sections: list[Section]
    figures: dict[str, str]
    data: dict

    def as_dict(self) -> dict:
        return self.data

    def __repr__(self) -> str:
        return f"<Review {self.title!r}: {len(self.sections)} sections, verdict {self.data.get('verdict')}>"

    def section(self, title: str) -> Section | None:
        """The section whose title is ``title`` or starts with it (``"5."``, ``"Summary"``), if any."""
        return next((s for s in self.sections if s.title == title or s.title.startswith(title)), None)

    # a notebook shows a Review as the HTML report's body (figures included), or as Markdown

    def _repr_html_(self) -> str:
        return render_html_fragment(self)

    def _repr_markdown_(self) -> str:
        return render_markdown(self)

    def __str__(self) -> str:
        return render_markdown(self)


# -- text helpers for the sections ---------------------------------------------------------------


def _hex(n: int | None) -> str:
    return "-" if n is None else f"{n:#x}"


def _names(items, limit: int = 0) -> str:
    items = list(items)
    if limit and len(items) > limit:
        return ", ".join(f"`{x}`" for x in items[:limit]) + f" and {len(items) - limit} more"
    return ", ".join(f"`{x}`" for x in items)


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _display(name: str) -> str:
    """A file name without its folder (reports never carry paths of the machine that wrote them)."""
    return Path(name).name if ("/" in name or "\\" in name) else name
