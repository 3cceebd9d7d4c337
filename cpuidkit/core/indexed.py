"""Which CPUID functions are indexed (ECX selects a subleaf): KVM's list, and what a raw dump shows.

``INDEXED_FUNCTIONS`` is KVM's ``cpuid_function_is_indexed()`` (arch/x86/include/asm/cpuid.h in 6.1 and 6.12,
asm/cpuid/api.h in 6.18; 0x24 added with AVX10 in 6.10 is included): the functions KVM_GET_SUPPORTED_CPUID
flags with KVM_CPUID_FLAG_SIGNIFCANT_INDEX.  The architecture indexes more leaves than KVM does
(:data:`ARCH_ONLY_INDEXED`: AMD's 0x80000020 PQoS, Intel's 0x1B PCONFIG and 0x23 PMU extensions …), and a
raw dump of the CPU holds them as it holds leaf 4 or 7: :func:`indexed_in_dump` says which functions of a dump
are indexed, so an importer flags them and KVM's lookup finds each subleaf rather than the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

INDEXED_FUNCTIONS = frozenset(
    {0x4, 0x7, 0xB, 0xD, 0xF, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1D, 0x1E, 0x1F, 0x24, 0x8000001D}
)
# Leaves the SDM/APM define with subleaves but KVM does not list: 0x1B (PCONFIG), 0x20 (HRESET), 0x23
# (architectural performance monitoring extensions), 0x80000020 (AMD PQoS), 0x80000026 (AMD extended CPU
# topology).  The lint's indexed_leaf_without_flag rule uses the same set.
ARCH_ONLY_INDEXED = frozenset({0x1B, 0x20, 0x23, 0x80000020, 0x80000026})
ARCH_INDEXED_FUNCTIONS = INDEXED_FUNCTIONS | ARCH_ONLY_INDEXED


class _Entry(Protocol):
    @property
    def function(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def eax(self) -> int: ...
    @property
    def ebx(self) -> int: ...
    @property
    def ecx(self) -> int: ...
    @property
    def edx(self) -> int: ...


def function_is_indexed(function: int) -> bool:
    return function in INDEXED_FUNCTIONS


def indexed_in_dump(entries: Iterable[_Entry]) -> frozenset[int]:
    """The functions a raw dump of a CPU is indexed in: every leaf the architecture indexes
    (:data:`ARCH_INDEXED_FUNCTIONS`: KVM's list and the others), and any further function the dump holds with
    subleaves of different index *and* different contents (the CPU reads ECX for it).  Subleaves that are all
    alike show a CPU that ignores ECX there: such a function stays unindexed."""
    first: dict[int, tuple[int, tuple[int, int, int, int]]] = {}
    out = set()
    for e in entries:
        fn = e.function
        if fn in ARCH_INDEXED_FUNCTIONS or fn in out:
            continue
        regs = (e.eax, e.ebx, e.ecx, e.edx)
        index, seen = first.setdefault(fn, (e.index, regs))
        if index != e.index and seen != regs:
            out.add(fn)
    return frozenset(ARCH_INDEXED_FUNCTIONS | out)
