"""XSAVE state components and area sizes, computed from a CPU's own 0xD subleaves.

KVM computes the guest's 0xD.0 EBX (standard form, for XCR0) and 0xD.1 EBX
(compacted form, for XCR0, or XCR0|XSS from 6.18) from the **host's** 0xD
subleaves, cached at module load (``kvm_init_xstate_sizes`` /
``xstate_required_size`` in arch/x86/kvm/cpuid.c), never from the guest's.
This module does the same arithmetic for any CPU's table.
"""

from __future__ import annotations

from dataclasses import dataclass

from .table import CpuidTable

__all__ = ["XsaveComponent", "components_of", "standard_size", "compacted_size", "XFEATURE_NAMES"]

LEGACY_AND_HEADER = 512 + 64  # FXSAVE area + XSAVE header: the size with only x87/SSE

XFEATURE_NAMES = {
    0: "x87", 1: "sse", 2: "avx", 3: "mpx_bndregs", 4: "mpx_bndcsr", 5: "avx512_opmask",
    6: "avx512_zmm_hi256", 7: "avx512_hi16_zmm", 8: "pt", 9: "pkru", 10: "pasid", 11: "cet_u",
    12: "cet_s", 13: "hdc", 14: "uintr", 15: "lbr", 16: "hwp", 17: "amx_tilecfg", 18: "amx_tiledata",
    19: "apx",
}


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
    out = {}
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
    for bit in _bits(mask & ~0b11):
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
    for bit in _bits(mask & ~0b11):
        c = components.get(bit)
        if c is None:
            continue
        offset = (size + 63) & ~63 if (honour_alignment and c.aligned64) else size
        size = max(size, offset + c.size)
    return size


def _bits(mask: int):
    bit = 0
    while mask:
        if mask & 1:
            yield bit
        mask >>= 1
        bit += 1
