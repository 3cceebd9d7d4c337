"""Every figure of cpuidkit, drawn in one place: the review's inline SVG and the notebooks' matplotlib figures.

Two kinds, one module:

* inline SVG drawn by hand (deterministic text, no matplotlib), for the HTML review and the notebook's view of a
  review (:class:`cpuidkit.analysis.review.Review` shows the same SVG):
  :func:`feature_bits_svg` (the template's feature registers coloured by what KVM does with each bit) and
  :func:`xsave_layout_svg` (the template's XSAVE layout against the host CPU's);
* matplotlib figures (matplotlib is imported inside each function, never with the module): the fleet matrix
  (:func:`plot_matrix`, also in ``cpuidkit fleet --format html``) and the course's figures, which
  :mod:`cpuidkit.ui.plots` wraps with the notebooks' colours: :func:`register_grids`, :func:`xsave_layout`,
  :func:`address_space`, :func:`paging_reserved_bits`, :func:`kernel_timeline`, :func:`vcpu_timeline`.

Every matplotlib function returns a closed ``Figure`` (a notebook shows it once, as the cell's value;
``fig.savefig`` writes it).  The themed figures take their colours as arguments (``owner_colours``,
``colours``): the palette is the surface's (``cpuidkit.ui._theme``), the drawing is here.
"""

from __future__ import annotations

import base64
import html
import io
import os.path
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cpuidkit._files import data_path, read_csv
from cpuidkit.analysis.addressing import paging_reserved_bits as reserved_masks
from cpuidkit.analysis.migrate import _VIRTUALIZABLE_REGS
from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import MODELLED_KERNELS, behaviour_rows
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import (
    XFEATURE_NAMES,
    compacted_layout,
    compacted_size,
    components_of,
    standard_layout,
    standard_size,
)
from cpuidkit.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from cpuidkit.analysis.fleet import Fleet

__all__ = [
    "feature_bits_svg",
    "xsave_layout_svg",
    "call_path_rows",
    "call_path_svg",
    "CALL_PATH_TITLE",
    "plot_matrix",
    "register_grids",
    "xsave_layout",
    "address_space",
    "paging_rows",
    "paging_reserved_bits",
    "kernel_timeline",
    "vcpu_timeline",
    "KERNEL_AXIS",
]

# -- inline SVG for the review (drawn by hand: deterministic, no matplotlib) ---------------------------------

_SVG_COLOURS = {
    "clear": "#ffffff",
    "passthrough": "#a5d6a7",
    "runtime": "#90caf9",
    "vendor": "#ce93d8",
    "beyond": "#ef9a9a",
    "synthesized": "#ffe082",
    "unnamed": "#e0e0e0",
}
_SVG_LEGEND = [
    ("passthrough", "set, passed through"),
    ("runtime", "KVM's at run time"),
    ("vendor", "vendor module"),
    ("beyond", "not virtualized here"),
    ("synthesized", "set from the host kernel's state"),
    ("unnamed", "set, no name"),
]


def feature_bits_svg(t: CpuidTable, out, beyond, synthesized) -> str:
    """The template's feature registers (KVM's ``kvm_set_cpu_caps`` words), bit 31 on the left, every set bit
    coloured by what KVM does with it: ``out`` is :func:`cpuidkit.kvm.check.check`'s outcome (the owners),
    ``beyond`` / ``synthesized`` the feature names not virtualized / set from the host kernel's state."""
    owners = {(o.field.leaf, o.subleaf, o.field.register, o.field.lo): o.owner for o in out.fields if o.field.is_flag}
    regs = [r for r in sorted(_VIRTUALIZABLE_REGS) if t.get(r[0], r[1]) is not None]
    cell, left, top = 20, 132, 28
    width = left + 32 * cell + 10
    height = top + len(regs) * (cell + 6) + 54
    p = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">',
        "<title>The template's feature registers, bit 31 on the left, coloured by what KVM does with each set "
        "bit</title>",
    ]
    for b in (31, 24, 16, 8, 0):
        x = left + (31 - b) * cell + cell / 2
        p.append(f'<text x="{x:g}" y="{top - 8}" text-anchor="middle" fill="#555">{b}</text>')
    cat = catalog()
    bset, sset = set(beyond), set(synthesized)
    for row, (leaf, sub, reg) in enumerate(regs):
        y = top + row * (cell + 6)
        e = t.get(leaf, sub)
        assert e is not None  # regs holds only the registers the template has
        value = e.reg(reg)
        p.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{leaf:#x}.{sub} {reg.upper()}</text>')
        for b in range(32):
            x = left + (31 - b) * cell
            on = value >> b & 1
            f = cat.at(leaf, sub, reg, b)
            name = f.name if f is not None else f"{leaf:#x}.{sub}.{reg}[{b}]"
            if not on:
                kind = "clear"
            elif f is None:
                kind = "unnamed"
            elif name in bset:
                kind = "beyond"
            elif name in sset:
                kind = "synthesized"
            else:
                kind = owners.get((leaf, sub, reg, b), "passthrough")
                kind = "beyond" if kind == "not-virtualized" else kind
            tip = html.escape(f"{leaf:#x}.{sub}.{reg}[{b}] {name} = {on}" + (f" ({kind})" if on else ""))
            p.append(
                f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{_SVG_COLOURS[kind]}" '
                f'stroke="#888" stroke-width="0.5"><title>{tip}</title></rect>'
            )
            if on:
                p.append(f'<text x="{x + cell / 2 - 0.5:g}" y="{y + 13}" text-anchor="middle">1</text>')
    y = top + len(regs) * (cell + 6) + 12
    x = 8
    for kind, label in _SVG_LEGEND:
        p.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{_SVG_COLOURS[kind]}" stroke="#888" stroke-width="0.5"/>'
        )
        p.append(f'<text x="{x + 16}" y="{y + 10}">{html.escape(label)}</text>')
        x += 16 + 6 * len(label) + 14
    p.append("</svg>")
    return "\n".join(p)


def xsave_layout_svg(t: CpuidTable, h: HostProfile, m0: int) -> str:
    """The standard-format XSAVE layout of the template's 0xD subleaves above the host CPU's, for XCR0
    ``m0 | 1``; a red line marks where each area ends."""
    rows = [("template", components_of(t)), ("host CPU", h.xsave_components)]
    mask = m0 | 1
    ends = [standard_size(c, mask) for _, c in rows]
    span = max(ends + [576])
    left, width, bar = 90, 760, 26
    scale = width / span
    height = 30 + len(rows) * (bar + 22) + 20
    p = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{height}" '
        f'viewBox="0 0 {left + width + 20} {height}" font-family="sans-serif" font-size="10">',
        f"<title>Standard-format XSAVE layout for XCR0 {mask:#x}</title>",
    ]
    for n, (label, comps) in enumerate(rows):
        y = 20 + n * (bar + 22)
        p.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{html.escape(label)}</text>')
        p.append(
            f'<rect x="{left}" y="{y}" width="{512 * scale:.1f}" height="{bar}" fill="#cfd8dc" stroke="#555" '
            'stroke-width="0.5"><title>legacy area (x87, SSE): 512 bytes at 0</title></rect>'
        )
        p.append(
            f'<rect x="{left + 512 * scale:.1f}" y="{y}" width="{64 * scale:.1f}" height="{bar}" fill="#eceff1" '
            'stroke="#555" stroke-width="0.5"><title>XSAVE header: 64 bytes at 512</title></rect>'
        )
        for bit in sorted(comps):
            c = comps[bit]
            if c.supervisor or not mask >> bit & 1 or not c.size:
                continue
            x0 = left + c.offset * scale
            name = XFEATURE_NAMES.get(bit, f"x{bit}")
            tip = html.escape(f"{bit} {name}: {c.size} bytes at {c.offset}")
            p.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(c.size * scale, 1):.1f}" height="{bar}" '
                f'fill="#80cbc4" stroke="#333" stroke-width="0.5"><title>{tip}</title></rect>'
            )
            if c.size * scale >= 14:
                p.append(f'<text x="{x0 + c.size * scale / 2:.1f}" y="{y + 16}" text-anchor="middle">{bit}</text>')
        end = standard_size(comps, mask)
        p.append(
            f'<line x1="{left + end * scale:.1f}" y1="{y - 3}" x2="{left + end * scale:.1f}" y2="{y + bar + 3}" '
            'stroke="#c62828" stroke-width="1.5"/>'
        )
        p.append(
            f'<text x="{left + end * scale:.1f}" y="{y + bar + 14}" text-anchor="end" fill="#c62828">{end} bytes</text>'
        )
    p.append("</svg>")
    return "\n".join(p)


# -- the KVM_SET_CPUID2 call path (data/call-path.csv), inline SVG --------------------------------------------

CALL_PATH_TITLE = "KVM_SET_CPUID2, step by step (5.17–6.13 as drawn; read in 6.1.192 and 6.12.118)"
_CALL_PATH_COLUMNS = ("id", "function", "file", "does", "errno", "next", "versions", "lane")
_LANES = ("main", "later")


def call_path_rows(name: str = "call-path.csv") -> list[dict[str, str]]:
    """The steps of data/call-path.csv, checked: unique ids, every ``next`` a known id, lane main or later
    (an ``InputError`` names the file, the row and the field otherwise)."""
    rows = read_csv(name)
    where = str(data_path(name))
    ids: set[str] = set()
    for n, r in enumerate(rows, start=1):
        missing = [c for c in _CALL_PATH_COLUMNS if c not in r]
        if missing:
            raise InputError(f"missing column(s) {', '.join(missing)}", source=where, where=f"data row {n}")
        if not r["id"] or r["id"] in ids:
            raise InputError(f"id {r['id']!r} is empty or repeated", source=where, where=f"data row {n}: id")
        if r["lane"] not in _LANES:
            raise InputError(f"lane must be one of {', '.join(_LANES)}", source=where, where=f"data row {n}: lane")
        ids.add(r["id"])
    for n, r in enumerate(rows, start=1):
        for target, _label in _edges(r):
            if target not in ids:
                raise InputError(f"next names an unknown step {target!r}", source=where, where=f"data row {n}: next")
    return rows


def _edges(row: Mapping[str, str]) -> list[tuple[str, str]]:
    out = []
    for part in filter(None, (x.strip() for x in row["next"].split(";"))):
        target, _, label = part.partition("=")
        out.append((target.strip(), label.strip()))
    return out


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def call_path_svg(rows: Sequence[Mapping[str, str]], title: str = CALL_PATH_TITLE) -> str:
    """The call path as an SVG drawing (deterministic text): one box per step of ``rows``
    (:func:`call_path_rows`), the function in bold, what it does, what it can refuse with (red) and the
    versions (grey); arrows for ``next`` with their conditions.  The main lane runs down the left, a
    branch moves one column right; the ``later`` lane (after the call returned) stands in the next free
    column, level with the step it leads back to."""
    by_id = {r["id"]: r for r in rows}
    pos: dict[str, tuple[int, int]] = {}  # id -> (column, row)
    main = [r["id"] for r in rows if r["lane"] == "main"]
    roots = [i for i in main if not any(i == t for r in rows for t, _ in _edges(r))]
    for root in roots:
        queue = [(root, 0, 0)]
        while queue:
            node, col, level = queue.pop(0)
            if node in pos:
                continue
            pos[node] = (col, level)
            for k, (target, _) in enumerate(_edges(by_id[node])):
                if by_id[target]["lane"] == "main":
                    queue.append((target, col + k, level + 1))
    later = [r["id"] for r in rows if r["lane"] == "later"]
    if later:
        col = max((c for c, _ in pos.values()), default=-1) + 1
        back = [t for i in later for t, _ in _edges(by_id[i]) if t in pos]
        bottom = pos[back[0]][1] if back else len(later) - 1
        for k, node in enumerate(later):
            pos[node] = (col, max(bottom - (len(later) - 1 - k), 0))
    box_w, gap_x, gap_y, line_h, pad = 300, 60, 44, 14, 8
    body = {
        i: (
            _wrap(by_id[i]["does"], 50),
            [f"→ {e.strip()}" for e in by_id[i]["errno"].split(";") if e.strip()],
            _wrap(by_id[i]["versions"], 56),
        )
        for i in pos
    }
    heights = {i: pad * 2 + 16 + line_h * (len(d) + len(e) + len(v)) for i, (d, e, v) in body.items()}
    levels = max(level for _, level in pos.values()) + 1
    row_h = [max([heights[i] for i, (_, lv) in pos.items() if lv == level] or [40]) for level in range(levels)]
    top = [40 + sum(row_h[:level]) + gap_y * level for level in range(levels)]
    cols = max(c for c, _ in pos.values()) + 1
    width, height = 20 + cols * (box_w + gap_x), top[-1] + row_h[-1] + 20

    def xy(i: str) -> tuple[int, int]:
        c, level = pos[i]
        return 20 + c * (box_w + gap_x), top[level]

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{html.escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#455a64"/></marker></defs>',
        f'<text x="20" y="22" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for r in rows:  # arrows first, boxes over them
        if r["id"] not in pos:
            continue
        x0, y0 = xy(r["id"])
        for target, label in _edges(r):
            x1, y1 = xy(target)
            if pos[target][1] > pos[r["id"]][1]:  # downwards: bottom centre to top centre
                a, b = (x0 + box_w // 2, y0 + heights[r["id"]]), (x1 + box_w // 2, y1)
            elif x1 < x0:  # back to the left: left side to right side
                a, b = (x0, y0 + heights[r["id"]] // 2), (x1 + box_w, y1 + heights[target] // 2)
            else:
                a, b = (x0 + box_w, y0 + heights[r["id"]] // 2), (x1, y1 + heights[target] // 2)
            out.append(
                f'<line x1="{a[0]}" y1="{a[1]}" x2="{b[0]}" y2="{b[1]}" stroke="#455a64" stroke-width="1.3" '
                'marker-end="url(#arrow)"/>'
            )
            if label:
                mx, my = (a[0] + b[0]) // 2, (a[1] + b[1]) // 2
                out.append(
                    f'<text x="{mx + 6}" y="{my - 4}" font-style="italic" fill="#37474f">{html.escape(label)}</text>'
                )
    for r in rows:
        if r["id"] not in pos:
            continue
        i = r["id"]
        x, y = xy(i)
        does, errs, versions = body[i]
        fill = "#fff8e1" if r["lane"] == "later" else ("#e3f2fd" if i != "stored" else "#e8f5e9")
        tip = html.escape(f"{r['function']} · {r['file']}")
        out.append(
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{heights[i]}" rx="6" fill="{fill}" stroke="#546e7a">'
            f"<title>{tip}</title></rect>"
        )
        ty = y + pad + 11
        out.append(
            f'<text x="{x + pad}" y="{ty}" font-family="monospace" font-weight="bold">{html.escape(r["function"])}</text>'
        )
        for text, colour in (
            [(t, "#263238") for t in does] + [(t, "#c62828") for t in errs] + [(t, "#78909c") for t in versions]
        ):
            ty += line_h
            out.append(f'<text x="{x + pad}" y="{ty}" fill="{colour}">{html.escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out)


# -- matplotlib (imported inside each function) ---------------------------------------------------------------


def _done(fig):
    import matplotlib.pyplot as plt  # heavy: imported on use

    fig.tight_layout()
    plt.close(fig)
    return fig


def _owner_legend(ax, owners, owner_colours: Mapping[str, str]) -> None:
    from matplotlib.patches import Patch  # heavy: imported on use

    handles = [Patch(facecolor=owner_colours[o], edgecolor="#666", label=o) for o in owner_colours if o in owners]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _draw_register(ax, infos, title: str, owner_colours: Mapping[str, str]) -> set:
    """Draw 32 BitInfo cells (bit 31 on the left) with field names under multi-bit spans."""
    from matplotlib.patches import Rectangle  # heavy: imported on use

    owners = set()
    for i in infos:
        x = 31 - i.bit
        colour = owner_colours.get(i.owner, owner_colours["unnamed"])
        ax.add_patch(Rectangle((x, 0), 1, 1, facecolor=colour, edgecolor="#666", lw=0.6))
        ax.text(
            x + 0.5,
            0.5,
            str(i.requested),
            ha="center",
            va="center",
            fontsize=8,
            fontweight="bold" if i.requested else "normal",
        )
        if i.stored is not None and i.stored != i.requested:
            ax.add_patch(Rectangle((x + 0.06, 0.06), 0.88, 0.88, fill=False, edgecolor="#c62828", lw=1.6))
        owners.add(i.owner)
    seen = set()
    for i in infos:
        f = i.field
        if f is None or f.name in seen:
            continue
        seen.add(f.name)
        x0, x1 = 31 - f.hi, 31 - f.lo + 1
        ax.text((x0 + x1) / 2, -0.15, f.name, rotation=90 if f.is_flag else 0, ha="center", va="top", fontsize=6.5)
        if not f.is_flag:
            ax.plot([x0 + 0.1, x1 - 0.1], [-0.08, -0.08], color="#444", lw=0.8)
    ax.set_xlim(0, 32)
    ax.set_ylim(-2.6, 1.3)
    ax.set_xticks([31 - b + 0.5 for b in (31, 24, 16, 8, 0)], ["31", "24", "16", "8", "0"], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title, fontsize=9, loc="left")
    return owners


def register_grids(registers: Sequence[tuple], *, owner_colours: Mapping[str, str]):
    """Registers as rows of 32 cells coloured by owner: ``[(leaf, subleaf, register, bits), …]`` where ``bits``
    are the register's 32 ``BitInfo`` (``cpuidkit.ui.lab.Lab.bits``).  The digit is what userspace set; a red
    inner frame marks a bit KVM stores differently.  ``owner_colours``: owner class → colour (with ``unnamed``)."""
    import matplotlib.pyplot as plt  # heavy: imported on use

    fig, axes = plt.subplots(len(registers), 1, figsize=(11, 2.3 * len(registers)), squeeze=False)
    owners: set = set()
    for ax, (leaf, sub, reg, infos) in zip(axes[:, 0], registers):
        stored = infos[0].stored
        val = sum(i.requested << i.bit for i in infos)
        title = f"CPUID {leaf:#x}.{sub} {reg.upper()} = {val:#010x}"
        if stored is not None:
            title += f"   (stored {sum(i.stored << i.bit for i in infos):#010x})"
        owners |= _draw_register(ax, infos, title, owner_colours)
    _owner_legend(axes[0, 0], owners, owner_colours)
    return _done(fig)


def xsave_layout(
    components: dict,
    xcr0: int,
    xss: int = 0,
    aligned: bool = True,
    title: str | None = None,
    *,
    colours: Mapping[str, str],
):
    """The XSAVE area for ``xcr0`` (standard format, the host's offsets from CPUID 0xD.i EBX)
    above the compacted format for ``xcr0 | xss`` (components packed in bit order, 64-byte
    aligned where 0xD.i ECX[1] says so).  ``components``: ``HostProfile.xsave_components``;
    ``colours``: ``legacy``, ``user`` (XCR0) and ``supervisor`` (IA32_XSS) components."""
    import matplotlib.pyplot as plt  # heavy: imported on use
    from matplotlib.patches import Patch, Rectangle  # heavy: imported on use

    fig, ax = plt.subplots(figsize=(11, 3.0))
    std = standard_size(components, xcr0)
    span = max(std, compacted_size(components, xcr0 | xss, honour_alignment=aligned))
    rows = [("standard (XSAVE, XCR0)", 1.2, xcr0), ("compacted (XSAVES, XCR0|XSS)", 0.0, xcr0 | xss)]
    for label, y, mask in rows:
        ax.add_patch(Rectangle((0, y), 512, 0.8, facecolor=colours["legacy"], edgecolor="#555"))
        ax.text(256, y + 0.4, "legacy\n512", ha="center", va="center", fontsize=7)
        ax.add_patch(Rectangle((512, y), 64, 0.8, facecolor="#dddddd", edgecolor="#555"))
        ax.text(544, y + 0.4, "hdr", ha="center", va="center", fontsize=6)
        ax.text(-30, y + 0.4, label, ha="right", va="center", fontsize=8)
        if y > 0:
            placed = [
                (d["bit"], d["offset"], d["size"])
                for d in standard_layout(components, mask & ~0b11)
                if d["offset"] is not None and d["size"] and not components[d["bit"]].supervisor
            ]
        else:
            placed = [
                (d["bit"], d["offset"], d["size"])
                for d in compacted_layout(components, mask, honour_alignment=aligned)
                if d["offset"] is not None
            ]
        for bit, start, size in placed:
            colour = colours["supervisor"] if components[bit].supervisor else colours["user"]
            ax.add_patch(Rectangle((start, y), size, 0.8, facecolor=colour, edgecolor="#333", lw=0.7))
            name = XFEATURE_NAMES.get(bit, f"x{bit}")
            if size >= 0.015 * span:
                ax.text(
                    start + size / 2,
                    y + 0.4,
                    f"{bit}\n{name}" if size >= 0.12 * span else str(bit),
                    ha="center",
                    va="center",
                    fontsize=6.5,
                )
    cmp_ = compacted_size(components, xcr0 | xss, honour_alignment=aligned)
    ax.axvline(std, ymin=0.5, color="#1565c0", ls="--", lw=1)
    ax.text(std, 2.1, f"0xD.0 EBX = {std}", color="#1565c0", fontsize=8, ha="center")
    ax.axvline(cmp_, ymax=0.45, color="#e65100", ls="--", lw=1)
    ax.text(cmp_, -0.35, f"0xD.1 EBX = {cmp_}", color="#e65100", fontsize=8, ha="center")
    ax.set_xlim(-10, max(std, cmp_) * 1.05 + 50)
    ax.set_ylim(-0.6, 2.4)
    ax.set_yticks([])
    ax.set_xlabel("byte offset in the XSAVE area")
    ax.set_title(title or f"XSAVE layout for XCR0 {xcr0:#x}" + (f", XSS {xss:#x}" if xss else ""), fontsize=10)
    ax.legend(
        handles=[
            Patch(facecolor=colours["user"], label="user (XCR0)"),
            Patch(facecolor=colours["supervisor"], label="supervisor (IA32_XSS)"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.28),
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    return _done(fig)


# The x axis of kernel timelines: every mainline release the model covers, in order.
KERNEL_AXIS = list(MODELLED_KERNELS)
TIMELINE_CHARS_PER_KERNEL = 4  # characters of a 6.5-point label one kernel's column holds (11-inch figure)


def address_space(guest: int, host: int, title: str | None = None):
    """The 64 bits of a guest-physical address: usable, reserved (bits ≥ guest MAXPHYADDR,
    ``kvm_vcpu_reserved_gpa_bits_raw``), and the band that the guest believes it has but the
    host cannot map (guest > host under TDP)."""
    import matplotlib.pyplot as plt  # heavy: imported on use
    from matplotlib.patches import Patch, Rectangle  # heavy: imported on use

    fig, ax = plt.subplots(figsize=(11, 1.9))
    for bit in range(64):
        x = 63 - bit
        if bit < min(guest, host):
            colour, hatch = "#a5d6a7", None
        elif bit < guest:
            colour, hatch = "#ef9a9a", "//"  # guest thinks it has it, host cannot map it
        elif bit < host and bit < 52:
            colour, hatch = "#fff59d", None  # reserved for the guest though the host has it
        else:
            colour, hatch = "#e0e0e0", None
        ax.add_patch(Rectangle((x, 0), 1, 1, facecolor=colour, edgecolor="#777", lw=0.4, hatch=hatch))
    for b in (0, 12, 32, 39, 46, 48, 52, 57, 63):
        ax.text(63 - b + 0.5, 1.15, str(b), ha="center", fontsize=6.5)
    ax.set_xlim(0, 64)
    ax.set_ylim(-0.1, 1.5)
    ax.axis("off")
    handles = [
        Patch(facecolor="#a5d6a7", label="usable GPA bits"),
        Patch(facecolor="#ef9a9a", hatch="//", label="guest > host: memslots refused, #PF(RSVD) under TDP"),
        Patch(facecolor="#fff59d", label="reserved for the guest, host has them (needs allow_smaller_maxphyaddr)"),
        Patch(facecolor="#e0e0e0", label="reserved for both"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=7, frameon=False)
    ax.set_title(title or f"guest MAXPHYADDR {guest} on a host with {host}", fontsize=10)
    return _done(fig)


def paging_rows(maxphyaddr: int, mode: str = "4-level", amd: bool = False) -> list[tuple[str, dict[int, str]]]:
    """Per paging-structure entry: bit → kind (``addr``, ``rsvd``, ``flags``, ``avail``, ``xd``).

    The reserved masks are :func:`cpuidkit.analysis.addressing.paging_reserved_bits`
    (KVM's ``__reset_rsvds_bits_mask``); the rest is the entry's architectural layout.
    """

    top = min(max(maxphyaddr, 12), 62 if mode == "pae" else 52)
    rows = []
    for name, mask in reserved_masks(maxphyaddr, mode, amd=amd).items():
        kinds = {}
        for b in range(64):
            if mask >> b & 1:
                kinds[b] = "rsvd"
            elif b < 12:
                kinds[b] = "flags"
            elif b < top:
                kinds[b] = "addr"
            elif b == 63:
                kinds[b] = "xd"
            else:
                kinds[b] = "avail"
        rows.append((name, kinds))
    return rows


_KIND_COLOURS = {"addr": "#90caf9", "rsvd": "#e57373", "flags": "#eeeeee", "avail": "#dcedc8", "xd": "#ffe0b2"}


def paging_reserved_bits(maxphyaddr: int, mode: str = "4-level", amd: bool = False, title: str | None = None):
    """Reserved bits (red) of each paging-structure entry for a guest MAXPHYADDR; a guest that
    sets one gets #PF with the RSVD error bit (when KVM, or the CPU, checks with this width).
    ``mode``: ``4-level``, ``5-level`` or ``pae``."""
    import matplotlib.pyplot as plt  # heavy: imported on use
    from matplotlib.patches import Patch, Rectangle  # heavy: imported on use

    rows = paging_rows(maxphyaddr, mode, amd)
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(rows) + 1.2))
    for r, (name, kinds) in enumerate(rows):
        y = len(rows) - 1 - r
        for bit, kind in kinds.items():
            ax.add_patch(Rectangle((63 - bit, y), 1, 0.8, facecolor=_KIND_COLOURS[kind], edgecolor="#888", lw=0.3))
        ax.text(-0.8, y + 0.4, name, ha="right", va="center", fontsize=7)
    for b in (0, 12, 21, 30, maxphyaddr, 52, 63):
        if 0 <= b <= 63:
            ax.text(63 - b + 0.5, len(rows) + 0.05, str(b), ha="center", fontsize=6.5)
    ax.set_xlim(-22, 64)
    ax.set_ylim(-0.3, len(rows) + 0.5)
    ax.axis("off")
    labels = {
        "addr": "address bits",
        "rsvd": "reserved → #PF(RSVD)",
        "flags": "flags",
        "avail": "ignored / PKE",
        "xd": "XD",
    }
    ax.legend(
        handles=[Patch(facecolor=c, label=labels[k]) for k, c in _KIND_COLOURS.items()],
        loc="upper center",
        bbox_to_anchor=(0.55, 0.0),
        ncol=5,
        fontsize=7,
        frameon=False,
    )
    ax.set_title(title or f"{mode} paging: reserved bits for guest MAXPHYADDR {maxphyaddr}", fontsize=10)
    return _done(fig)


def _x(version: tuple[int, int] | None, default: int) -> float:
    if version is None:
        return default
    name = f"{version[0]}.{version[1]}"
    if name in KERNEL_AXIS:
        return KERNEL_AXIS.index(name)
    return 0 if version < (5, 10) else len(KERNEL_AXIS)


def kernel_timeline(behaviour_ids, title: str = "KVM behaviours by kernel version", mark: str | None = None):
    """One row per behaviour id (data/kvm-behaviours.csv): a bar per version range, labelled
    with the value.  ``mark`` draws a vertical line at one kernel (e.g. the selected one).

    A value too long for its bar is never cut: the bar carries a number and the line under the row
    says what it stands for (``1: reject (5.16 only)``)."""
    import matplotlib.pyplot as plt  # heavy: imported on use
    from matplotlib.patches import Rectangle  # heavy: imported on use

    ids = list(behaviour_ids)
    fig, ax = plt.subplots(figsize=(11, 0.75 * len(ids) + 1.3))
    palette = ["#90caf9", "#ffcc80", "#a5d6a7", "#ce93d8", "#ef9a9a", "#80cbc4"]
    for r, bid in enumerate(ids):
        y = len(ids) - 1 - r
        values: list[str] = []
        notes: dict[str, list[str]] = {}  # value too long for a bar → its ranges (numbered in order)
        for b in behaviour_rows(bid):
            x0, x1 = max(_x(b.since, 0), 0), min(_x(b.until, len(KERNEL_AXIS)), len(KERNEL_AXIS))
            if x1 <= x0:
                continue
            if b.value not in values:
                values.append(b.value)
            colour = palette[values.index(b.value) % len(palette)]
            ax.add_patch(Rectangle((x0, y + 0.35), x1 - x0, 0.6, facecolor=colour, edgecolor="#555", lw=0.6))
            if len(b.value) <= TIMELINE_CHARS_PER_KERNEL * (x1 - x0):
                text = b.value
            else:  # too long for the bar: a number here, the value in full on the line under the row
                notes.setdefault(b.value, []).append(b.range_text)
                text = str(list(notes).index(b.value) + 1)
            ax.text(
                (x0 + x1) / 2,
                y + 0.65,
                text,
                ha="center",
                va="center",
                fontsize=6.5,
                zorder=3,
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 0.8},
            )  # above the kernel mark
        if notes:
            key = "   ".join(f"{n}: {v} ({'; '.join(ranges)})" for n, (v, ranges) in enumerate(notes.items(), 1))
            ax.text(0, y + 0.28, key, ha="left", va="top", fontsize=6.5, color="#333")
        ax.text(-0.3, y + 0.65, bid, ha="right", va="center", fontsize=8)
    if mark is not None and mark in KERNEL_AXIS:
        x = KERNEL_AXIS.index(mark) + 0.5
        ax.axvline(x, color="#c62828", lw=1.2, ls="--")
    ax.set_xticks([i + 0.5 for i in range(len(KERNEL_AXIS))], KERNEL_AXIS, rotation=90, fontsize=7)
    ax.set_xlim(-9, len(KERNEL_AXIS))
    ax.set_ylim(-0.05, len(ids))
    ax.set_yticks([])
    for s in ("left", "right", "top"):
        ax.spines[s].set_visible(False)
    ax.spines["bottom"].set_bounds(0, len(KERNEL_AXIS))  # the axis spans the kernels, not the labels' margin
    ax.set_title(title, fontsize=10)
    return _done(fig)


def vcpu_timeline(story, fields=("osxsave", "ospke", "apic", "xsave_size_enabled")):
    """Runtime fields over a vCPU's life: ``story`` is ``course.life_story(...)`` (one dict
    per event with the stored value of each field).  Flags are steps; sizes on their own axis."""
    import matplotlib.pyplot as plt  # heavy: imported on use

    flags = [f for f in fields if not f.endswith("size_enabled")]
    sizes = [f for f in fields if f.endswith("size_enabled")]
    fig, axes = plt.subplots(2 if sizes else 1, 1, figsize=(11, 4.2 if sizes else 2.6), sharex=True, squeeze=False)
    xs = list(range(len(story)))
    ax = axes[0, 0]
    for k, f in enumerate(flags):
        ys = [(e["fields"].get(f) or 0) * 0.8 + 1.2 * k for e in story]
        ax.step(xs, ys, where="post", lw=2, label=f)
        ax.text(-0.6, 1.2 * k + 0.4, f, ha="right", va="center", fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.3, 1.2 * len(flags))
    if sizes:
        ax2 = axes[1, 0]
        for f in sizes:
            ax2.step(xs, [e["fields"].get(f) or 0 for e in story], where="post", lw=2, label=f)
        ax2.set_ylabel("bytes", fontsize=8)
        ax2.legend(fontsize=7, frameon=False, loc="upper left")
    bottom = axes[-1, 0]
    bottom.set_xticks(xs, [e["event"] for e in story], rotation=30, ha="right", fontsize=7)
    for i, e in enumerate(story):
        if e.get("error"):
            ax.axvline(i, color="#c62828", lw=0.8, ls=":")
    ax.set_title("a vCPU's life: what KVM_GET_CPUID2 shows after each event", fontsize=10)
    return _done(fig)


# -- the fleet matrix ---------------------------------------------------------------------------------------------


def plot_matrix(f: Fleet, *, labels: bool | None = None, title: str | None = None):
    """A fleet's migration matrix (:func:`cpuidkit.analysis.fleet.fleet`) as a matplotlib figure: rows are
    sources, columns destinations; green ok, yellow warnings only, red blocked.  Names label the axes up to
    60 hosts (``labels`` decides otherwise)."""
    from matplotlib.colors import ListedColormap  # heavy: imported on use
    from matplotlib.figure import Figure  # heavy: imported on use
    from matplotlib.patches import Patch  # heavy: imported on use

    n = len(f)
    v = f.verdicts().astype(float)
    show = labels if labels is not None else n <= 60
    side = 4.5 + (0.16 * n if show else 0)
    side = min(max(side, 5.0), 14.0)
    fig = Figure(figsize=(side + 2.2, side))
    ax = fig.add_subplot(1, 1, 1)
    cmap = ListedColormap(["#66bb6a", "#ffd54f", "#e53935"])
    ax.imshow(v, cmap=cmap, vmin=0, vmax=2, interpolation="nearest", aspect="equal")
    if show:
        names = short_names(f.names)
        ax.set_xticks(range(n), names, rotation=90, fontsize=6.5)
        ax.set_yticks(range(n), names, fontsize=6.5)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("destination host")
    ax.set_ylabel("source host (guest = its own CPUID)")
    s = f.summary()
    ax.set_title(
        title
        or f"{n} hosts, kernel {f.kernel}: {s['blocked']} of {s['pairs']} moves blocked, "
        f"{s['ok_with_warnings']} with warnings",
        fontsize=9,
    )
    ax.legend(
        handles=[
            Patch(facecolor="#66bb6a", label="ok"),
            Patch(facecolor="#ffd54f", label="warnings only"),
            Patch(facecolor="#e53935", label="blocked"),
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
    )
    counts = f.rule_counts()
    text = "\n".join(f"{r}: {c['blocker']}" for r, c in counts.items() if c["blocker"])
    if text:
        ax.text(1.02, 0.70, "blocked pairs by rule\n" + text, transform=ax.transAxes, fontsize=7, va="top")
    fig.tight_layout()
    return fig


def short_names(names: list[str]) -> list[str]:
    """Names without the prefix they all share up to a '-' or '_' (``x86_64-cpuid-``), for axis labels."""

    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    cut = max(prefix.rfind("-"), prefix.rfind("_")) + 1
    return [n[cut:] or n for n in names]


def plot_template_fleet(tf, *, title: str | None = None):
    """A template across a fleet (:func:`cpuidkit.analysis.templates.template_fleet`) as a matplotlib figure:
    one row per host, one column per feature that differs between hosts or that the template forces to 1;
    blue the guest gets it, white it does not, red forced to 1 but not backed by the host.  A host the template
    cannot run on has its name marked."""
    from matplotlib.colors import ListedColormap  # heavy: imported on use
    from matplotlib.figure import Figure  # heavy: imported on use
    from matplotlib.patches import Patch  # heavy: imported on use

    cols = tf.columns()
    rows = tf.matrix()
    code = {".": 0.0, "1": 1.0, "!": 2.0}
    data = [[code[c] for c in row] for row in rows] or [[0.0]]
    width = min(max(4.0, 0.16 * len(cols) + 3.0), 16.0)
    height = min(max(2.5, 0.32 * len(rows) + 1.8), 12.0)
    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(
        data,
        cmap=ListedColormap(["#ffffff", "#5c8ae6", "#e53935"]),
        vmin=0,
        vmax=2,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
    ax.set_yticks(range(len(tf.runs)), [("" if r.runs else "✗ ") + r.host for r in tf.runs], fontsize=7)
    ax.set_xticks([x - 0.5 for x in range(1, len(cols))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(tf.runs))], minor=True)
    ax.grid(which="minor", color="#dddddd", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ok = sum(r.runs for r in tf.runs)
    ax.set_title(
        title or f"{tf.template.name}: runs on {ok} of {len(tf.runs)} hosts (kernel {tf.kernel}); ✗ cannot run",
        fontsize=9,
    )
    ax.legend(
        handles=[
            Patch(facecolor="#5c8ae6", label="guest gets it"),
            Patch(facecolor="#ffffff", edgecolor="#999999", label="guest does not"),
            Patch(facecolor="#e53935", label="forced 1, not backed by the host"),
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
    )
    fig.tight_layout()
    return fig


def png_base64(fig, *, dpi: int = 110, tight: bool = False) -> str:
    """A matplotlib figure as base64 PNG text (for ``<img src="data:image/png;base64,…">``), with no software
    tag, so the same figure gives the same bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, bbox_inches="tight" if tight else None)
    return base64.b64encode(buf.getvalue()).decode("ascii")
