"""Controls that edit the table: the width sliders, export/import, and the rejection explorer."""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as W

from cpuidkit.core.bits import check_u32
from cpuidkit.core.table import CpuidEntry
from cpuidkit.errors import InputError
from cpuidkit.ui import _inputs
from cpuidkit.ui._theme import VERDICT_COLOURS
from cpuidkit.ui.lab import LINEAR_WIDTH, MAXPHYADDR, Lab, LabView, VcpuSetup
from cpuidkit.ui.widgets._common import _View
from cpuidkit.ui.widgets.panels import VerdictPanel

# -- widths ----------------------------------------------------------------------------------------


class WidthSliders(W.VBox, _View):
    """MAXPHYADDR and linear-address width in 0x80000008.EAX.  KVM never checks the first
    (``cpuid_query_maxphyaddr`` just reads it) and accepts only 0, 48 and 57 for the second
    (``kvm_check_cpuid``)."""

    def __init__(self, lab: Lab, maximum: int = 64):
        """``maximum``: the slider's usual range (it widens, up to 255, when the table holds more)."""
        largest = (1 << MAXPHYADDR.width) - 1  # both fields are 8 bits wide
        if check_u32("maximum", maximum) > largest or maximum == 0:
            raise InputError(f"maximum must be 1..{largest} (an 8-bit field), got {maximum}", where="maximum")
        self._subscribe(lab)
        self._syncing = False
        self.maximum = maximum
        mp, lw = lab.maxphyaddr or 0, lab.linear_width or 0
        self.maxphyaddr = W.IntSlider(
            description="MAXPHYADDR",
            min=0,
            max=max(maximum, mp),
            continuous_update=False,
            value=mp,
            layout=W.Layout(width="420px"),
        )
        self.linear = W.IntSlider(
            description="linear width",
            min=0,
            max=max(maximum, lw),
            continuous_update=False,
            value=lw,
            layout=W.Layout(width="420px"),
        )
        for s in (self.maxphyaddr, self.linear):
            s.style.description_width = "initial"
        self.maxphyaddr.add_class("cpuidkit-maxphyaddr")
        self.linear.add_class("cpuidkit-linear-width")
        self.maxphyaddr.observe(lambda c: self._write(MAXPHYADDR, c["new"]), "value")
        self.linear.observe(lambda c: self._write(LINEAR_WIDTH, c["new"]), "value")
        self.note = W.HTML()
        self.message = W.HTML()
        self.note.add_class("cpuidkit-width-note")
        super().__init__([self.maxphyaddr, self.linear, self.note, self.message])
        self.add_class("cpuidkit-widths")
        self.refresh()

    def _write(self, ref, value: int) -> None:
        if not self._syncing and self.lab.table.get_field(ref) != value:
            self._act(lambda: self.lab.set_field(ref, value))

    def _on_lab(self, what: set) -> None:
        self.refresh()

    def content(self, view: LabView) -> dict:
        d = view.outcome.derived
        if not view.outcome.accepted:
            note = (
                f"KVM refused the table, so nothing is derived from it: the vCPU keeps what it had "
                f"(MAXPHYADDR {d['maxphyaddr']}; a fresh vCPU has 36)"
            )
        else:
            mp = d["maxphyaddr"]
            note = f"KVM's MAXPHYADDR for this vCPU: <b>{mp}</b> (host {view.host.maxphyaddr}); " + (
                f"GPA bits {mp}–63 reserved" if mp < 64 else "no GPA bit reserved (64 to 255 all mean that to KVM)"
            )
            if view.maxphyaddr == self.maximum:
                note += (
                    f" · the slider stops at {self.maximum}: a larger number typed into it is taken as "
                    f"{self.maximum} (lab.set_maxphyaddr() takes up to 255)"
                )
            if view.maxphyaddr is not None and view.maxphyaddr > view.host.maxphyaddr:
                note += " · <b>guest &gt; host</b>: accepted, but memory above the host width cannot be mapped"
        # an 8-bit field: the slider widens rather than show a wrong value
        return {"maxphyaddr": view.maxphyaddr or 0, "linear": view.linear_width or 0, "note": note}

    def shown(self) -> dict:
        return {"maxphyaddr": self.maxphyaddr.value, "linear": self.linear.value, "note": self.note.value}

    def refresh(self) -> None:
        c = self.content(self.lab.view)
        self._syncing = True
        try:
            for slider, v in ((self.maxphyaddr, c["maxphyaddr"]), (self.linear, c["linear"])):
                if v > slider.max:
                    slider.max = v
                if slider.value != v:
                    slider.value = v
        finally:
            self._syncing = False
        if c["note"] != self.note.value:
            self.note.value = c["note"]


# -- export / import -------------------------------------------------------------------------------


class ExportImport(W.VBox, _View):
    """Save the table as KVM JSON (atomically: a reader never sees half a file; only a regular file is
    replaced) or load one through the hardened reader (a FIFO, a device or a folder is refused at once).
    A failed import leaves everything as it was and says why."""

    def __init__(self, lab: Lab, path: str = "guest-cpuid.json"):
        _inputs.path(path)
        self._subscribe(lab, panel=False)  # shows no part of the Lab
        self.path = W.Text(value=str(path), description="file", layout=W.Layout(width="360px"))
        self.path.style.description_width = "30px"
        self.export_button = W.Button(description="export KVM JSON", icon="download")
        self.import_button = W.Button(description="import", icon="upload")
        self.message = W.HTML()
        self.export_button.on_click(lambda _b: self.export())
        self.import_button.on_click(lambda _b: self.import_())
        super().__init__([W.HBox([self.path, self.export_button, self.import_button]), self.message])

    def export(self) -> Path | None:
        written: list[Path] = []
        if not self._act(lambda: written.append(self.lab.export_json(self.path.value)), "export failed"):
            return None
        p = written[0]
        self.message.value = f"wrote {len(self.lab.table)} entries to <code>{html.escape(str(p))}</code>"
        return p

    def import_(self) -> bool:
        path = self.path.value
        if not self._act(lambda: self.lab.import_json(path), "import failed, nothing changed"):
            return False
        colour = VERDICT_COLOURS["accepted"]
        self.message.value = (
            f'<span style="color:{colour}">{html.escape(f"imported {len(self.lab.table)} entries from {path}")}</span>'
        )
        return True


# -- the four rejections ---------------------------------------------------------------------------


class RejectionExplorer(W.VBox, _View):
    """The four ways to make KVM_SET_CPUID2 fail, as controls over one base table:
    entry count (E2BIG above 256), linear width (EINVAL unless 0/48/57), AMX TILEDATA
    with or without permission (EPERM), and a changed table after KVM_RUN (EINVAL)."""

    def __init__(self, lab: Lab):
        self._subscribe(lab, panel=False)  # its controls are settings; its verdict panel shows the Lab
        self.base = lab.table
        self.entries = W.IntSlider(
            description="entries",
            min=0,
            max=300,
            value=len(self.base),
            continuous_update=False,
            layout=W.Layout(width="420px"),
        )
        widths = [0, 32, 39, 48, 50, 52, 57, 64]
        width = self.base.get_field("virt_addr_bits") or 0
        self.width = W.Dropdown(
            description="linear width",
            options=widths if width in widths else sorted([*widths, width]),
            value=width,
        )
        self.tiledata = W.Checkbox(description="0xD.0 EAX[18] TILEDATA", value=False, indent=False)
        self.permission = W.Checkbox(description="arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)", value=False, indent=False)
        self.after_run = W.Checkbox(description="after KVM_RUN, flip 6.EAX[0]", value=False, indent=False)
        for w in (self.entries, self.width, self.tiledata, self.permission, self.after_run):
            w.style.description_width = "90px" if w is not self.tiledata else "initial"
            w.observe(lambda _c: self.apply(), "value")
        self.verdict = VerdictPanel(lab)
        self.message = W.HTML()
        super().__init__(
            [
                self.entries,
                self.width,
                W.HBox([self.tiledata, self.permission]),
                self.after_run,
                self.verdict,
                self.message,
            ]
        )

    def table_for_settings(self):
        t = self.base.set_field("virt_addr_bits", self.width.value)
        if self.tiledata.value:
            t = t.set_field("0xd.0.eax[17]", 1).set_field("0xd.0.eax[18]", 1)
        n = self.entries.value
        if n < len(t):
            t = t[:n]
        else:
            t = t.appended(*(CpuidEntry(0x40000100 + i) for i in range(n - len(t))))
        return t

    def apply(self) -> bool:
        """Set the Lab to the table and state the controls describe.  True if the Lab took them."""
        return self._act(self._apply)

    def _apply(self) -> None:
        t = self.table_for_settings()
        perm = 1 << 18 if self.permission.value else 0
        if self.after_run.value:
            flipped = t.set_field("0x6.0.eax[0]", 1 - (t.get_field("0x6.0.eax[0]") or 0))
            self.lab.update(table=flipped, state=VcpuSetup(xfeature_permission=perm, has_run=True, previous=t))
        else:
            self.lab.update(table=t, state=VcpuSetup(xfeature_permission=perm))

    def refresh(self) -> None:
        pass  # the controls are settings, not a view of the Lab: nothing to show again after a refusal
