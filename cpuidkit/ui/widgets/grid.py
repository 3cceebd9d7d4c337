"""The register views: the bit grid, the register picker and the named-field table."""

from __future__ import annotations

import html

import ipywidgets as W

from cpuidkit.ui._theme import CHANGED_OUTLINE, OWNER_COLOURS, legend_html, owner_colour
from cpuidkit.ui.lab import Lab
from cpuidkit.ui.widgets._common import _View

# -- the bit grid ----------------------------------------------------------------------------------


def _px(n: int) -> str:
    return f"{n}px"


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
