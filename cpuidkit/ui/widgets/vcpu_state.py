"""The vCPU's state after KVM_SET_CPUID2: the runtime triggers, KVM_RUN, and XCR0."""

from __future__ import annotations

import html

import ipywidgets as W

from cpuidkit.core.xsave import XFEATURE_NAMES
from cpuidkit.kvm.check import build_vcpu
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE
from cpuidkit.kvm.runtime import APICBASE_ENABLE, MISC_ENABLE_MWAIT
from cpuidkit.kvm.xcr import evaluate_xcr0
from cpuidkit.ui._theme import CHANGED_OUTLINE, VERDICT_COLOURS
from cpuidkit.ui.lab import Lab
from cpuidkit.ui.widgets._common import _View

APIC_DEFAULT_BASE = 0xFEE00000 | (1 << 8)  # default base, BSP


class RuntimeTriggers(W.VBox, _View):
    """The vCPU events that make KVM rewrite CPUID (``kvm_update_cpuid_runtime``), and KVM_RUN.

    Each box is a state write after KVM_SET_CPUID2; the runtime fields of the
    stored view follow (CR4.OSXSAVE → 1.ECX[27], CR4.PKE → 7.0.ECX[4],
    APIC_BASE.EN → 1.EDX[9], XCR0 → 0xD.0/0xD.1 EBX, MISC_ENABLE.MWAIT →
    1.ECX[3] with the quirk disabled, HLT exits disabled → PV_UNHALT cleared).
    """

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        s = lab.state
        box = lambda d, v, tip: W.Checkbox(
            value=v,
            description=d,
            indent=False,
            tooltip=tip,  # noqa: E731
            layout=W.Layout(width="auto"),
        )
        self.osxsave = box("CR4.OSXSAVE", bool((s.cr4 or 0) & CR4_OSXSAVE), "KVM_SET_SREGS with CR4 bit 18")
        self.pke = box("CR4.PKE", bool((s.cr4 or 0) & CR4_PKE), "KVM_SET_SREGS with CR4 bit 22")
        self.apic = box(
            "APIC_BASE.EN",
            s.apic_base is None or bool(s.apic_base & APICBASE_ENABLE),
            "KVM_SET_MSRS IA32_APIC_BASE bit 11",
        )
        self.mwait = box(
            "MISC_ENABLE.MWAIT", bool((s.misc_enable or 0) & MISC_ENABLE_MWAIT), "KVM_SET_MSRS IA32_MISC_ENABLE bit 18"
        )
        self.quirk = box(
            "quirk MISC_ENABLE_NO_MWAIT off",
            "MISC_ENABLE_NO_MWAIT" in s.quirks_disabled,
            "KVM_CAP_DISABLE_QUIRKS2: KVM then owns CPUID.1.ECX[3]",
        )
        self.hlt = box("HLT exits disabled", s.hlt_exits_disabled, "KVM_CAP_X86_DISABLE_EXITS(HLT): PV_UNHALT cleared")
        self.xcr0 = W.Text(
            value=f"{s.xcr0 if s.xcr0 is not None else 1:#x}",
            description="XCR0",
            layout=W.Layout(width="170px"),
            continuous_update=False,
        )
        self.xcr0.style.description_width = "40px"
        self.run = W.Button(description="KVM_RUN", tooltip="the vCPU enters the guest once", button_style="warning")
        self.reset = W.Button(description="new vCPU", tooltip="reset state, not run")
        self.status = W.HTML()
        self.view = W.HTML()
        for w in (self.osxsave, self.pke, self.apic, self.mwait, self.quirk, self.hlt, self.xcr0):
            w.observe(self._changed, "value")
        self.run.on_click(lambda _b: self.lab.run())
        self.reset.on_click(lambda _b: self.lab.reset_vcpu())
        self._syncing = False
        super().__init__(
            [
                W.HBox([self.osxsave, self.pke, self.apic, self.mwait]),
                W.HBox([self.quirk, self.hlt, self.xcr0]),
                W.HBox([self.run, self.reset, self.status]),
                self.view,
            ]
        )
        self.refresh()

    def _changed(self, _change) -> None:
        if self._syncing:
            return
        try:
            xcr0 = int(self.xcr0.value, 0)
        except ValueError:
            self.status.value = (
                f'<span style="color:{VERDICT_COLOURS["rejected"]}">XCR0 must be a number like 0x7</span>'
            )
            return
        cr4 = (CR4_OSXSAVE if self.osxsave.value else 0) | (CR4_PKE if self.pke.value else 0)
        quirks = ("MISC_ENABLE_NO_MWAIT",) if self.quirk.value else ()
        self.lab.set_state(
            cr4=cr4,
            xcr0=xcr0,
            apic_base=APIC_DEFAULT_BASE | (APICBASE_ENABLE if self.apic.value else 0),
            misc_enable=MISC_ENABLE_MWAIT if self.mwait.value else 0,
            quirks_disabled=quirks,
            hlt_exits_disabled=self.hlt.value,
        )

    def _on_lab(self, what: set) -> None:
        if "state" in what:
            s = self.lab.state
            self._syncing = True
            try:
                for w, v in (
                    (self.osxsave, bool((s.cr4 or 0) & CR4_OSXSAVE)),
                    (self.pke, bool((s.cr4 or 0) & CR4_PKE)),
                    (self.apic, s.apic_base is None or bool(s.apic_base & APICBASE_ENABLE)),
                    (self.mwait, bool((s.misc_enable or 0) & MISC_ENABLE_MWAIT)),
                    (self.quirk, "MISC_ENABLE_NO_MWAIT" in s.quirks_disabled),
                    (self.hlt, s.hlt_exits_disabled),
                    (self.xcr0, f"{s.xcr0 if s.xcr0 is not None else 1:#x}"),
                ):
                    if w.value != v:
                        w.value = v
            finally:
                self._syncing = False
        self.refresh()

    def refresh(self) -> None:
        s = self.lab.state
        status = "<b>has run</b>: KVM_SET_CPUID2 now accepts only an identical table" if s.has_run else "not run yet"
        if self.status.value != status:
            self.status.value = status
        view = runtime_view_html(self.lab)
        if self.view.value != view:
            self.view.value = view


RUNTIME_FIELDS = (
    ("osxsave", "1.ECX[27] OSXSAVE"),
    ("ospke", "7.0.ECX[4] OSPKE"),
    ("apic", "1.EDX[9] APIC"),
    ("monitor", "1.ECX[3] MWAIT"),
    ("xsave_size_enabled", "0xD.0 EBX"),
    ("xsaves_size_enabled", "0xD.1 EBX"),
)


def runtime_view_html(lab: Lab) -> str:
    """The runtime-owned fields as userspace set them and as KVM stores them."""
    out = lab.outcome
    if not out.accepted:
        return "<i>nothing stored (KVM refused the table)</i>"
    cells = []
    for name, label in RUNTIME_FIELDS:
        try:
            before = lab.table.get_field(name)
            after = out.stored.get_field(name)
        except Exception:  # noqa: BLE001 - a name the catalog spells differently: skip
            continue
        if after is None:
            continue
        changed = before != after
        style = f"border:2px solid {CHANGED_OUTLINE}" if changed else "border:1px solid #ccc"
        shown = "—" if before is None else str(before)
        cells.append(f'<td style="{style};padding:2px 6px">{label}<br>set {shown} → stored <b>{after}</b></td>')
    return '<table style="font-size:85%"><tr>' + "".join(cells) + "</tr></table>"


# -- XCR0 ----------------------------------------------------------------------------------------


def xsetbv_result(lab: Lab, value: int) -> dict:
    """What a guest XSETBV and a host KVM_SET_XCRS do with ``value`` on the Lab's vCPU
    (``cpuidkit.core.xsave.evaluate_xcr0``: #UD with CR4.OSXSAVE clear, #GP(0) or EINVAL on a
    rule of ``__kvm_set_xcr``), or why it cannot be asked (KVM refused the table)."""

    v = build_vcpu(lab.kernel, lab.vendor, lab.host, lab.state)
    try:
        v.set_cpuid(lab.table)
    except Exception as e:  # noqa: BLE001 - a rejected table: nothing to test against
        return {"xsetbv": "—", "set_xcrs": "—", "explanation": f"KVM_SET_CPUID2 failed first: {e}"}
    return evaluate_xcr0(v, value, cr4_osxsave=bool((lab.state.cr4 or 0) & CR4_OSXSAVE))


class Xcr0Checkboxes(W.VBox, _View):
    """One checkbox per user XSAVE component the host enumerates (plus x87 and SSE).

    Ticking writes XCR0 into the vCPU state (KVM_SET_XCRS after KVM_SET_CPUID2).
    The line underneath gives both paths' answer: a guest XSETBV and KVM_SET_XCRS.
    """

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        bits = sorted({0, 1} | {b for b, c in lab.host.xsave_components.items() if not c.supervisor})
        current = lab.state.xcr0 if lab.state.xcr0 is not None else 1
        self.boxes: dict[int, W.Checkbox] = {}
        for b in bits:
            cb = W.Checkbox(
                value=bool(current >> b & 1),
                description=f"{b} {XFEATURE_NAMES.get(b, '?')}",
                indent=False,
                layout=W.Layout(width="190px"),
            )
            cb.observe(self._changed, "value")
            self.boxes[b] = cb
        self.result = W.HTML()
        self.result.add_class("cpuidkit-xcr0-result")
        self._syncing = False
        grid = W.GridBox(list(self.boxes.values()), layout=W.Layout(grid_template_columns="repeat(4, 195px)"))
        super().__init__([grid, self.result])
        self.refresh()

    @property
    def value(self) -> int:
        return sum(1 << b for b, cb in self.boxes.items() if cb.value)

    def set_value(self, xcr0: int) -> None:
        """Tick the boxes of ``xcr0`` (one state write)."""
        self._syncing = True
        try:
            for b, cb in self.boxes.items():
                cb.value = bool(xcr0 >> b & 1)
        finally:
            self._syncing = False
        self.lab.set_state(xcr0=self.value)

    def _changed(self, _change) -> None:
        if not self._syncing:
            self.lab.set_state(xcr0=self.value)

    def _on_lab(self, what: set) -> None:
        if "state" in what and self.lab.state.xcr0 is not None and self.lab.state.xcr0 != self.value:
            self._syncing = True
            try:
                for b, cb in self.boxes.items():
                    cb.value = bool(self.lab.state.xcr0 >> b & 1)
            finally:
                self._syncing = False
        self.refresh()

    def refresh(self) -> None:
        r = xsetbv_result(self.lab, self.value)
        sizes = ""
        if self.lab.outcome.accepted:
            e0, e1 = self.lab.outcome.stored.get(0xD, 0), self.lab.outcome.stored.get(0xD, 1)
            if e0 is not None:
                sizes = f" · 0xD.0 EBX (standard size) <b>{e0.ebx}</b>"
            if e1 is not None and e1.eax & 0b1010:
                sizes += f" · 0xD.1 EBX (compacted) <b>{e1.ebx}</b>"
        bad = VERDICT_COLOURS["rejected"]
        col = lambda s: f'<b style="color:{bad if s not in ("ok", "—") else VERDICT_COLOURS["accepted"]}">{s}</b>'  # noqa: E731
        text = (
            f"XCR0 <code>{self.value:#x}</code>: guest XSETBV {col(r['xsetbv'])} · KVM_SET_XCRS {col(r['set_xcrs'])}"
            f"<br><span style='font-size:85%'>{html.escape(r['explanation'])}</span>{sizes}"
        )
        if text != self.result.value:
            self.result.value = text
