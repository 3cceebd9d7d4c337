"""Address widths as CPUID states them: one decoder for each field.

``0x80000008.EAX[7:0]`` is MAXPHYADDR, ``0x80000008.EAX[15:8]`` the linear-address width (the only value
``kvm_check_cpuid`` judges: 0, 48 or 57) and ``7.0.ECX[16]`` LA57 (5-level paging).  What a guest or a host
makes of them (defaults, usable widths, paging modes) is :mod:`cpuidkit.analysis.addressing`'s job.
"""

from __future__ import annotations

from cpuidkit.core.bits import FieldRef
from cpuidkit.core.table import CpuidEntry, CpuidTable

__all__ = ["LINEAR_WIDTH", "MAXPHYADDR", "LA57", "linear_width_of", "linear_width_field", "has_la57"]

MAXPHYADDR = FieldRef(0x80000008, 0, "eax", 7, 0)
LINEAR_WIDTH = FieldRef(0x80000008, 0, "eax", 15, 8)
LA57 = FieldRef(7, 0, "ecx", 16, 16)


def linear_width_of(entry: CpuidEntry) -> int:
    """The linear-address width field of a 0x80000008 entry (EAX[15:8])."""
    return (entry.eax >> 8) & 0xFF


def linear_width_field(table: CpuidTable) -> int | None:
    """0x80000008.EAX[15:8] as KVM's lookup finds it; None when the leaf is absent."""
    e = table.get(0x80000008)
    return None if e is None else linear_width_of(e)


def has_la57(table: CpuidTable) -> bool:
    """CPUID.7.0:ECX.LA57 (bit 16): 57-bit linear addresses with 5-level paging."""
    e = table.get(7, 0)
    return bool(e is not None and e.ecx >> 16 & 1)
