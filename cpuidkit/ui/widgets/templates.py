"""``TemplatePanel``: a VMM's CPU template reviewed on two hosts, and across the built-in fleet.

Choose a shipped template (every Firecracker x86 template in ``data/firecracker-templates``, the recorded QEMU
models) or upload your own Firecracker template; the panel applies it to each host's KVM_GET_SUPPORTED_CPUID as
the VMM does, shows the review's summary line and section 0 (forced / left to the host / what KVM does) per host,
and draws the template across the built-in hosts.  A bad upload changes nothing and says why.
"""

from __future__ import annotations

import html

import ipywidgets as W

from cpuidkit.analysis.figures import plot_template_fleet, png_base64
from cpuidkit.analysis.review import Review, render_html_fragment, review
from cpuidkit.analysis.review.template_section import template_summary
from cpuidkit.analysis.templates import (
    apply_on_host,
    field_rows,
    parse_template_text,
    shipped_template,
    template_choices,
    template_fleet,
)
from cpuidkit.core.hosts import HostProfile, builtin_hosts
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.templates import CpuTemplate
from cpuidkit.errors import CpuidkitError

__all__ = ["TemplatePanel", "plain"]

UPLOADED = "uploaded: "


def plain(text: str) -> str:
    """Review text without its inline marks (what a page shows)."""
    return text.replace("`", "").replace("**", "")


class TemplatePanel(W.VBox):
    """One template on ``hosts`` (two built-in hosts by default) for ``kernel``; the fleet figure over
    ``fleet`` (default: every built-in host but the live one)."""

    def __init__(
        self,
        template: str = "T2S.json",
        hosts=("cascade-lake", "epyc-milan"),
        kernel: str = DEFAULT_KERNEL,
        fleet=None,
    ):
        self.hosts = [HostProfile.resolve(h) for h in hosts]
        self.kernel = kernel
        self.fleet_hosts = (
            [HostProfile.resolve(h) for h in fleet]
            if fleet is not None
            else [h for n, h in sorted(builtin_hosts().items()) if n != "live-kvm-epyc"]
        )
        self._uploaded: dict[str, CpuTemplate] = {}
        self.choice = W.Dropdown(options=template_choices(), value=template, description="template")
        self.choice.add_class("cpuidkit-template-choice")
        self.upload = W.FileUpload(accept=".json", multiple=False, description="your template")
        self.upload.add_class("cpuidkit-template-upload")
        self.button = W.Button(description="review", icon="refresh")
        self.button.add_class("cpuidkit-template-review")
        self.message = W.HTML()
        self.message.add_class("cpuidkit-template-message")
        self.out = W.HTML()
        self.out.add_class("cpuidkit-template-out")
        self.fleet_html = W.HTML()
        self.fleet_html.add_class("cpuidkit-template-fleet")
        self.button.on_click(lambda _b: self.refresh())
        self.upload.observe(self._on_upload, names="value")
        super().__init__([W.HBox([self.choice, self.upload, self.button]), self.message, self.out, self.fleet_html])
        self.add_class("cpuidkit-template-panel")
        self.reviews: list[Review] = []
        self.refresh()

    def template(self) -> CpuTemplate:
        name = self.choice.value
        if name in self._uploaded:
            return self._uploaded[name]
        return shipped_template(name)

    def load_text(self, text: str, name: str) -> bool:
        """Add an uploaded template and review it; a bad one changes nothing and the message says why."""
        try:
            t = parse_template_text(text, name)
        except CpuidkitError as e:
            self.message.value = (
                f'<span style="color:#c62828">not loaded, nothing changed: {html.escape(str(e))}</span>'
            )
            return False
        key = UPLOADED + t.name
        self._uploaded[key] = t
        if key not in self.choice.options:
            self.choice.options = [*self.choice.options, key]
        self.choice.value = key
        self.message.value = f"loaded <code>{html.escape(t.name)}</code> ({len(t.modifiers)} register modifiers)"
        self.refresh()
        return True

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        f = files[0]
        try:
            text = bytes(f["content"]).decode("utf-8")
        except UnicodeDecodeError:
            self.message.value = '<span style="color:#c62828">not loaded: the file is not UTF-8 text</span>'
            return
        self.load_text(text, f.get("name", "upload.json"))

    def expected(self) -> list[str]:
        """The lines the page must show for the current choice: per host, its name and the template summary."""
        t = self.template()
        out = []
        for h in self.hosts:
            a = apply_on_host(t, h, kernel=self.kernel)
            out.append(h.name)
            out.append(plain(template_summary(a, field_rows(a))))
        return out

    def refresh(self) -> None:
        t = self.template()
        parts = []
        self.reviews = []
        for h in self.hosts:
            a = apply_on_host(t, h, kernel=self.kernel)
            r = review(a.table, h, kernel=self.kernel, template_name=t.name, applied=a)
            self.reviews.append(r)
            short = Review(
                title=f"{t.name} on {h.name}",
                header=[],
                sections=[s for s in (r.section("Summary"), r.section("0.")) if s is not None],
                figures=r.figures,
                data=r.data,
            )
            parts.append(f"<h3>{html.escape(h.name)}</h3>" + render_html_fragment(short))
        self.out.value = "".join(parts)
        tf = template_fleet(t, self.fleet_hosts, kernel=self.kernel)
        png = png_base64(plot_template_fleet(tf), dpi=90, tight=True)
        runs = sum(r.runs for r in tf.runs)
        self.fleet_html.value = (
            f"<p>{html.escape(t.name)} across {len(tf.runs)} built-in hosts (kernel {self.kernel}): runs on "
            f'<b>{runs}</b>.</p><img alt="template across the fleet" src="data:image/png;base64,{png}">'
        )
        self.fleet = tf
