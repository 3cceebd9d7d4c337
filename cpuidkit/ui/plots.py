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
* :func:`call_path` — KVM_SET_CPUID2 step by step (data/call-path.csv), as SVG (also docs/call-path.svg)

A design review's figures (the feature registers, the XSAVE layout against the host) are inline SVG in the
:class:`~cpuidkit.analysis.review.Review` itself, the same as in ``cpuidkit review --format html``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from cpuidkit.analysis import figures
from cpuidkit.analysis.figures import KERNEL_AXIS
from cpuidkit.analysis.fleet import Fleet
from cpuidkit.core.xsave import XsaveComponent
from cpuidkit.errors import InputError
from cpuidkit.ui import _inputs
from cpuidkit.ui._theme import OWNER_COLOURS, XSAVE_LEGACY, XSAVE_SUPERVISOR, XSAVE_USER
from cpuidkit.ui.lab import Lab

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
    "call_path",
    "KERNEL_AXIS",
]

# Every argument is checked before anything is drawn, by the rules of the API and the CLI
# (cpuidkit.ui._inputs); a bad one is an InputError.

_XSAVE_COLOURS = {"legacy": XSAVE_LEGACY, "user": XSAVE_USER, "supervisor": XSAVE_SUPERVISOR}
MAX_REGISTERS = 64  # rows in one register figure


def _lab(lab: object) -> Lab:
    if not isinstance(lab, Lab):
        raise InputError(f"must be a cpuidkit.ui.Lab, got {_inputs.kind(lab)}", where="lab")
    return lab


def register_grid(lab, leaf: int, subleaf: int, register: str, ax=None):
    """One register of a :class:`~cpuidkit.ui.lab.Lab` as 32 cells coloured by owner.

    The digit is what userspace set; a red inner frame marks a bit KVM stores differently.
    """
    return register_grids(lab, [(leaf, subleaf, register)])


def register_grids(lab, registers):
    """Several registers, one row each: ``[(leaf, subleaf, register), …]``."""
    lab = _lab(lab)
    if not isinstance(registers, (list, tuple)) or not 1 <= len(registers) <= MAX_REGISTERS:
        raise InputError(f"must be a list of 1..{MAX_REGISTERS} (leaf, subleaf, register)", where="registers")
    refs = []
    for r in registers:
        if not isinstance(r, (list, tuple)) or len(r) != 3:
            raise InputError(f"each must be (leaf, subleaf, register), got {_inputs.kind(r)}", where="registers")
        refs.append(_inputs.position(*r))
    rows = [(ref.leaf, ref.subleaf, ref.register, lab.bits(ref.leaf, ref.subleaf, ref.register)) for ref in refs]
    return figures.register_grids(rows, owner_colours=OWNER_COLOURS)


def _components(components: object) -> dict[int, XsaveComponent]:
    if (
        not isinstance(components, Mapping)
        or not all(isinstance(b, int) and 0 <= b <= 63 for b in components)
        or not all(isinstance(c, XsaveComponent) for c in components.values())
    ):
        raise InputError("must be HostProfile.xsave_components (a dict: bit → XsaveComponent)", where="components")
    return dict(components)


def xsave_layout(components: dict, xcr0: int, xss: int = 0, aligned: bool = True, title: str | None = None):
    """The XSAVE area for ``xcr0`` (standard format, the host's offsets from CPUID 0xD.i EBX)
    above the compacted format for ``xcr0 | xss`` (components packed in bit order, 64-byte
    aligned where 0xD.i ECX[1] says so).  ``components``: ``HostProfile.xsave_components``.
    ``xcr0``/``xss``: numbers of at most 64 bits, or text as ``cpuidkit xsave --xcr0`` takes it
    (``0x602e7``, ``0-2,5-7``, ``x87,sse,avx``)."""
    comps = _components(components)
    mask0 = _inputs.xsave_mask(xcr0, "xcr0")
    mask1 = _inputs.xsave_mask(xss, "xss")
    return figures.xsave_layout(
        comps, mask0, mask1, _inputs.flag(aligned, "aligned"), _inputs.title(title), colours=_XSAVE_COLOURS
    )


def address_space(guest: int, host: int, title: str | None = None):
    """The 64 bits of a guest-physical address for a guest and a host MAXPHYADDR (each 1..64, as
    ``cpuidkit maxphyaddr`` takes them): usable, reserved, and what the host cannot map."""
    g, h = _inputs.maxphyaddr_pair(guest, host)
    return figures.address_space(g, h, _inputs.title(title))


def paging_rows(maxphyaddr: int, mode: str = "4-level", amd: bool = False) -> list[tuple[str, dict[int, str]]]:
    """Per paging-structure entry: bit → kind (``addr``, ``rsvd``, ``flags``, ``avail``, ``xd``)."""
    bits, m = _inputs.paging(maxphyaddr, mode)
    return figures.paging_rows(bits, m, _inputs.flag(amd, "amd"))


def paging_reserved_bits(maxphyaddr: int, mode: str = "4-level", amd: bool = False, title: str | None = None):
    """Reserved bits (red) of each paging-structure entry for a guest MAXPHYADDR (1..64);
    ``mode``: ``4-level``, ``5-level`` or ``pae``."""
    bits, m = _inputs.paging(maxphyaddr, mode)
    return figures.paging_reserved_bits(bits, m, _inputs.flag(amd, "amd"), _inputs.title(title))


def kernel_timeline(behaviour_ids, title: str = "KVM behaviours by kernel version", mark: str | None = None):
    """One row per behaviour id (data/kvm-behaviours.csv); ``mark`` (a modelled kernel, as ``--kernel``
    takes it) draws a vertical line at one kernel."""
    ids = _inputs.behaviour_ids(behaviour_ids)
    return figures.kernel_timeline(ids, _inputs.title(title) or "", mark=None if mark is None else _inputs.kernel(mark))


def vcpu_timeline(story, fields=("osxsave", "ospke", "apic", "xsave_size_enabled")):
    """Runtime fields over a vCPU's life: ``story`` is ``course.life_story(...)``; ``fields`` catalog names."""
    if (
        not isinstance(story, list)
        or not story
        or not all(
            isinstance(e, dict) and isinstance(e.get("event"), str) and isinstance(e.get("fields"), dict) for e in story
        )
    ):
        raise InputError("must be course.life_story(...): a list of {event, fields, error}", where="story")
    return figures.vcpu_timeline(
        story, tuple(_inputs.field_names(list(fields) if isinstance(fields, tuple) else fields))
    )


def fleet_matrix(f, labels: bool | None = None, title: str | None = None):
    """A fleet's migration matrix (rows sources, columns destinations; green ok, yellow warnings, red blocked)."""
    if not isinstance(f, Fleet):
        raise InputError(f"must be a cpuidkit.analysis.fleet.Fleet, got {_inputs.kind(f)}", where="fleet")
    return _inline(
        figures.plot_matrix(
            f, labels=None if labels is None else _inputs.flag(labels, "labels"), title=_inputs.title(title)
        )
    )


def _inline(fig):
    """Give a closed figure its own PNG representation, so ``display(fig)`` draws it even inside an
    ``Output`` widget with no inline backend registered (it would otherwise show ``<Figure size …>``)."""

    def png() -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()

    fig._repr_png_ = png
    return fig


def call_path(title: str | None = None):
    """KVM_SET_CPUID2 from the VMM's ioctl to the stored table, and the runtime rewrites after it, drawn
    from data/call-path.csv (an IPython ``SVG``; ``.data`` is the SVG text docs/call-path.svg holds)."""
    from IPython.display import SVG  # heavy: imported on use

    rows = figures.call_path_rows()
    t = _inputs.title(title)
    return SVG(data=figures.call_path_svg(rows) if t is None else figures.call_path_svg(rows, t))
