"""The vCPU's state after KVM_SET_CPUID2: the runtime triggers, KVM_RUN, and XCR0."""

from __future__ import annotations

import html
from dataclasses import replace

import ipywidgets as W

from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.xsave import XFEATURE_NAMES
from cpuidkit.kvm.check import build_vcpu, check
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE
from cpuidkit.kvm.runtime import APICBASE_ENABLE, MISC_ENABLE_MWAIT
from cpuidkit.kvm.xcr import evaluate_xcr0
from cpuidkit.ui import _inputs
from cpuidkit.ui._theme import CHANGED_OUTLINE, VERDICT_COLOURS
from cpuidkit.ui.lab import Lab, LabView
from cpuidkit.ui.widgets._common import _View

APIC_DEFAULT_BASE = 0xFEE00000 | (1 << 8)  # default base, BSP
XCR0_RESET = 1  # XCR0 after reset: x87 only (what the views show while the state leaves XCR0 unset)
MISC_ENABLE_NO_MWAIT = "MISC_ENABLE_NO_MWAIT"


def _with(value: int | None, bit: int, on: bool, default: int = 0) -> int:
    """``value`` (``default`` when unset) with ``bit`` set or cleared: the other bits stay as they are."""
    v = default if value is None else value
    return v | bit if on else v & ~bit


class RuntimeTriggers(W.VBox, _View):
    """The vCPU events that make KVM rewrite CPUID (``kvm_update_cpuid_runtime``), and KVM_RUN.

    Each box is a state write after KVM_SET_CPUID2; the runtime fields of the
    stored view follow (CR4.OSXSAVE → 1.ECX[27], CR4.PKE → 7.0.ECX[4],
    APIC_BASE.EN → 1.EDX[9], XCR0 → 0xD.0/0xD.1 EBX, MISC_ENABLE.MWAIT →
    1.ECX[3] with the quirk disabled, HLT exits disabled → PV_UNHALT cleared).
    The XCR0 box takes what ``cpuidkit xcr0`` takes (``0x7``, ``7``, ``0b111``, at most 64 bits);
    anything else is refused underneath and the box shows the Lab's XCR0 again.
    """

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        self._syncing = False
        box = lambda d, tip: W.Checkbox(  # noqa: E731
            value=False, description=d, indent=False, tooltip=tip, layout=W.Layout(width="auto")
        )
        self.osxsave = box("CR4.OSXSAVE", "KVM_SET_SREGS with CR4 bit 18")
        self.pke = box("CR4.PKE", "KVM_SET_SREGS with CR4 bit 22")
        self.apic = box("APIC_BASE.EN", "KVM_SET_MSRS IA32_APIC_BASE bit 11")
        self.mwait = box("MISC_ENABLE.MWAIT", "KVM_SET_MSRS IA32_MISC_ENABLE bit 18")
        self.quirk = box("quirk MISC_ENABLE_NO_MWAIT off", "KVM_CAP_DISABLE_QUIRKS2: KVM then owns CPUID.1.ECX[3]")
        self.hlt = box("HLT exits disabled", "KVM_CAP_X86_DISABLE_EXITS(HLT): PV_UNHALT cleared")
        self.xcr0 = W.Text(description="XCR0", layout=W.Layout(width="170px"), continuous_update=False)
        self.xcr0.style.description_width = "40px"
        self.run = W.Button(description="KVM_RUN", tooltip="the vCPU enters the guest once", button_style="warning")
        self.reset = W.Button(description="new vCPU", tooltip="reset state, not run")
        self.status = W.HTML()
        self.message = W.HTML()
        self.view = W.HTML()
        for name in _BOXES:
            getattr(self, name).add_class(f"cpuidkit-runtime-{name}")
        self.status.add_class("cpuidkit-runtime-status")
        self.view.add_class("cpuidkit-runtime-view")
        self.run.on_click(lambda _b: self._act(self.lab.run))
        self.reset.on_click(lambda _b: self._act(self.lab.reset_vcpu))
        super().__init__(
            [
                W.HBox([self.osxsave, self.pke, self.apic, self.mwait]),
                W.HBox([self.quirk, self.hlt, self.xcr0]),
                W.HBox([self.run, self.reset, self.status]),
                self.message,
                self.view,
            ]
        )
        self.refresh()
        for w in (self.osxsave, self.pke, self.apic, self.mwait, self.quirk, self.hlt, self.xcr0):
            w.observe(self._changed, "value")

    def _changed(self, _change) -> None:
        if not self._syncing and self._act(self._write):
            self.refresh()  # the XCR0 box in its usual form (typed "3", shown "0x3") even if nothing changed

    def _write(self) -> None:
        """The boxes as one state write; bits the boxes do not show stay as the state has them."""
        s = self.lab.state
        xcr0 = _inputs.xcr0(self.xcr0.value)  # the CLI's rule: a number, at most 64 bits
        quirks = tuple(q for q in s.quirks_disabled if q != MISC_ENABLE_NO_MWAIT)
        self.lab.set_state(
            cr4=_with(_with(s.cr4, CR4_OSXSAVE, self.osxsave.value), CR4_PKE, self.pke.value),
            xcr0=xcr0,
            apic_base=_with(s.apic_base, APICBASE_ENABLE, self.apic.value, APIC_DEFAULT_BASE),
            misc_enable=_with(s.misc_enable, MISC_ENABLE_MWAIT, self.mwait.value),
            quirks_disabled=(*quirks, MISC_ENABLE_NO_MWAIT) if self.quirk.value else quirks,
            hlt_exits_disabled=self.hlt.value,
        )

    def content(self, view: LabView) -> dict:
        s = view.state
        return {
            "boxes": {
                "osxsave": bool((s.cr4 or 0) & CR4_OSXSAVE),
                "pke": bool((s.cr4 or 0) & CR4_PKE),
                "apic": s.apic_base is None or bool(s.apic_base & APICBASE_ENABLE),
                "mwait": bool((s.misc_enable or 0) & MISC_ENABLE_MWAIT),
                "quirk": MISC_ENABLE_NO_MWAIT in s.quirks_disabled,
                "hlt": s.hlt_exits_disabled,
                "xcr0": f"{s.xcr0 if s.xcr0 is not None else XCR0_RESET:#x}",
            },
            "status": (
                "<b>has run</b>: KVM_SET_CPUID2 now accepts only an identical table" if s.has_run else "not run yet"
            ),
            "view": runtime_view_html(view),
        }

    def shown(self) -> dict:
        return {
            "boxes": {name: getattr(self, name).value for name in _BOXES},
            "status": self.status.value,
            "view": self.view.value,
        }

    def refresh(self) -> None:
        c = self.content(self.lab.view)
        self._syncing = True
        try:
            for name, value in c["boxes"].items():
                w = getattr(self, name)
                if w.value != value:
                    w.value = value
        finally:
            self._syncing = False
        for w, value in ((self.status, c["status"]), (self.view, c["view"])):
            if w.value != value:
                w.value = value

    def _on_lab(self, what: set) -> None:
        self.refresh()


_BOXES = ("osxsave", "pke", "apic", "mwait", "quirk", "hlt", "xcr0")


RUNTIME_FIELDS = (
    ("osxsave", "1.ECX[27] OSXSAVE"),
    ("ospke", "7.0.ECX[4] OSPKE"),
    ("apic", "1.EDX[9] APIC"),
    ("monitor", "1.ECX[3] MWAIT"),
    ("xsave_size_enabled", "0xD.0 EBX"),
    ("xsaves_size_enabled", "0xD.1 EBX"),
)


def runtime_view_html(lab: Lab | LabView) -> str:
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


def xsetbv_result(lab: Lab | LabView, value: int) -> dict:
    """What a guest XSETBV and a host KVM_SET_XCRS do with ``value`` on the Lab's vCPU
    (``cpuidkit.kvm.xcr.evaluate_xcr0``: #UD with CR4.OSXSAVE clear, #GP(0) or EINVAL on a
    rule of ``__kvm_set_xcr``), or why it cannot be asked (KVM refused the table).  ``value`` is
    checked as ``cpuidkit xcr0`` checks it (at most 64 bits; an ``InputError`` otherwise)."""

    value = _inputs.xcr0(value)
    v = build_vcpu(lab.kernel, lab.vendor, lab.host, lab.state)
    try:
        v.set_cpuid(lab.table)
    except Exception as e:  # noqa: BLE001 - a rejected table: nothing to test against
        return {"xsetbv": "—", "set_xcrs": "—", "explanation": f"KVM_SET_CPUID2 failed first: {e}"}
    return evaluate_xcr0(v, value, cr4_osxsave=bool((lab.state.cr4 or 0) & CR4_OSXSAVE))


def xcr0_bits(host: HostProfile) -> list[int]:
    """The boxes of :class:`Xcr0Checkboxes` for a host: x87, SSE and every user component it enumerates."""
    return sorted({0, 1} | {b for b, c in host.xsave_components.items() if not c.supervisor})


class Xcr0Checkboxes(W.VBox, _View):
    """One checkbox per user XSAVE component the host enumerates (plus x87 and SSE).

    Ticking writes XCR0 into the vCPU state (KVM_SET_XCRS after KVM_SET_CPUID2); bits of the
    state's XCR0 without a box stay as they are.  The line underneath gives both paths' answer
    for the state's XCR0: a guest XSETBV and KVM_SET_XCRS.  A new host brings its own boxes.
    """

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        self._syncing = False
        self.boxes: dict[int, W.Checkbox] = {}
        self.grid = W.GridBox(layout=W.Layout(grid_template_columns="repeat(4, 195px)"))
        self.result = W.HTML()
        self.result.add_class("cpuidkit-xcr0-result")
        self.message = W.HTML()
        super().__init__([self.grid, self.result, self.message])
        self.add_class("cpuidkit-xcr0")
        self.refresh()

    @property
    def value(self) -> int:
        """The XCR0 the boxes show."""
        return sum(1 << b for b, cb in self.boxes.items() if cb.value)

    def set_value(self, xcr0) -> bool:
        """Write ``xcr0`` into the state and tick its boxes (one state write); a value ``cpuidkit xcr0``
        refuses (negative, above 64 bits, not a number) is refused in the message line.  True if written."""
        return self._act(lambda: self.lab.set_state(xcr0=_inputs.xcr0(xcr0)))

    def _changed(self, _change) -> None:
        if not self._syncing:
            mask = sum(1 << b for b in self.boxes)
            current = _state_xcr0(self.lab.view)
            self._act(lambda: self.lab.set_state(xcr0=current & ~mask | self.value))

    def _on_lab(self, what: set) -> None:
        self.refresh()

    def content(self, view: LabView) -> dict:
        bits = xcr0_bits(view.host)
        xcr0 = _state_xcr0(view)
        r = xsetbv_result(view, xcr0)
        sizes = ""
        if view.outcome.accepted:
            e0, e1 = view.outcome.stored.get(0xD, 0), view.outcome.stored.get(0xD, 1)
            if e0 is not None:
                sizes = f" · 0xD.0 EBX (standard size) <b>{e0.ebx}</b>"
            if e1 is not None and e1.eax & 0b1010:
                sizes += f" · 0xD.1 EBX (compacted) <b>{e1.ebx}</b>"
        boxless = xcr0 & ~sum(1 << b for b in bits)
        extra = f" (bits {boxless:#x} have no box here)" if boxless else ""
        bad = VERDICT_COLOURS["rejected"]
        col = lambda s: f'<b style="color:{bad if s not in ("ok", "—") else VERDICT_COLOURS["accepted"]}">{s}</b>'  # noqa: E731
        text = (
            f"XCR0 <code>{xcr0:#x}</code>{extra}: guest XSETBV {col(r['xsetbv'])} · KVM_SET_XCRS {col(r['set_xcrs'])}"
            f"<br><span style='font-size:85%'>{html.escape(r['explanation'])}</span>{sizes}"
        )
        return {"ticked": {b: bool(xcr0 >> b & 1) for b in bits}, "result": text}

    def shown(self) -> dict:
        return {"ticked": {b: cb.value for b, cb in self.boxes.items()}, "result": self.result.value}

    def refresh(self) -> None:
        c = self.content(self.lab.view)
        self._syncing = True
        try:
            if list(self.boxes) != list(c["ticked"]):  # another host: its own components
                self.boxes = {}
                for b in c["ticked"]:
                    cb = W.Checkbox(
                        value=False,
                        description=f"{b} {XFEATURE_NAMES.get(b, '?')}",
                        indent=False,
                        layout=W.Layout(width="190px"),
                    )
                    cb.add_class(f"cpuidkit-xcr0-bit-{b}")
                    cb.observe(self._changed, "value")
                    self.boxes[b] = cb
                self.grid.children = tuple(self.boxes.values())
            for b, on in c["ticked"].items():
                if self.boxes[b].value != on:
                    self.boxes[b].value = on
        finally:
            self._syncing = False
        if c["result"] != self.result.value:
            self.result.value = c["result"]


def _state_xcr0(view: LabView) -> int:
    return view.state.xcr0 if view.state.xcr0 is not None else XCR0_RESET


XTILECFG, XTILEDATA = 17, 18  # XCR0 bits of AMX's two XSAVE components
XTILE_PERMISSION = 1 << XTILEDATA  # what arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, XFEATURE_XTILEDATA) grants
_XCR0_BASE = 0x3  # x87 | SSE


class AmxPermissionToggle(W.VBox, _View):
    """The AMX story: ``arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, XFEATURE_XTILEDATA)`` as a checkbox on the
    Lab's vCPU state (``VcpuSetup.xfeature_permission``), and underneath, for the Lab's table with
    0xD.0 EAX[17] TILECFG and [18] TILEDATA enumerated: what KVM_SET_CPUID2 says without and with the
    permission, and what a guest XSETBV does with TILECFG alone (#GP: the two go together) and with
    TILECFG+TILEDATA (accepted once the table is)."""

    def __init__(self, lab: Lab):
        self._subscribe(lab, panel=False)  # a control and its own note; the verdict panel shows the Lab
        self.permission = W.Checkbox(
            description="arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, XFEATURE_XTILEDATA)",
            value=bool((lab.state.xfeature_permission or 0) & XTILE_PERMISSION),
            indent=False,
            style={"description_width": "initial"},
            layout=W.Layout(width="auto"),
        )
        self.permission.add_class("cpuidkit-amx-permission")
        self.permission.observe(lambda c: self._act(lambda: self._grant(bool(c["new"]))), "value")
        self.note = W.HTML()
        self.note.add_class("cpuidkit-amx-note")
        self.message = W.HTML()
        super().__init__([self.permission, self.note, self.message])
        self.refresh()

    def _grant(self, on: bool) -> None:
        perm = self.lab.state.xfeature_permission or 0
        self.lab.update(
            state=replace(
                self.lab.state, xfeature_permission=perm | XTILE_PERMISSION if on else perm & ~XTILE_PERMISSION
            )
        )

    def _on_lab(self, what: set) -> None:
        self.refresh()

    def rows(self) -> dict:
        """The note's answers, as data: ``set_cpuid2`` without/with permission, ``xsetbv`` for TILECFG
        alone and for TILECFG+TILEDATA on the Lab's current permission."""
        lab = self.lab
        table = lab.table.set_field(f"0xd.0.eax[{XTILECFG}]", 1).set_field(f"0xd.0.eax[{XTILEDATA}]", 1)
        perm = lab.state.xfeature_permission or 0
        answers: dict = {}
        for name, p in (("without", perm & ~XTILE_PERMISSION), ("with", perm | XTILE_PERMISSION)):
            out = check(
                table,
                kernel=lab.kernel,
                vendor=lab.vendor,
                host=lab.host,
                state=replace(lab.state, xfeature_permission=p),
            )
            answers[f"set_cpuid2_{name}"] = "accepted" if out.accepted else f"rejected ({out.errno})"
        v = build_vcpu(lab.kernel, lab.vendor, lab.host, lab.state)
        try:
            v.set_cpuid(table)
        except Exception as e:  # noqa: BLE001 - a rejected table: XSETBV cannot be asked
            answers["xsetbv_tilecfg"] = answers["xsetbv_both"] = f"— (KVM_SET_CPUID2 failed first: {e})"
            return answers
        for name, value in (("tilecfg", 1 << XTILECFG), ("both", (1 << XTILECFG) | (1 << XTILEDATA))):
            r = evaluate_xcr0(v, _XCR0_BASE | value, cr4_osxsave=True)
            answers[f"xsetbv_{name}"] = f"{r['xsetbv']}: {r['explanation']}"
        return answers

    def refresh(self) -> None:
        on = bool((self.lab.state.xfeature_permission or 0) & XTILE_PERMISSION)
        if self.permission.value != on:
            self.permission.value = on
        r = self.rows()
        e = html.escape
        value = (
            "<div style='font-size:90%'>the Lab's table with 0xD.0 EAX[17] TILECFG and [18] TILEDATA:<br>"
            f"KVM_SET_CPUID2 without permission: <b>{e(r['set_cpuid2_without'])}</b>; "
            f"with permission: <b>{e(r['set_cpuid2_with'])}</b><br>"
            f"guest XSETBV {_XCR0_BASE | 1 << XTILECFG:#x} (TILECFG alone): {e(r['xsetbv_tilecfg'])}<br>"
            f"guest XSETBV {_XCR0_BASE | 3 << XTILECFG:#x} (TILECFG+TILEDATA): {e(r['xsetbv_both'])}</div>"
        )
        if self.note.value != value:
            self.note.value = value
