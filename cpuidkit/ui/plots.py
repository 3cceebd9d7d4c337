"""The course's figures, in the notebooks' colours.  The drawing is :mod:`cpuidkit.analysis.figures` (one
place for every figure, matplotlib imported when a figure is made); this module hands it what a notebook
holds (a :class:`~cpuidkit.ui.lab.Lab`) and the palette of :mod:`cpuidkit.ui._theme`.  Every function
returns a closed ``Figure`` (a notebook shows it once, as the cell's value; ``fig.savefig`` writes it).

* :func:`register_grid` / :func:`register_grids` — CPUID register bits coloured by owner
* :func:`xsave_layout` — the XSAVE area for an XCR0|XSS, standard vs compacted format
* :func:`address_space` — guest vs host MAXPHYADDR over the 64 GPA bits
* :func:`paging_reserved_bits` — reserved bits of each paging-structure entry for a MAXPHYADDR
* :func:`kernel_timeline` — behaviours of data/kvm-behaviours.csv across kernel versions
* :func:`vcpu_timeline` — runtime CPUID fields over a vCPU's life (see ``course.life_story``)
* :func:`fleet_matrix` — a pool's migration matrix (``cpuidkit.analysis.fleet``)

A design review's figures (the feature registers, the XSAVE layout against the host) are inline SVG in the
:class:`~cpuidkit.analysis.review.Review` itself, the same as in ``cpuidkit review --format html``.
"""

from __future__ import annotations

from cpuidkit.analysis import figures
from cpuidkit.analysis.figures import (
    KERNEL_AXIS,
    address_space,
    kernel_timeline,
    paging_reserved_bits,
    paging_rows,
    vcpu_timeline,
)
from cpuidkit.ui._theme import OWNER_COLOURS, XSAVE_LEGACY, XSAVE_SUPERVISOR, XSAVE_USER

__all__ = [
    "register_grid",
    "register_grids",
    "xsave_layout",
    "address_space",
    "paging_rows",
    "paging_reserved_bits",
    "kernel_timeline",
    "vcpu_timeline",
    "fleet_matrix",
    "KERNEL_AXIS",
]

_XSAVE_COLOURS = {"legacy": XSAVE_LEGACY, "user": XSAVE_USER, "supervisor": XSAVE_SUPERVISOR}


def register_grid(lab, leaf: int, subleaf: int, register: str, ax=None):
    """One register of a :class:`~cpuidkit.ui.lab.Lab` as 32 cells coloured by owner.

    The digit is what userspace set; a red inner frame marks a bit KVM stores differently.
    """
    return register_grids(lab, [(leaf, subleaf, register)])


def register_grids(lab, registers):
    """Several registers, one row each: ``[(leaf, subleaf, register), …]``."""
    rows = [(leaf, sub, reg, lab.bits(leaf, sub, reg)) for leaf, sub, reg in registers]
    return figures.register_grids(rows, owner_colours=OWNER_COLOURS)


def xsave_layout(components: dict, xcr0: int, xss: int = 0, aligned: bool = True, title: str | None = None):
    """The XSAVE area for ``xcr0`` (standard format, the host's offsets from CPUID 0xD.i EBX)
    above the compacted format for ``xcr0 | xss`` (components packed in bit order, 64-byte
    aligned where 0xD.i ECX[1] says so).  ``components``: ``HostProfile.xsave_components``."""
    return figures.xsave_layout(components, xcr0, xss, aligned, title, colours=_XSAVE_COLOURS)


def fleet_matrix(f, **kw):
    """A fleet's migration matrix (rows sources, columns destinations; green ok, yellow warnings, red blocked)."""
    return figures.plot_matrix(f, **kw)
