"""Read-only panels of a Lab: KVM's verdict, the lint's findings, a kernel's behaviours, a design review."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

import ipywidgets as W

from cpuidkit.analysis.lint import lint_class, lint_table, parse_intended
from cpuidkit.core.confirmed import confirmation
from cpuidkit.core.kernels import kernel_profile
from cpuidkit.errors import InputError
from cpuidkit.ui import _inputs, _output
from cpuidkit.ui._theme import VERDICT_COLOURS, confirmation_html
from cpuidkit.ui.course import Review, review
from cpuidkit.ui.lab import Lab, LabView
from cpuidkit.ui.widgets._common import _View


def verdict_html(v: dict, derived: Mapping[str, Any] | None = None) -> str:
    """The verdict panel's HTML for ``Lab.verdict()`` (or ``Outcome.as_dict()``)."""
    colour = VERDICT_COLOURS[v["verdict"]]
    head = f'<span style="color:{colour};font-size:120%;font-weight:bold">{v["verdict"].upper()}</span>'
    if v["errno"]:
        head += f' &nbsp;<code style="font-size:110%">{v["errno"]}</code> &nbsp;rule <code>{html.escape(v["rule"] or "")}</code>'
    parts = [
        f'<div class="cpuidkit-verdict-head">KVM_SET_CPUID2: {head}</div>',
        f"<div>{html.escape(v['explanation'])}</div>",
    ]
    if v.get("source"):
        parts.append(f'<div style="font-size:85%;color:#444">source: {html.escape(v["source"])}</div>')
    parts.append(
        f'<div style="font-size:85%;color:#444">kernel {v["kernel"]} · {v["vendor"]} · host {html.escape(v["host"])}</div>'
    )
    parts.append(confirmation_html(confirmation(v["kernel"], v["vendor"])))  # did a real kernel confirm this kind?
    for e in v.get("state_errors", []):
        parts.append(
            f'<div style="color:{VERDICT_COLOURS["rejected"]}">{html.escape(e.get("operation") or e["step"])}: '
            f"{e['errno']}: {html.escape(e['explanation'])}</div>"
        )
    if derived and v["verdict"] == "accepted":
        parts.append(
            f'<div style="font-size:85%">derived: MAXPHYADDR {derived["maxphyaddr"]}, '
            f"guest_supported_xcr0 {derived['guest_supported_xcr0']:#x}</div>"
        )
    return f'<div style="border-left:6px solid {colour};padding:4px 8px;margin:4px 0">' + "".join(parts) + "</div>"


class VerdictPanel(W.HTML, _View):
    """KVM's verdict on the current configuration: accepted or rejected, errno, rule,
    explanation and the kernel source of the rule; then any state write KVM refused."""

    value: str  # the ipywidgets trait (untyped there)

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        super().__init__()
        self.add_class("cpuidkit-verdict")
        self.data: dict = {}
        self.refresh()

    def _on_lab(self, what: set) -> None:
        self.refresh()

    def content(self, view: LabView) -> dict:
        v = view.verdict()
        return {"data": v, "html": verdict_html(v, view.outcome.derived)}

    def shown(self) -> dict:
        return {"data": self.data, "html": self.value}

    def refresh(self) -> None:
        c = self.content(self.lab.view)
        self.data = c["data"]
        if self.value != c["html"]:  # the derived line can change while the verdict stays
            self.value = c["html"]

    @property
    def text(self) -> str:
        """The panel as plain text (what a reader sees)."""

        return html.unescape(re.sub(r"<[^>]+>", " ", self.value))


class LintPanel(W.HTML, _View):
    """The lint's findings for the Lab's table (``cpuidkit.analysis.lint.lint_table``), worst first.
    ``intended`` marks findings that are insane on purpose (they stay listed, marked)."""

    value: str  # the ipywidgets trait (untyped there)

    def __init__(self, lab: Lab, intended=None, show_info: bool = False):
        parse_intended(intended)  # a bad ``intended`` is refused here, before the panel follows the Lab
        self.intended = intended
        self.show_info = _inputs.flag(show_info, "show_info")
        self._subscribe(lab)
        self.findings: list = []
        super().__init__()
        self.add_class("cpuidkit-lint")
        self.refresh()

    def _on_lab(self, what: set) -> None:
        if what & {"table", "host"}:
            self.refresh()

    def _findings(self, view: LabView) -> list:
        return lint_table(view.table, host=view.host, intended=self.intended)

    def content(self, view: LabView) -> dict:
        fs = self._findings(view)
        shown = [f for f in fs if self.show_info or f.severity != "info"]
        colours = {"illegal": VERDICT_COLOURS["rejected"], "insane": "#e65100", "info": "#555"}
        items = "".join(
            f'<li><b style="color:{colours[f.severity]}">{f.severity}</b> <code>{f.rule}</code>'
            f"{' (intended)' if f.intended else ''}: {html.escape(f.detail or f.explanation)}</li>"
            for f in shown
        )
        head = f"<b>lint: {lint_class(fs)}</b> ({len(fs)} finding{'s' if len(fs) != 1 else ''})"
        return {
            "findings": [f.rule for f in fs],
            "html": head + (f"<ul style='margin:2px 0'>{items}</ul>" if items else ""),
        }

    def shown(self) -> dict:
        return {"findings": [f.rule for f in self.findings], "html": self.value}

    def refresh(self) -> None:
        self.findings = self._findings(self.lab.view)
        value = self.content(self.lab.view)["html"]
        if value != self.value:
            self.value = value


class KernelBehaviours(W.HTML, _View):
    """For the Lab's kernel: each chosen behaviour of data/kvm-behaviours.csv, its value,
    version range, kernel function and how it was verified."""

    value: str  # the ipywidgets trait (untyped there)

    def __init__(self, lab: Lab, ids):
        self.ids = _inputs.behaviour_ids(ids)  # an unknown id is refused here
        self._subscribe(lab)
        super().__init__()
        self.refresh()

    def _on_lab(self, what: set) -> None:
        if "kernel" in what:
            self.refresh()

    def content(self, view: LabView) -> dict:
        k = kernel_profile(view.kernel)
        rows = []
        for bid in self.ids:
            b = k.behaviour(bid)
            rows.append(
                f"<tr><td><code>{bid}</code></td><td><b>{html.escape(b.value)}</b></td><td>{b.range_text}</td>"
                f"<td>{html.escape(b.function)}</td><td style='font-size:85%'>{html.escape(b.summary)}</td></tr>"
            )
        return {
            "html": f"<b>kernel {k.name}</b><table style='font-size:85%'><tr><th>behaviour</th><th>value</th>"
            f"<th>range</th><th>function</th><th>what it means</th></tr>{''.join(rows)}</table>"
        }

    def shown(self) -> dict:
        return {"html": self.value}

    def refresh(self) -> None:
        value = self.content(self.lab.view)["html"]
        if value != self.value:
            self.value = value


STALE_NOTE = "<i>the configuration changed since this review: press “review again”</i>"


class ReviewPanel(W.VBox, _View):
    """A design review of the Lab's table on its host (``course.review``), redone on request; a note says
    when the Lab has changed since."""

    def __init__(self, lab: Lab, pool=(), intended=None):
        parse_intended(intended)
        if isinstance(pool, (str, bytes)) or not isinstance(pool, (list, tuple)):
            raise InputError(f"pool must be a list of hosts, got {_inputs.kind(pool)}", where="pool")
        self.pool = tuple(_inputs.host(h) for h in pool)  # each resolved (a dump file through the hardened reader)
        self.intended = intended
        self._subscribe(lab)
        self.button = W.Button(description="review again", icon="refresh")
        self.note = W.HTML()
        self.out = W.Output()
        self.review: Review | None = None
        self._reviewed: tuple | None = None
        self.button.on_click(lambda _b: self.refresh())
        self.button.add_class("cpuidkit-review-again")
        self.note.add_class("cpuidkit-review-note")
        self.out.add_class("cpuidkit-review-out")
        super().__init__([W.HBox([self.button, self.note]), self.out])
        self.add_class("cpuidkit-review-panel")
        self.refresh()

    def _on_lab(self, what: set) -> None:
        self._note(self.lab.view)

    def content(self, view: LabView) -> dict:
        return {"stale": self._reviewed != _review_key(view)}

    def shown(self) -> dict:
        return {"stale": self.note.value == STALE_NOTE}

    def _note(self, view: LabView) -> None:
        value = STALE_NOTE if self.content(view)["stale"] else ""
        if self.note.value != value:
            self.note.value = value

    def refresh(self) -> None:
        from IPython.display import Markdown

        view = self.lab.view
        self.review = review(view.table, view.host, view.kernel, view.vendor, self.pool, intended=self.intended)
        self._reviewed = _review_key(view)
        self._note(view)
        # the output's state, never a capture (`with self.out:`) while a cell runs: Voilà can hang (ui._output)
        _output.show(self.out, Markdown(self.review._repr_markdown_()))


def _review_key(view: LabView) -> tuple:
    """What a review depends on: the table, the host (by identity), the kernel and the vendor."""
    return (view.table, id(view.host), view.kernel, view.vendor)
