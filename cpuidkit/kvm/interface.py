"""The one interface both vCPU backends speak.

``SimulatedVcpu`` (the model) and ``LiveVcpu`` (real ioctls on /dev/kvm)
implement these calls with the same meaning, so a notebook cell, a test or a
review script can run against either, and the project can measure how often
they agree.

Every call maps to the ioctl a VMM would make:

=============================  ==================================================
call                           ioctl / mechanism
=============================  ==================================================
``set_cpuid(table)``           KVM_SET_CPUID2 (vCPU)
``get_cpuid()``                KVM_GET_CPUID2 (vCPU)
``set_cr4(value)``             KVM_GET_SREGS + KVM_SET_SREGS with a new CR4
``set_xcr0(value)``            KVM_SET_XCRS with one XCR0 entry
``get_xcr0()``                 KVM_GET_XCRS
``set_msr(index, value)``      KVM_SET_MSRS (host-initiated write)
``get_msr(index)``             KVM_GET_MSRS
``disable_quirk(name)``        KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2) on the VM
``disable_hlt_exits()``        KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS, HLT) on the VM
``grant_xfeature_permission``  arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, bit) per bit
``run()``                      KVM_RUN of a tiny real-mode guest (``hlt``)
=============================  ==================================================

Failures raise :class:`cpuidkit.KvmError` carrying the errno name.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cpuidkit.core.table import CpuidTable

# MSR numbers (arch/x86/include/asm/msr-index.h)
MSR_IA32_APICBASE = 0x1B
MSR_IA32_MISC_ENABLE = 0x1A0
MSR_IA32_XSS = 0xDA0

# KVM_X86_QUIRK_* (arch/x86/include/uapi/asm/kvm.h)
QUIRKS = {
    "LINT0_REENABLED": 1 << 0,
    "CD_NW_CLEARED": 1 << 1,
    "LAPIC_MMIO_HOLE": 1 << 2,
    "OUT_7E_INC_RIP": 1 << 3,
    "MISC_ENABLE_NO_MWAIT": 1 << 4,
    "FIX_HYPERCALL_INSN": 1 << 5,
    "MWAIT_NEVER_UD_FAULTS": 1 << 6,
    "SLOT_ZAP_ALL": 1 << 7,
    "STUFF_FEATURE_MSRS": 1 << 8,
    "IGNORE_GUEST_PAT": 1 << 9,
}

# CR4 bits used by the runtime rules
CR4_OSXSAVE = 1 << 18
CR4_PKE = 1 << 22


@runtime_checkable
class Vcpu(Protocol):
    """A vCPU you can poke (see the module docstring for the ioctl of each call)."""

    kernel: str
    vendor: str

    def set_cpuid(self, table: CpuidTable) -> None: ...

    def get_cpuid(self) -> CpuidTable: ...

    def set_cr4(self, value: int) -> None: ...

    def set_xcr0(self, value: int) -> None: ...

    def get_xcr0(self) -> int: ...

    def set_msr(self, index: int, value: int) -> None: ...

    def get_msr(self, index: int) -> int: ...

    def disable_quirk(self, name: str) -> None: ...

    def disable_hlt_exits(self) -> None: ...

    def grant_xfeature_permission(self, mask: int) -> None: ...

    def run(self) -> None: ...

    def close(self) -> None: ...
