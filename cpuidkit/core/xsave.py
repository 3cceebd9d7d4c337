"""XSAVE arithmetic: state components, area sizes and layouts, XCR0/XSS masks.

Sizes
    KVM computes the guest's 0xD.0 EBX (standard form, for XCR0) and 0xD.1 EBX
    (compacted form, for XCR0, or XCR0|XSS from 6.18) from the **host's** 0xD
    subleaves, cached at module load (``kvm_init_xstate_sizes`` /
    ``xstate_required_size`` in arch/x86/kvm/cpuid.c), never from the guest's.
    :func:`standard_size` and :func:`compacted_size` do the same arithmetic for
    any CPU's table; :func:`component_table` is ``data/xsave-components.csv``
    (what each bit is, its architectural size, Intel's offset, its group).

The vCPU half (the XCR0 rules a guest meets, AMX permission, SGX XFRM) is
:mod:`cpuidkit.kvm.xcr`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cpuidkit._files import read_csv
from cpuidkit.core.bits import U64, set_bits
from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import InputError

__all__ = [
    "XsaveComponent",
    "components_of",
    "standard_size",
    "compacted_size",
    "XFEATURE_NAMES",
    "ComponentInfo",
    "component_table",
    "groups",
    "mask_names",
    "parse_bits",
    "parse_value",
    "supported_xcr0",
    "supported_xss",
    "AreaSizes",
    "area_sizes",
    "standard_layout",
    "compacted_layout",
]

LEGACY_AND_HEADER = 512 + 64  # FXSAVE area + XSAVE header: the size with only x87/SSE

XFEATURE_NAMES = {
    0: "x87",
    1: "sse",
    2: "avx",
    3: "mpx_bndregs",
    4: "mpx_bndcsr",
    5: "avx512_opmask",
    6: "avx512_zmm_hi256",
    7: "avx512_hi16_zmm",
    8: "pt",
    9: "pkru",
    10: "pasid",
    11: "cet_u",
    12: "cet_s",
    13: "hdc",
    14: "uintr",
    15: "lbr",
    16: "hwp",
    17: "amx_tilecfg",
    18: "amx_tiledata",
    19: "apx",
}

# XFEATURE_MASK_* (arch/x86/include/asm/fpu/types.h)
XFEATURE_MASK_FP, XFEATURE_MASK_SSE, XFEATURE_MASK_YMM = 1 << 0, 1 << 1, 1 << 2
XFEATURE_MASK_FPSSE = XFEATURE_MASK_FP | XFEATURE_MASK_SSE
XFEATURE_MASK_XTILE_CFG, XFEATURE_MASK_XTILE_DATA = 1 << 17, 1 << 18
XFEATURE_MASK_XTILE = XFEATURE_MASK_XTILE_CFG | XFEATURE_MASK_XTILE_DATA
KVM_MAX_XCRS = 16  # arch/x86/include/uapi/asm/kvm.h
XCR_XFEATURE_ENABLED_MASK = 0  # XCR0


@dataclass(frozen=True, slots=True)
class XsaveComponent:
    """One state component as a CPU enumerates it in CPUID.(EAX=0xD, ECX=bit)."""

    bit: int
    size: int  # EAX
    offset: int  # EBX: standard-format offset (0 for supervisor components)
    supervisor: bool  # ECX[0]
    aligned64: bool  # ECX[1]: 64-byte aligned in compacted form
    xfd: bool  # ECX[2]

    @property
    def name(self) -> str:
        return XFEATURE_NAMES.get(self.bit, f"xfeature{self.bit}")


def components_of(table: CpuidTable) -> dict[int, XsaveComponent]:
    """The components a table enumerates in 0xD subleaves 2..63 (entries that are really there)."""
    out: dict[int, XsaveComponent] = {}
    for e in table:
        if e.function == 0xD and 2 <= e.index <= 63 and (e.eax or e.ebx or e.ecx):
            out.setdefault(
                e.index, XsaveComponent(e.index, e.eax, e.ebx, bool(e.ecx & 1), bool(e.ecx & 2), bool(e.ecx & 4))
            )
    return out


def standard_size(components: dict[int, XsaveComponent], mask: int) -> int:
    """Size of the standard-format XSAVE area for ``mask`` (KVM's ``xstate_required_size(mask, false)``).

    576, raised to the highest offset+size over the enabled components ≥ 2.
    A component the CPU does not enumerate contributes nothing (as in KVM,
    whose cached size table is zero for it).
    """
    size = LEGACY_AND_HEADER
    for bit in set_bits(mask & ~0b11):
        c = components.get(bit)
        if c is not None:
            size = max(size, c.offset + c.size)
    return size


def compacted_size(components: dict[int, XsaveComponent], mask: int, *, honour_alignment: bool = True) -> int:
    """Size of the compacted-format area for ``mask`` (KVM's ``xstate_required_size(mask, true)``).

    Components follow each other in bit order after the 576-byte start; one with
    ECX[1] set starts on a 64-byte boundary.  KVM honours that flag since 5.17
    (``honour_alignment=False`` gives the older arithmetic).
    """
    size = LEGACY_AND_HEADER
    for bit in set_bits(mask & ~0b11):
        c = components.get(bit)
        if c is None:
            continue
        offset = (size + 63) & ~63 if (honour_alignment and c.aligned64) else size
        size = max(size, offset + c.size)
    return size


# -- the component table (data/xsave-components.csv) ---------------------------------


@dataclass(frozen=True, slots=True)
class ComponentInfo:
    """One row of ``data/xsave-components.csv`` (see the column notes in that file)."""

    bit: int
    name: str
    kind: str  # "user" (XCR0) or "supervisor" (IA32_XSS)
    size: int | None  # None: x87/SSE, which live in the 512-byte legacy region
    size_status: str  # verified / legacy / variable / unverified
    std_offset: int | None  # Intel's standard-format offset; None for supervisor components or unknown
    align64: bool | None
    xfd: bool
    group: str  # name of the all-or-none group, "" if none
    requires: int  # mask of bits that must be set together with this one
    kvm: str
    source: str
    notes: str

    @property
    def mask(self) -> int:
        return 1 << self.bit

    @property
    def supervisor(self) -> bool:
        return self.kind == "supervisor"

    def as_dict(self) -> dict:
        return {
            "bit": self.bit,
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "size_status": self.size_status,
            "std_offset": self.std_offset,
            "align64": self.align64,
            "xfd": self.xfd,
            "group": self.group or None,
            "requires": mask_names(self.requires),
            "kvm": self.kvm,
            "source": self.source,
            "notes": self.notes,
        }


def _yes_no(text: str, where: str) -> bool | None:
    t = text.strip().lower()
    if t == "":
        return None
    if t in ("yes", "no"):
        return t == "yes"
    raise InputError(f"expected yes/no, got {text!r}", source="xsave-components.csv", where=where)


@functools.cache
def component_table() -> dict[int, ComponentInfo]:
    """Every state component cpuidkit knows, by bit (``data/xsave-components.csv``)."""

    rows = read_csv("xsave-components.csv")
    by_name = {r["name"]: int(r["bit"]) for r in rows}
    out: dict[int, ComponentInfo] = {}
    for n, r in enumerate(rows, start=1):
        where = f"row {n} ({r.get('name')})"
        try:
            bit = int(r["bit"])
            size = int(r["size"]) if r["size"] else None
            offset = int(r["std_offset"]) if r["std_offset"] else None
        except ValueError as e:
            raise InputError(str(e), source="xsave-components.csv", where=where) from None
        if r["kind"] not in ("user", "supervisor"):
            raise InputError(
                f"kind must be user or supervisor, got {r['kind']!r}", source="xsave-components.csv", where=where
            )
        requires = 0
        for name in filter(None, (t.strip() for t in r["requires"].split(";"))):
            if name not in by_name:
                raise InputError(
                    f"requires names unknown component {name!r}", source="xsave-components.csv", where=where
                )
            requires |= 1 << by_name[name]
        out[bit] = ComponentInfo(
            bit=bit,
            name=r["name"],
            kind=r["kind"],
            size=size,
            size_status=r["size_status"],
            std_offset=offset,
            align64=_yes_no(r["align64"], where),
            xfd=bool(_yes_no(r["xfd"], where)),
            group=r["group"],
            requires=requires,
            kvm=r["kvm"],
            source=r["source"],
            notes=r["notes"],
        )
    return out


def groups() -> dict[str, int]:
    """All-or-none groups from the component table: name → mask (e.g. ``"amx"`` → bits 17|18)."""
    out: dict[str, int] = {}
    for c in component_table().values():
        if c.group:
            out[c.group] = out.get(c.group, 0) | c.mask
    return out


def mask_names(mask: int) -> list[str]:
    """``0x7`` → ``["x87", "sse", "avx"]`` (unknown bits as ``xfeatureN``)."""
    table = component_table()
    return [table[b].name if b in table else XFEATURE_NAMES.get(b, f"xfeature{b}") for b in set_bits(mask)]


def parse_bits(text: str) -> int:
    """A mask from ``"0-9,17,18"`` (bit numbers and ranges), component names (``"x87,sse,amx_tiledata"``),
    or a number (``"0x602e7"``)."""

    text = text.strip()
    if not text:
        raise InputError("empty bit list")
    if text.lower().startswith("0x"):
        try:
            value = int(text, 16)
        except ValueError:
            raise InputError(f"not a hexadecimal number: {text!r}") from None
        if value > U64:
            raise InputError(f"mask {text!r} does not fit in 64 bits")
        return value
    names = {c.name: c.bit for c in component_table().values()}
    mask = 0
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        if tok in names:
            mask |= 1 << names[tok]
            continue
        try:
            if "-" in tok:
                lo, hi = (int(x, 0) for x in tok.split("-", 1))
            else:
                lo = hi = int(tok, 0)
        except ValueError:
            raise InputError(
                f"{tok!r} is neither a bit number, a range like 0-9, nor a component name ({', '.join(sorted(names))})"
            ) from None
        if not 0 <= lo <= hi <= 63:
            raise InputError(f"bit range {tok!r} must lie within 0..63")
        for b in range(lo, hi + 1):
            mask |= 1 << b
    return mask


def parse_value(text: str) -> int:
    """An XCR0 value from the command line: ``0x602e7``, ``7`` or ``0b111``."""

    try:
        v = int(text.strip(), 0)
    except ValueError:
        raise InputError(f"XCR0 value must be a number like 0x7 or 7, got {text!r}") from None
    if not 0 <= v <= U64:
        raise InputError(f"XCR0 value must fit in 64 bits, got {text!r}")
    return v


# -- what a table enumerates ----------------------------------------------------------


def supported_xcr0(table: CpuidTable) -> int:
    """0xD.0 EDX:EAX: the user state components the table enumerates (0 without 0xD.0)."""
    e = table.get(0xD, 0)
    return 0 if e is None else e.eax | e.edx << 32


def supported_xss(table: CpuidTable) -> int:
    """0xD.1 EDX:ECX: the supervisor state components the table enumerates."""
    e = table.get(0xD, 1)
    return 0 if e is None else e.ecx | e.edx << 32


@dataclass(frozen=True)
class AreaSizes:
    """XSAVE area sizes for one XCR0 (and IA32_XSS) on one CPU's offsets."""

    xcr0: int
    xss: int
    standard: int  # XSAVE/XSAVEOPT format: user components only (KVM's 0xD.0 EBX for this XCR0)
    compacted: int  # XSAVEC/XSAVES format for XCR0|XSS, with 64-byte alignment (KVM ≥ 5.17)
    compacted_unaligned: int  # the same without the alignment flag (KVM < 5.17)

    def as_dict(self) -> dict:
        return {
            "xcr0": self.xcr0,
            "xss": self.xss,
            "standard": self.standard,
            "compacted": self.compacted,
            "compacted_unaligned": self.compacted_unaligned,
        }


def area_sizes(components: dict[int, XsaveComponent], xcr0: int, xss: int = 0) -> AreaSizes:
    """Standard size for ``xcr0`` and compacted sizes for ``xcr0 | xss``, from a CPU's components."""
    return AreaSizes(
        xcr0=xcr0,
        xss=xss,
        standard=standard_size(components, xcr0),
        compacted=compacted_size(components, xcr0 | xss, honour_alignment=True),
        compacted_unaligned=compacted_size(components, xcr0 | xss, honour_alignment=False),
    )


def standard_layout(components: dict[int, XsaveComponent], mask: int) -> list[dict]:
    """Where each enabled user component sits in the standard format (offsets as the CPU reports them)."""
    out: list[dict] = [
        {"bit": 0, "name": "x87", "offset": 0, "size": None},
        {"bit": 1, "name": "sse", "offset": 160, "size": None},
    ]
    out = [d for d in out if mask >> d["bit"] & 1]
    for bit in set_bits(mask & ~0b11):
        c = components.get(bit)
        out.append(
            {
                "bit": bit,
                "name": mask_names(1 << bit)[0],
                "offset": None if c is None else c.offset,
                "size": None if c is None else c.size,
            }
        )
    return out


def compacted_layout(components: dict[int, XsaveComponent], mask: int, *, honour_alignment: bool = True) -> list[dict]:
    """Where each enabled component sits in the compacted format (computed: bit order, 64-byte alignment)."""
    out = []
    pos = LEGACY_AND_HEADER
    for bit in set_bits(mask & ~0b11):
        c = components.get(bit)
        if c is None:
            out.append({"bit": bit, "name": mask_names(1 << bit)[0], "offset": None, "size": None})
            continue
        offset = (pos + 63) & ~63 if (honour_alignment and c.aligned64) else pos
        out.append({"bit": bit, "name": c.name, "offset": offset, "size": c.size})
        pos = offset + c.size
    return out
