"""matplotlib figures for the course.  Every function returns a closed ``Figure``
(a notebook shows it once, as the cell's value; ``fig.savefig`` writes it).

* :func:`register_grid` / :func:`register_grids` — CPUID register bits coloured by owner
* :func:`xsave_layout` — the XSAVE area for an XCR0|XSS, standard vs compacted format
* :func:`address_space` — guest vs host MAXPHYADDR over the 64 GPA bits
* :func:`paging_reserved_bits` — reserved bits of each paging-structure entry for a MAXPHYADDR
* :func:`kernel_timeline` — behaviours of data/kvm-behaviours.csv across kernel versions
* :func:`vcpu_timeline` — runtime CPUID fields over a vCPU's life (see ``course.life_story``)
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Patch, Rectangle

from cpuidkit.analysis.addressing import paging_reserved_bits as masks
from cpuidkit.core.kernels import behaviour_rows
from cpuidkit.core.xsave import (
    XFEATURE_NAMES,
    compacted_layout,
    compacted_size,
    standard_layout,
    standard_size,
)
from cpuidkit.ui._theme import OWNER_COLOURS, XSAVE_LEGACY, XSAVE_SUPERVISOR, XSAVE_USER, owner_colour

__all__ = [
    "register_grid",
    "register_grids",
    "xsave_layout",
    "address_space",
    "paging_reserved_bits",
    "kernel_timeline",
    "vcpu_timeline",
    "KERNEL_AXIS",
]

# The x axis of kernel timelines: every mainline release the model covers, in order.
KERNEL_AXIS = [f"5.{m}" for m in range(10, 20)] + [f"6.{m}" for m in range(0, 19)]


def _done(fig):
    fig.tight_layout()
    plt.close(fig)
    return fig


def _owner_legend(ax, owners) -> None:
    handles = [Patch(facecolor=OWNER_COLOURS[o], edgecolor="#666", label=o) for o in OWNER_COLOURS if o in owners]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _draw_register(ax, infos, title: str) -> set:
    """Draw 32 BitInfo cells (bit 31 on the left) with field names under multi-bit spans."""
    owners = set()
    for i in infos:
        x = 31 - i.bit
        ax.add_patch(Rectangle((x, 0), 1, 1, facecolor=owner_colour(i.owner), edgecolor="#666", lw=0.6))
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


def register_grid(lab, leaf: int, subleaf: int, register: str, ax=None):
    """One register of a :class:`~cpuidkit.ui.lab.Lab` as 32 cells coloured by owner.

    The digit is what userspace set; a red inner frame marks a bit KVM stores differently.
    """
    return register_grids(lab, [(leaf, subleaf, register)])


def register_grids(lab, registers):
    """Several registers, one row each: ``[(leaf, subleaf, register), …]``."""
    fig, axes = plt.subplots(len(registers), 1, figsize=(11, 2.3 * len(registers)), squeeze=False)
    owners: set = set()
    for ax, (leaf, sub, reg) in zip(axes[:, 0], registers):
        infos = lab.bits(leaf, sub, reg)
        stored = infos[0].stored
        val = sum(i.requested << i.bit for i in infos)
        title = f"CPUID {leaf:#x}.{sub} {reg.upper()} = {val:#010x}"
        if stored is not None:
            title += f"   (stored {sum(i.stored << i.bit for i in infos):#010x})"
        owners |= _draw_register(ax, infos, title)
    _owner_legend(axes[0, 0], owners)
    return _done(fig)


def xsave_layout(components: dict, xcr0: int, xss: int = 0, aligned: bool = True, title: str | None = None):
    """The XSAVE area for ``xcr0`` (standard format, the host's offsets from CPUID 0xD.i EBX)
    above the compacted format for ``xcr0 | xss`` (components packed in bit order, 64-byte
    aligned where 0xD.i ECX[1] says so).  ``components``: ``HostProfile.xsave_components``."""
    fig, ax = plt.subplots(figsize=(11, 3.0))
    std = standard_size(components, xcr0)
    span = max(std, compacted_size(components, xcr0 | xss, honour_alignment=aligned))
    rows = [("standard (XSAVE, XCR0)", 1.2, xcr0), ("compacted (XSAVES, XCR0|XSS)", 0.0, xcr0 | xss)]
    for label, y, mask in rows:
        ax.add_patch(Rectangle((0, y), 512, 0.8, facecolor=XSAVE_LEGACY, edgecolor="#555"))
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
            colour = XSAVE_SUPERVISOR if components[bit].supervisor else XSAVE_USER
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
            Patch(facecolor=XSAVE_USER, label="user (XCR0)"),
            Patch(facecolor=XSAVE_SUPERVISOR, label="supervisor (IA32_XSS)"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.28),
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    return _done(fig)


def address_space(guest: int, host: int, title: str | None = None):
    """The 64 bits of a guest-physical address: usable, reserved (bits ≥ guest MAXPHYADDR,
    ``kvm_vcpu_reserved_gpa_bits_raw``), and the band that the guest believes it has but the
    host cannot map (guest > host under TDP)."""
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
    for name, mask in masks(maxphyaddr, mode, amd=amd).items():
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
    with the value.  ``mark`` draws a vertical line at one kernel (e.g. the selected one)."""

    ids = list(behaviour_ids)
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(ids) + 1.3))
    palette = ["#90caf9", "#ffcc80", "#a5d6a7", "#ce93d8", "#ef9a9a", "#80cbc4"]
    for r, bid in enumerate(ids):
        y = len(ids) - 1 - r
        values: list[str] = []
        for b in behaviour_rows(bid):
            x0, x1 = max(_x(b.since, 0), 0), min(_x(b.until, len(KERNEL_AXIS)), len(KERNEL_AXIS))
            if x1 <= x0:
                continue
            if b.value not in values:
                values.append(b.value)
            colour = palette[values.index(b.value) % len(palette)]
            ax.add_patch(Rectangle((x0, y), x1 - x0, 0.8, facecolor=colour, edgecolor="#555", lw=0.6))
            text = b.value if len(b.value) <= 4 * (x1 - x0) else b.value[: max(int(4 * (x1 - x0)) - 1, 1)] + "…"
            ax.text((x0 + x1) / 2, y + 0.4, text, ha="center", va="center", fontsize=6.5)
        ax.text(-0.3, y + 0.4, bid, ha="right", va="center", fontsize=8)
    if mark is not None and mark in KERNEL_AXIS:
        x = KERNEL_AXIS.index(mark) + 0.5
        ax.axvline(x, color="#c62828", lw=1.2, ls="--")
    ax.set_xticks([i + 0.5 for i in range(len(KERNEL_AXIS))], KERNEL_AXIS, rotation=90, fontsize=7)
    ax.set_xlim(-9, len(KERNEL_AXIS))
    ax.set_ylim(-0.2, len(ids))
    ax.set_yticks([])
    for s in ("left", "right", "top"):
        ax.spines[s].set_visible(False)
    ax.set_title(title, fontsize=10)
    return _done(fig)


def vcpu_timeline(story, fields=("osxsave", "ospke", "apic", "xsave_size_enabled")):
    """Runtime fields over a vCPU's life: ``story`` is ``course.life_story(...)`` (one dict
    per event with the stored value of each field).  Flags are steps; sizes on their own axis."""
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
