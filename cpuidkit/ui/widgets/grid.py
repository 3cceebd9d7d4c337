"""The register views: the bit grid, the register picker and the named-field table."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable

import ipywidgets as W

from cpuidkit.core.xsave import XFEATURE_NAMES
from cpuidkit.errors import CpuidkitError, InputError
from cpuidkit.ui import _inputs
from cpuidkit.ui._theme import CHANGED_OUTLINE, OWNER_COLOURS, legend_html, owner_colour
from cpuidkit.ui.lab import BitInfo, Lab, LabView, check_scope
from cpuidkit.ui.widgets._common import _View, error_html

# -- the bit grid ----------------------------------------------------------------------------------


def _px(n: int) -> str:
    return f"{n}px"


# XSAVE component masks, one component per bit: (leaf, subleaf, register) -> the component number of bit 0
_COMPONENT_REGISTERS = {(0xD, 0, "eax"): 0, (0xD, 0, "edx"): 32, (0xD, 1, "ecx"): 0, (0xD, 1, "edx"): 32}


def bit_name(leaf: int, subleaf: int, register: str, bit: int) -> str | None:
    """The name of one bit of a multi-bit field where the bit has its own (0xD.0 EAX/EDX and 0xD.1 ECX/EDX:
    the XCR0/XSS component names), else None."""
    base = _COMPONENT_REGISTERS.get((leaf, subleaf, register.lower()))
    if base is None:
        return None
    return XFEATURE_NAMES.get(base + bit)


def bit_tooltip(leaf: int, subleaf: int, register: str, info: BitInfo) -> str:
    """A grid cell's hover text: the bit's own name first where a multi-bit field has one
    (e.g. 0xD.0 EAX[11] "cet_u (XSAVE component 11)"), then the field it belongs to."""
    name = bit_name(leaf, subleaf, register, info.bit)
    if name is None or info.field is None or info.field.width <= 1:
        return info.tooltip
    n = _COMPONENT_REGISTERS[(leaf, subleaf, register.lower())] + info.bit
    return f"bit {info.bit}: {name} (XSAVE component {n}) · in " + info.tooltip.removeprefix(f"bit {info.bit}: ")


class BitGrid(W.VBox, _View):
    """One register as 32 buttons (bit 31 first).  Click a bit to flip it in the table.

    The button shows the value userspace sets and is coloured by owner; the row
    underneath shows what KVM_GET_CPUID2 returns, outlined where KVM changed it.
    """

    def __init__(self, lab: Lab, leaf: int = 7, subleaf: int = 0, register: str = "ebx", editable: bool = True):
        ref = _inputs.position(leaf, subleaf, register)
        self.editable = _inputs.flag(editable, "editable")
        self._subscribe(lab)
        self.leaf, self.subleaf, self.register = ref.leaf, ref.subleaf, ref.register
        self._followers: list[Callable[[int, int, str], None]] = []
        self.title = W.HTML()
        self.title.add_class("cpuidkit-bitgrid-title")
        self.message = W.HTML()
        self.buttons: dict[int, W.Button] = {}
        self.stored_cells: dict[int, W.HTML] = {}
        self._shown: dict[int, tuple] = {}
        self._stored_shown: dict[int, str] = {}
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
                    disabled=not self.editable,
                )
                btn.add_class("cpuidkit-bit")
                btn.add_class(f"cpuidkit-bit-{b}")
                btn.on_click(self._clicked(b))
                self.buttons[b] = btn
                btns.append(btn)
            stored = []
            for b in bits:
                cell = W.HTML(layout=W.Layout(width=_px(30)))
                cell.add_class(f"cpuidkit-stored-{b}")
                self.stored_cells[b] = cell
                stored.append(cell)
            grid = W.GridBox(
                heads + btns + stored, layout=W.Layout(grid_template_columns="repeat(16, 30px)", grid_gap="1px 1px")
            )
            rows.append(grid)
        self.legend = W.HTML(legend_html())
        super().__init__([self.title, self.message, *rows, self.legend])
        self.add_class("cpuidkit-bitgrid")
        self.refresh()

    def _clicked(self, bit: int):
        def handler(_btn):
            self._act(lambda: self._flip(bit))

        return handler

    def _flip(self, bit: int) -> None:
        info = self.lab.bits(self.leaf, self.subleaf, self.register)[bit]
        self.lab.set_bit(self.leaf, self.subleaf, self.register, bit, 1 - info.requested)

    def _refused(self, e: CpuidkitError) -> bool:
        self._say(error_html(str(e)))
        return False

    def toggle(self, bit: int) -> bool:
        """Flip one bit as a click would; a bit outside 0..31 is refused in the message line.  True if flipped."""
        try:
            ref = _inputs.position(self.leaf, self.subleaf, self.register, bit)
        except CpuidkitError as e:
            return self._refused(e)
        return self._act(lambda: self._flip(ref.lo))

    def on_show(self, follower: Callable[[int, int, str], None]) -> None:
        """Call ``follower(leaf, subleaf, register)`` whenever the grid shows another register."""
        self._followers.append(follower)

    def show(self, leaf: int, subleaf: int, register: str) -> bool:
        """Show another register (only the cells that differ are redrawn); a bad position is refused in the
        message line and the grid stays.  True if shown."""
        try:
            ref = _inputs.position(leaf, subleaf, register)
        except CpuidkitError as e:
            return self._refused(e)
        self._say("")
        self.leaf, self.subleaf, self.register = ref.leaf, ref.subleaf, ref.register
        self.refresh()
        for follower in list(self._followers):
            follower(ref.leaf, ref.subleaf, ref.register)
        return True

    def _on_lab(self, what: set) -> None:
        self.refresh()

    def content(self, view: LabView) -> dict:
        infos = view.bits(self.leaf, self.subleaf, self.register)
        req = sum(i.requested << i.bit for i in infos)
        # LabView.bits() gives every bit a stored value or none of them, so the filter only narrows the type
        stored = None if infos[0].stored is None else sum(i.stored << i.bit for i in infos if i.stored is not None)
        title = (
            f"<b>CPUID {self.leaf:#x}.{self.subleaf} {self.register.upper()}</b> "
            f"&nbsp;set <code>{req:#010x}</code> &nbsp;stored "
            f"<code>{'—' if stored is None else f'{stored:#010x}'}</code>"
        )
        return {
            "title": title,
            "cells": {
                i.bit: (
                    str(i.requested),
                    bit_tooltip(self.leaf, self.subleaf, self.register, i),
                    owner_colour(i.owner),
                    "bold" if i.requested else "normal",
                )
                for i in infos
            },
            "stored": {i.bit: _stored_cell(i.stored, i.stored is not None and i.stored != i.requested) for i in infos},
        }

    def shown(self) -> dict:
        return {
            "title": self.title.value,
            "cells": {
                b: (btn.description, btn.tooltip, btn.style.button_color, btn.style.font_weight)
                for b, btn in self.buttons.items()
            },
            "stored": {b: cell.value for b, cell in self.stored_cells.items()},
        }

    def refresh(self) -> None:
        c = self.content(self.lab.view)
        if c["title"] != self.title.value:
            self.title.value = c["title"]
        for bit, cell in c["cells"].items():
            if self._shown.get(bit) != cell:
                btn = self.buttons[bit]
                btn.description, btn.tooltip = cell[0], cell[1]
                btn.style.button_color, btn.style.font_weight = cell[2], cell[3]
                self._shown[bit] = cell
        for bit, value in c["stored"].items():
            if self._stored_shown.get(bit) != value:
                self.stored_cells[bit].value = value
                self._stored_shown[bit] = value


@functools.cache
def _stored_cell(value: int | None, changed: bool) -> str:
    text = "·" if value is None else str(value)
    border = f"2px solid {CHANGED_OUTLINE}" if changed else "1px solid #ddd"
    title = ' title="KVM changed this bit"' if changed else ""
    return (
        f'<div{title} style="text-align:center;font-family:monospace;font-size:85%;border:{border};'
        f'line-height:16px">{text}</div>'
    )


class RegisterPicker(W.HBox, _View):
    """Pick the entry (leaf.subleaf) and register that a :class:`BitGrid` shows (and follow the grid when
    it is moved by other means).  ``on_pick(leaf, subleaf, register)`` is called after each move."""

    def __init__(self, lab: Lab, grid: BitGrid, on_pick=None):
        if not isinstance(grid, BitGrid):
            raise InputError(f"RegisterPicker needs a BitGrid, got {_inputs.kind(grid)}", where="grid")
        if on_pick is not None and not callable(on_pick):
            raise InputError(f"on_pick must be a function, got {_inputs.kind(on_pick)}", where="on_pick")
        self._subscribe(lab)
        self.grid = grid
        self._on_pick = on_pick
        self._syncing = False
        c = self.content(lab.view)
        self.entry = W.Dropdown(
            description="entry",
            options=_labelled(c["options"]),
            value=c["entry"],
            layout=W.Layout(width="190px"),
        )
        self.entry.style.description_width = "40px"
        self.entry.add_class("cpuidkit-entry")
        self.reg = W.ToggleButtons(options=["eax", "ebx", "ecx", "edx"], value=c["reg"], style={"button_width": "48px"})
        self.reg.add_class("cpuidkit-register")
        self.entry.observe(self._picked, "value")
        self.reg.observe(self._picked, "value")
        grid.on_show(self._follow)
        super().__init__([self.entry, self.reg])

    def content(self, view: LabView) -> dict:
        keys = sorted({(e.function, e.index) for e in view.table} | {(self.grid.leaf, self.grid.subleaf)})
        return {"options": tuple(keys), "entry": (self.grid.leaf, self.grid.subleaf), "reg": self.grid.register}

    def shown(self) -> dict:
        return {"options": tuple(v for _, v in self.entry.options), "entry": self.entry.value, "reg": self.reg.value}

    def _picked(self, _change) -> None:
        if not self._syncing:
            leaf, sub = self.entry.value
            self.grid.show(leaf, sub, self.reg.value)  # the grid calls _follow

    def _follow(self, leaf: int, subleaf: int, register: str) -> None:
        self.refresh()
        if self._on_pick:
            self._on_pick(leaf, subleaf, register)

    def refresh(self) -> None:
        c = self.content(self.lab.view)
        self._syncing = True
        try:
            if tuple(v for _, v in self.entry.options) != c["options"]:
                self.entry.options = _labelled(c["options"])
            if self.entry.value != c["entry"]:
                self.entry.value = c["entry"]
            if self.reg.value != c["reg"]:
                self.reg.value = c["reg"]
        finally:
            self._syncing = False

    def _on_lab(self, what: set) -> None:
        if "table" in what:
            self.refresh()


def _labelled(keys) -> list[tuple[str, tuple[int, int]]]:
    return [(f"{f:#x}.{i}", (f, i)) for f, i in keys]


# -- the field table -------------------------------------------------------------------------------


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
        scope = check_scope(scope)
        max_height = _inputs.title(max_height) or "320px"
        self._subscribe(lab)
        self.entry: tuple[int, int] = scope if isinstance(scope, tuple) else (7, 0)
        first = next(k for k, v in self.SCOPES.items() if v == (None if isinstance(scope, tuple) else scope))
        self.scope_picker = W.Dropdown(
            description="show", layout=W.Layout(width="330px"), options=list(self.SCOPES), value=first
        )
        self.scope_picker.observe(lambda _c: self.refresh(), "value")
        self.html = W.HTML(layout=W.Layout(max_height=max_height, overflow="auto"))
        self.html.add_class("cpuidkit-field-table")
        self.message = W.HTML()
        self._rows: list[dict] = []
        self._key: tuple | None = None
        self._row_html: dict[tuple, str] = {}
        super().__init__([self.scope_picker, self.message, self.html])
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

    def show_entry(self, leaf: int, subleaf: int) -> bool:
        """The entry shown in the "this entry" scope; a bad one is refused in the message line.  True if taken."""
        try:
            self.entry = _inputs.entry(leaf, subleaf)
        except CpuidkitError as e:
            self._say(error_html(str(e)))
            return False
        self._say("")
        if self.SCOPES[self.scope_picker.value] is None:
            self.refresh()
        return True

    def _on_lab(self, what: set) -> None:
        self.refresh()

    def _html(self, accepted: bool, rows: list[dict], keys: tuple) -> str:
        if not accepted:
            return "<i>KVM refused the table: nothing new is stored, so there is no field view (see the verdict).</i>"
        if not rows:
            return "<i>no named fields in this scope</i>"
        cache = self._row_html
        body = []
        for r, k in zip(rows, keys):
            h = cache.get(k)
            if h is None:
                h = cache[k] = _row_html(r)
            body.append(h)
        if len(cache) > 4096:
            self._row_html = {k: cache[k] for k in keys}
        head = "".join(f"<th style='text-align:left;padding:1px 6px'>{c}</th>" for c in self.COLUMNS)
        return (
            f"<table style='border-collapse:collapse;font-size:85%'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
        )

    def content(self, view: LabView) -> dict:
        rows = view.field_rows(self.scope)
        keys = tuple(tuple(r.values()) for r in rows)
        return {"rows": keys, "html": self._html(view.accepted, rows, keys)}

    def shown(self) -> dict:
        return {"rows": tuple(tuple(r.values()) for r in self._rows), "html": self.html.value}

    def refresh(self) -> None:
        view = self.lab.view
        rows = view.field_rows(self.scope)
        key = (view.accepted, tuple(tuple(r.values()) for r in rows))
        if key == self._key:
            return
        self._key, self._rows = key, rows
        text = self._html(view.accepted, rows, key[1])
        if text != self.html.value:
            self.html.value = text


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
