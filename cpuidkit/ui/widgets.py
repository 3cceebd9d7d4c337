"""ipywidgets views of a :class:`~cpuidkit.ui.lab.Lab`.

Every view subscribes to its Lab and, on a change, recomputes what it shows
and pushes to the browser **only the parts that differ** from what it last
showed (one button's colour, one label), so a toggle costs one ``check()``
and a handful of widget messages.  Views:

=====================  ============================================================
``BitGrid``            32 buttons for one leaf/subleaf/register, coloured by owner,
                       field name and owner on hover; the stored value underneath
``RegisterPicker``     choose the leaf/subleaf/register a grid shows
``WidthSliders``       MAXPHYADDR (0x80000008.EAX[7:0]) and linear width ([15:8])
``Xcr0Checkboxes``     one checkbox per XSAVE component; KVM_SET_XCRS and XSETBV results
``KernelSelector``     the kernel version (named profiles of data/kernels.toml)
``VendorSelector``     vmx / svm / pvm
``HostPicker``         built-in host profiles, a dump file, or this machine ("live")
``VerdictPanel``       accepted / rejected, errno, rule, explanation, kernel source
``FieldTable``         the named fields as a pandas Styler, coloured by owner
``RuntimeTriggers``    CR4.OSXSAVE/PKE, APIC_BASE.EN, MISC_ENABLE.MWAIT, quirk, HLT, run
``ExportImport``       the table as KVM JSON (written atomically); a bad import changes nothing
``CpuidToggler``       all of the above wired to one Lab
=====================  ============================================================
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets as W

from cpuidkit.analysis.lint import lint_class, lint_table
from cpuidkit.core.hosts import VENDORS, builtin_hosts
from cpuidkit.core.kernels import kernel_profile, named_kernels, parse_version
from cpuidkit.core.table import CpuidEntry
from cpuidkit.core.xsave import XFEATURE_NAMES
from cpuidkit.kvm.check import build_vcpu
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE
from cpuidkit.kvm.runtime import APICBASE_ENABLE, MISC_ENABLE_MWAIT
from cpuidkit.kvm.xcr import evaluate_xcr0
from cpuidkit.live import kvm_available, resolve_host
from cpuidkit.ui._theme import CHANGED_OUTLINE, OWNER_COLOURS, VERDICT_COLOURS, legend_html, owner_colour
from cpuidkit.ui.course import Review, review
from cpuidkit.ui.lab import LINEAR_WIDTH, MAXPHYADDR, Lab, VcpuSetup, load_table_or_keep

__all__ = [
    "BitGrid",
    "RegisterPicker",
    "WidthSliders",
    "Xcr0Checkboxes",
    "KernelSelector",
    "VendorSelector",
    "HostPicker",
    "VerdictPanel",
    "FieldTable",
    "RuntimeTriggers",
    "ExportImport",
    "CpuidToggler",
    "LintPanel",
    "KernelBehaviours",
    "RejectionExplorer",
    "ReviewPanel",
    "verdict_html",
    "xsetbv_result",
]

APIC_DEFAULT_BASE = 0xFEE00000 | (1 << 8)  # default base, BSP


def _px(n: int) -> str:
    return f"{n}px"


class _View:
    """Mixin: subscribe to a Lab; ``_on_lab`` is called with the set of what changed."""

    lab: Lab

    def _subscribe(self, lab: Lab) -> None:
        self.lab = lab
        lab.on_change(lambda _lab, what: self._on_lab(what))

    def _on_lab(self, what: set) -> None:  # pragma: no cover - overridden
        pass


# -- the bit grid ----------------------------------------------------------------------------


class BitGrid(W.VBox, _View):
    """One register as 32 buttons (bit 31 first).  Click a bit to flip it in the table.

    The button shows the value userspace sets and is coloured by owner; the row
    underneath shows what KVM_GET_CPUID2 returns, outlined where KVM changed it.
    """

    def __init__(self, lab: Lab, leaf: int = 7, subleaf: int = 0, register: str = "ebx", editable: bool = True):
        self._subscribe(lab)
        self.leaf, self.subleaf, self.register = leaf, subleaf, register
        self.editable = editable
        self.title = W.HTML()
        self.buttons: dict[int, W.Button] = {}
        self.stored_cells: dict[int, W.HTML] = {}
        self._shown: dict[int, tuple] = {}
        self._stored_shown: dict[int, tuple] = {}
        rows = []
        for hi in (31, 15):
            bits = range(hi, hi - 16, -1)
            heads = [
                W.HTML(
                    f'<div style="text-align:center;font-size:80%;color:#555">{b}</div>', layout=W.Layout(width=_px(30))
                )
                for b in bits
            ]
            btns = []
            for b in bits:
                btn = W.Button(
                    description="0",
                    layout=W.Layout(width=_px(30), height=_px(26), padding="0px"),
                    disabled=not editable,
                )
                btn.add_class("cpuidkit-bit")
                btn.on_click(self._clicked(b))
                self.buttons[b] = btn
                btns.append(btn)
            stored = []
            for b in bits:
                cell = W.HTML(layout=W.Layout(width=_px(30)))
                self.stored_cells[b] = cell
                stored.append(cell)
            grid = W.GridBox(
                heads + btns + stored, layout=W.Layout(grid_template_columns="repeat(16, 30px)", grid_gap="1px 1px")
            )
            rows.append(grid)
        self.legend = W.HTML(legend_html())
        super().__init__([self.title, *rows, self.legend])
        self.add_class("cpuidkit-bitgrid")
        self.refresh()

    def _clicked(self, bit: int):
        def handler(_btn):
            info = self.lab.bits(self.leaf, self.subleaf, self.register)[bit]
            self.lab.set_bit(self.leaf, self.subleaf, self.register, bit, 1 - info.requested)

        return handler

    def toggle(self, bit: int) -> None:
        """Flip one bit as a click would."""
        self.buttons[bit].click()

    def show(self, leaf: int, subleaf: int, register: str) -> None:
        """Show another register (only the cells that differ are redrawn)."""
        self.leaf, self.subleaf, self.register = leaf, subleaf, register
        self.refresh()

    def _on_lab(self, what: set) -> None:
        self.refresh()

    def refresh(self) -> None:
        infos = self.lab.bits(self.leaf, self.subleaf, self.register)
        req = sum(i.requested << i.bit for i in infos)
        # Lab.bits() gives every bit a stored value or none of them, so the filter only narrows the type
        stored = None if infos[0].stored is None else sum(i.stored << i.bit for i in infos if i.stored is not None)
        title = (
            f"<b>CPUID {self.leaf:#x}.{self.subleaf} {self.register.upper()}</b> "
            f"&nbsp;set <code>{req:#010x}</code> &nbsp;stored "
            f"<code>{'—' if stored is None else f'{stored:#010x}'}</code>"
        )
        if title != self.title.value:
            self.title.value = title
        for i in infos:
            key = (i.requested, i.owner, i.tooltip)
            if self._shown.get(i.bit) != key:
                btn = self.buttons[i.bit]
                btn.description = str(i.requested)
                btn.tooltip = i.tooltip
                btn.style.button_color = owner_colour(i.owner)
                btn.style.font_weight = "bold" if i.requested else "normal"
                self._shown[i.bit] = key
            skey = (i.stored, i.stored is not None and i.stored != i.requested)
            if self._stored_shown.get(i.bit) != skey:
                self.stored_cells[i.bit].value = _stored_cell(i.stored, skey[1])
                self._stored_shown[i.bit] = skey


def _stored_cell(value: int | None, changed: bool) -> str:
    text = "·" if value is None else str(value)
    border = f"2px solid {CHANGED_OUTLINE}" if changed else "1px solid #ddd"
    title = ' title="KVM changed this bit"' if changed else ""
    return (
        f'<div{title} style="text-align:center;font-family:monospace;font-size:85%;border:{border};'
        f'line-height:16px">{text}</div>'
    )


class RegisterPicker(W.HBox, _View):
    """Pick the entry (leaf.subleaf) and register that a :class:`BitGrid` shows."""

    def __init__(self, lab: Lab, grid: BitGrid, on_pick=None):
        self._subscribe(lab)
        self.grid = grid
        self._on_pick = on_pick
        self.entry = W.Dropdown(
            description="entry",
            options=self._options(),
            value=(grid.leaf, grid.subleaf),
            layout=W.Layout(width="190px"),
        )
        self.entry.style.description_width = "40px"
        self.reg = W.ToggleButtons(
            options=["eax", "ebx", "ecx", "edx"], value=grid.register, style={"button_width": "48px"}
        )
        self.entry.observe(self._picked, "value")
        self.reg.observe(self._picked, "value")
        super().__init__([self.entry, self.reg])

    def _options(self) -> list[tuple[str, tuple[int, int]]]:
        keys = sorted({(e.function, e.index) for e in self.lab.table} | {(self.grid.leaf, self.grid.subleaf)})
        return [(f"{f:#x}.{i}", (f, i)) for f, i in keys]

    def _picked(self, _change) -> None:
        leaf, sub = self.entry.value
        self.grid.show(leaf, sub, self.reg.value)
        if self._on_pick:
            self._on_pick(leaf, sub, self.reg.value)

    def _on_lab(self, what: set) -> None:
        if "table" in what:
            opts = self._options()
            if [o[1] for o in opts] != [o[1] for o in self.entry.options]:
                value = self.entry.value
                self.entry.options = opts
                self.entry.value = value


# -- sliders and selectors -----------------------------------------------------------------------


class WidthSliders(W.VBox, _View):
    """MAXPHYADDR and linear-address width in 0x80000008.EAX.  KVM never checks the first
    (``cpuid_query_maxphyaddr`` just reads it) and accepts only 0, 48 and 57 for the second
    (``kvm_check_cpuid``)."""

    def __init__(self, lab: Lab, maximum: int = 64):
        """``maximum``: the slider's usual range (it widens, up to 255, when the table holds more)."""
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
            s.style.description_width = "100px"
        self.maxphyaddr.add_class("cpuidkit-maxphyaddr")
        self.linear.add_class("cpuidkit-linear-width")
        self.maxphyaddr.observe(lambda c: self._write(MAXPHYADDR, c["new"]), "value")
        self.linear.observe(lambda c: self._write(LINEAR_WIDTH, c["new"]), "value")
        self.note = W.HTML()
        super().__init__([self.maxphyaddr, self.linear, self.note])
        self._refresh_note()

    def _write(self, ref, value: int) -> None:
        if not self._syncing and self.lab.table.get_field(ref) != value:
            self.lab.set_field(ref, value)

    def _on_lab(self, what: set) -> None:
        if "table" in what:
            self._syncing = True
            try:
                for slider, value in ((self.maxphyaddr, self.lab.maxphyaddr), (self.linear, self.lab.linear_width)):
                    v = value or 0  # an 8-bit field: widen the slider rather than show a wrong value
                    if v > slider.max:
                        slider.max = v
                    if slider.value != v:
                        slider.value = v
            finally:
                self._syncing = False
        self._refresh_note()

    def _refresh_note(self) -> None:
        d = self.lab.outcome.derived
        if not self.lab.outcome.accepted:
            text = (
                f"KVM refused the table, so nothing is derived from it: the vCPU keeps what it had "
                f"(MAXPHYADDR {d['maxphyaddr']}; a fresh vCPU has 36)"
            )
            if text != self.note.value:
                self.note.value = text
            return
        text = (
            f"KVM's MAXPHYADDR for this vCPU: <b>{d['maxphyaddr']}</b> (host {self.lab.host.maxphyaddr}); "
            f"GPA bits {d['maxphyaddr']}–63 reserved"
        )
        if self.lab.maxphyaddr is not None and self.lab.maxphyaddr > self.lab.host.maxphyaddr:
            text += " · <b>guest &gt; host</b>: accepted, but memory above the host width cannot be mapped"
        if text != self.note.value:
            self.note.value = text


class KernelSelector(W.VBox, _View):
    """The kernel version: the named profiles of data/kernels.toml, with their notes."""

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        names = sorted(named_kernels(), key=parse_version)
        if lab.kernel not in names:
            names.append(lab.kernel)
        self.dropdown = W.Dropdown(
            description="kernel", options=names, value=lab.kernel, layout=W.Layout(width="180px")
        )
        self.dropdown.style.description_width = "50px"
        self.dropdown.add_class("cpuidkit-kernel")
        self.notes = W.HTML(layout=W.Layout(max_width="640px"))
        self.dropdown.observe(lambda c: self.lab.update(kernel=c["new"]), "value")
        super().__init__([self.dropdown, self.notes])
        self._on_lab({"kernel"})

    def _on_lab(self, what: set) -> None:
        if "kernel" in what:
            if self.dropdown.value != self.lab.kernel:
                self.dropdown.value = self.lab.kernel
            note = named_kernels().get(self.lab.kernel, {}).get("notes", "")
            self.notes.value = f'<div style="font-size:85%;color:#444">{html.escape(note)}</div>'


class VendorSelector(W.ToggleButtons, _View):
    """The KVM vendor module: kvm_intel (vmx), kvm_amd (svm) or kvm_pvm (pvm)."""

    value: str  # the ipywidgets trait (untyped there)

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        super().__init__(
            options=list(VENDORS),
            value=lab.vendor,
            description="vendor",
            tooltips=["kvm_intel", "kvm_amd", "kvm_pvm (measured rewrites where the host has them)"],
            style={"button_width": "56px", "description_width": "50px"},
        )
        self.observe(lambda c: self.lab.update(vendor=c["new"]), "value")

    def _on_lab(self, what: set) -> None:
        if "vendor" in what and self.value != self.lab.vendor:
            self.value = self.lab.vendor


def _live_available() -> bool:
    try:
        return kvm_available()[0]
    except Exception:  # noqa: BLE001 - any platform problem just hides the option
        return False


class HostPicker(W.VBox, _View):
    """A built-in host profile, this machine (``live``, where /dev/kvm works), or a dump file.

    Picking a host also loads its KVM_GET_SUPPORTED_CPUID as the guest table
    (untick "take its supported CPUID" to keep the current table).
    """

    def __init__(self, lab: Lab, live: bool | None = None):
        self._subscribe(lab)
        names = sorted(builtin_hosts())
        if live if live is not None else _live_available():
            names.append("live")
        if lab.host.name not in names:
            names.insert(0, lab.host.name)
        self.dropdown = W.Dropdown(
            description="host", options=names, value=lab.host.name, layout=W.Layout(width="260px")
        )
        self.dropdown.style.description_width = "40px"
        self.take_table = W.Checkbox(value=True, description="take its supported CPUID", indent=False)
        self.path = W.Text(
            placeholder="or a dump file: cpuid -r, KVM JSON, libvirt XML…", layout=W.Layout(width="320px")
        )
        self.load = W.Button(description="load host file", layout=W.Layout(width="120px"))
        self.message = W.HTML()
        self.description = W.HTML()
        self.dropdown.observe(self._picked, "value")
        self.load.on_click(self._load_file)
        super().__init__(
            [W.HBox([self.dropdown, self.take_table]), W.HBox([self.path, self.load]), self.description, self.message]
        )
        self._describe()

    def _apply(self, spec) -> None:
        try:
            host = resolve_host(spec)
        except Exception as e:  # noqa: BLE001 - shown to the user; the Lab is unchanged
            self.message.value = f'<span style="color:{VERDICT_COLOURS["rejected"]}">{html.escape(str(e))}</span>'
            return
        table = host.supported_cpuid() if self.take_table.value else None
        self.lab.update(host=host, table=table)
        self.message.value = ""

    def _picked(self, change) -> None:
        if change["new"] != self.lab.host.name:
            self._apply(change["new"])

    def _load_file(self, _btn) -> None:
        if self.path.value.strip():
            self._apply(self.path.value.strip())

    def _describe(self) -> None:
        h = self.lab.host
        self.description.value = (
            f'<div style="font-size:85%;color:#444">{html.escape(h.description or h.source)}; '
            f"MAXPHYADDR {h.maxphyaddr}, XCR0 mask {h.xcr0_mask:#x}</div>"
        )

    def _on_lab(self, what: set) -> None:
        if "host" in what:
            options = list(self.dropdown.options)
            if self.lab.host.name not in options:
                self.dropdown.options = [self.lab.host.name, *options]
            if self.dropdown.value != self.lab.host.name:
                self.dropdown.value = self.lab.host.name
            self._describe()


# -- verdict and field table ---------------------------------------------------------------------


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

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        super().__init__()
        self.add_class("cpuidkit-verdict")
        self.data: dict = {}
        self.refresh()

    def _on_lab(self, what: set) -> None:
        self.refresh()

    def refresh(self) -> None:
        v = self.lab.verdict()
        if v != self.data:
            self.data = v
            self.value = verdict_html(v, self.lab.outcome.derived)

    @property
    def text(self) -> str:
        """The panel as plain text (what a reader sees)."""

        return html.unescape(re.sub(r"<[^>]+>", " ", self.value))


def style_fields(frame):
    """A pandas Styler of a field frame, each row coloured by its owner."""

    def colour(row):
        c = OWNER_COLOURS.get(row["owner"], OWNER_COLOURS["unnamed"])
        return [f"background-color: {c}"] * len(row)

    fmt = {"set": lambda v: "—" if v is None or v != v else f"{int(v):#x}", "stored": lambda v: f"{int(v):#x}"}
    return frame.style.apply(colour, axis=1).format(fmt).hide(axis="index")


class FieldTable(W.VBox, _View):
    """The named fields of the stored table, coloured by owner.

    ``scope``: ``(leaf, subleaf)`` for one entry, ``"owned"`` for what KVM or the vendor
    module decide, ``"all"`` for every field.  ``frame`` is the pandas DataFrame,
    ``styler`` its pandas Styler (the same colours, for ``display()`` or ``to_excel``).
    The live view re-renders only the rows that changed: a full Styler render of a
    hundred rows costs tens of milliseconds, more than a frame.
    """

    SCOPES = {"this entry": None, "decided by KVM or the vendor": "owned", "all fields": "all"}
    COLUMNS = ("field", "leaf", "subleaf", "register", "bits", "set", "stored", "owner", "driver")

    def __init__(self, lab: Lab, scope="owned", max_height: str = "320px"):
        self._subscribe(lab)
        self.entry = scope if isinstance(scope, tuple) else (7, 0)
        first = next(k for k, v in self.SCOPES.items() if v == (None if isinstance(scope, tuple) else scope))
        self.scope_picker = W.Dropdown(
            description="show", layout=W.Layout(width="330px"), options=list(self.SCOPES), value=first
        )
        self.scope_picker.observe(lambda _c: self.refresh(), "value")
        self.html = W.HTML(layout=W.Layout(max_height=max_height, overflow="auto"))
        self.html.add_class("cpuidkit-field-table")
        self._rows: list[dict] = []
        self._key: tuple | None = None
        self._row_html: dict[tuple, str] = {}
        super().__init__([self.scope_picker, self.html])
        self.refresh()

    @property
    def scope(self):
        s = self.SCOPES[self.scope_picker.value]
        return self.entry if s is None else s

    @property
    def frame(self):
        import pandas as pd

        return pd.DataFrame(self._rows, columns=list(self.COLUMNS))

    @property
    def styler(self):
        return style_fields(self.frame)

    def show_entry(self, leaf: int, subleaf: int) -> None:
        self.entry = (leaf, subleaf)
        if self.SCOPES[self.scope_picker.value] is None:
            self.refresh()

    def _on_lab(self, what: set) -> None:
        self.refresh()

    def refresh(self) -> None:
        rows = self.lab.field_rows(self.scope)
        key = (self.lab.outcome.verdict, tuple(tuple(r.values()) for r in rows))
        if key == self._key:
            return
        self._key, self._rows = key, rows
        if not self.lab.outcome.accepted:
            self.html.value = (
                "<i>KVM refused the table: nothing new is stored, so there is no field view (see the verdict).</i>"
            )
            return
        if not rows:
            self.html.value = "<i>no named fields in this scope</i>"
            return
        cache = self._row_html
        body = []
        for r, k in zip(rows, key[1]):
            h = cache.get(k)
            if h is None:
                h = cache[k] = _row_html(r)
            body.append(h)
        if len(cache) > 4096:
            self._row_html = {k: cache[k] for k in key[1]}
        head = "".join(f"<th style='text-align:left;padding:1px 6px'>{c}</th>" for c in self.COLUMNS)
        self.html.value = (
            f"<table style='border-collapse:collapse;font-size:85%'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
        )


def _fmt_value(v) -> str:
    return "—" if v is None else f"{v:#x}"


def _row_html(r: dict) -> str:
    colour = OWNER_COLOURS.get(r["owner"], OWNER_COLOURS["unnamed"])
    changed = r["set"] != r["stored"]
    cells = [
        html.escape(str(r["field"])),
        r["leaf"],
        str(r["subleaf"]),
        r["register"],
        r["bits"],
        _fmt_value(r["set"]),
        _fmt_value(r["stored"]),
        r["owner"],
        html.escape(r["driver"]),
    ]
    tds = "".join(f"<td style='padding:1px 6px'>{c}</td>" for c in cells)
    outline = f";outline:2px solid {CHANGED_OUTLINE}" if changed else ""
    return f"<tr style='background:{colour}{outline}'>{tds}</tr>"


# -- runtime triggers ----------------------------------------------------------------------------


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


# -- export / import -------------------------------------------------------------------------------


class ExportImport(W.VBox, _View):
    """Save the table as KVM JSON (atomically: a reader never sees half a file) or load one.
    A failed import leaves everything as it was and says why."""

    def __init__(self, lab: Lab, path: str = "guest-cpuid.json"):
        self._subscribe(lab)
        self.path = W.Text(value=path, description="file", layout=W.Layout(width="360px"))
        self.path.style.description_width = "30px"
        self.export_button = W.Button(description="export KVM JSON", icon="download")
        self.import_button = W.Button(description="import", icon="upload")
        self.message = W.HTML()
        self.export_button.on_click(lambda _b: self.export())
        self.import_button.on_click(lambda _b: self.import_())
        super().__init__([W.HBox([self.path, self.export_button, self.import_button]), self.message])

    def export(self) -> Path | None:
        try:
            p = self.lab.export_json(self.path.value)
        except Exception as e:  # noqa: BLE001 - shown to the user
            self.message.value = (
                f'<span style="color:{VERDICT_COLOURS["rejected"]}">export failed: {html.escape(str(e))}</span>'
            )
            return None
        self.message.value = f"wrote {len(self.lab.table)} entries to <code>{html.escape(str(p))}</code>"
        return p

    def import_(self) -> bool:
        msg = load_table_or_keep(self.lab, self.path.value)
        ok = not msg.startswith("import failed")
        colour = VERDICT_COLOURS["accepted" if ok else "rejected"]
        self.message.value = f'<span style="color:{colour}">{html.escape(msg)}</span>'
        return ok


# -- everything together ---------------------------------------------------------------------------


class CpuidToggler(W.VBox):
    """The main toggler: host, kernel, vendor; a register grid; widths; vCPU state; verdict;
    field table; export/import.  All views share one :class:`Lab` (``toggler.lab``)."""

    def __init__(
        self,
        lab: Lab | None = None,
        leaf: int = 7,
        subleaf: int = 0,
        register: str = "ebx",
        live: bool | None = None,
        triggers: bool = True,
    ):
        self.lab = lab or Lab()
        self.host = HostPicker(self.lab, live=live)
        self.kernel = KernelSelector(self.lab)
        self.vendor = VendorSelector(self.lab)
        self.grid = BitGrid(self.lab, leaf, subleaf, register)
        self.table = FieldTable(self.lab, scope=(leaf, subleaf))
        self.picker = RegisterPicker(
            self.lab, self.grid, on_pick=lambda leaf, sub, _reg: self.table.show_entry(leaf, sub)
        )
        self.widths = WidthSliders(self.lab)
        self.verdict = VerdictPanel(self.lab)
        self.triggers = RuntimeTriggers(self.lab)
        self.files = ExportImport(self.lab)
        state = W.Accordion(
            children=[self.triggers, self.files], titles=("vCPU state and runtime triggers", "export / import KVM JSON")
        )
        if triggers:
            state.selected_index = 0
        children = [
            W.HBox([self.host, W.VBox([self.kernel, self.vendor])]),
            self.verdict,
            self.picker,
            self.grid,
            self.widths,
            state,
            self.table,
        ]
        super().__init__(children)
        self.add_class("cpuidkit-toggler")


# -- panels for single notebooks -----------------------------------------------------------------


class LintPanel(W.HTML, _View):
    """The lint's findings for the Lab's table (``cpuidkit.analysis.lint.lint_table``), worst first.
    ``intended`` marks findings that are insane on purpose (they stay listed, marked)."""

    value: str  # the ipywidgets trait (untyped there)

    def __init__(self, lab: Lab, intended=None, show_info: bool = False):
        self._subscribe(lab)
        self.intended = intended
        self.show_info = show_info
        self.findings: list = []
        super().__init__()
        self.add_class("cpuidkit-lint")
        self.refresh()

    def _on_lab(self, what: set) -> None:
        if what & {"table", "host"}:
            self.refresh()

    def refresh(self) -> None:
        fs = lint_table(self.lab.table, host=self.lab.host, intended=self.intended)
        self.findings = fs
        shown = [f for f in fs if self.show_info or f.severity != "info"]
        colours = {"illegal": VERDICT_COLOURS["rejected"], "insane": "#e65100", "info": "#555"}
        items = "".join(
            f'<li><b style="color:{colours[f.severity]}">{f.severity}</b> <code>{f.rule}</code>'
            f"{' (intended)' if f.intended else ''}: {html.escape(f.detail or f.explanation)}</li>"
            for f in shown
        )
        head = f"<b>lint: {lint_class(fs)}</b> ({len(fs)} finding{'s' if len(fs) != 1 else ''})"
        value = head + (f"<ul style='margin:2px 0'>{items}</ul>" if items else "")
        if value != self.value:
            self.value = value


class KernelBehaviours(W.HTML, _View):
    """For the Lab's kernel: each chosen behaviour of data/kvm-behaviours.csv, its value,
    version range, kernel function and how it was verified."""

    def __init__(self, lab: Lab, ids):
        self._subscribe(lab)
        self.ids = list(ids)
        super().__init__()
        self.refresh()

    def _on_lab(self, what: set) -> None:
        if "kernel" in what:
            self.refresh()

    def refresh(self) -> None:
        k = kernel_profile(self.lab.kernel)
        rows = []
        for bid in self.ids:
            b = k.behaviour(bid)
            rows.append(
                f"<tr><td><code>{bid}</code></td><td><b>{html.escape(b.value)}</b></td><td>{b.range_text}</td>"
                f"<td>{html.escape(b.function)}</td><td style='font-size:85%'>{html.escape(b.summary)}</td></tr>"
            )
        self.value = (
            f"<b>kernel {k.name}</b><table style='font-size:85%'><tr><th>behaviour</th><th>value</th>"
            f"<th>range</th><th>function</th><th>what it means</th></tr>{''.join(rows)}</table>"
        )


class RejectionExplorer(W.VBox, _View):
    """The four ways to make KVM_SET_CPUID2 fail, as controls over one base table:
    entry count (E2BIG above 256), linear width (EINVAL unless 0/48/57), AMX TILEDATA
    with or without permission (EPERM), and a changed table after KVM_RUN (EINVAL)."""

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        self.base = lab.table
        self.entries = W.IntSlider(
            description="entries",
            min=0,
            max=300,
            value=len(self.base),
            continuous_update=False,
            layout=W.Layout(width="420px"),
        )
        self.width = W.Dropdown(
            description="linear width",
            options=[0, 32, 39, 48, 50, 52, 57, 64],
            value=self.base.get_field("virt_addr_bits") or 0,
        )
        self.tiledata = W.Checkbox(description="0xD.0 EAX[18] TILEDATA", value=False, indent=False)
        self.permission = W.Checkbox(description="arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)", value=False, indent=False)
        self.after_run = W.Checkbox(description="after KVM_RUN, flip 6.EAX[0]", value=False, indent=False)
        for w in (self.entries, self.width, self.tiledata, self.permission, self.after_run):
            w.style.description_width = "90px" if w is not self.tiledata else "initial"
            w.observe(lambda _c: self.apply(), "value")
        self.verdict = VerdictPanel(lab)
        super().__init__(
            [self.entries, self.width, W.HBox([self.tiledata, self.permission]), self.after_run, self.verdict]
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

    def apply(self) -> None:
        t = self.table_for_settings()
        perm = 1 << 18 if self.permission.value else 0
        if self.after_run.value:
            flipped = t.set_field("0x6.0.eax[0]", 1 - (t.get_field("0x6.0.eax[0]") or 0))
            self.lab.update(table=flipped, state=VcpuSetup(xfeature_permission=perm, has_run=True, previous=t))
        else:
            self.lab.update(table=t, state=VcpuSetup(xfeature_permission=perm))


class ReviewPanel(W.VBox, _View):
    """A design review of the Lab's table on its host (``course.review``), redone on request."""

    def __init__(self, lab: Lab, pool=(), intended=None):
        self._subscribe(lab)
        self.pool = tuple(pool)
        self.intended = intended
        self.button = W.Button(description="review again", icon="refresh")
        self.out = W.Output()
        self.review: Review | None = None
        self.button.on_click(lambda _b: self.refresh())
        super().__init__([self.button, self.out])
        self.refresh()

    def refresh(self) -> None:
        from IPython.display import Markdown, display

        self.review = review(
            self.lab.table, self.lab.host, self.lab.kernel, self.lab.vendor, self.pool, intended=self.intended
        )
        self.out.clear_output()
        with self.out:
            display(Markdown(self.review._repr_markdown_()))
