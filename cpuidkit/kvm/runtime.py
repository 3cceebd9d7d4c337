"""KVM's runtime CPUID update and the state KVM derives from guest CPUID.

``apply_runtime`` is ``kvm_update_cpuid_runtime`` (``__kvm_update_cpuid_runtime``
before 6.14; arch/x86/kvm/cpuid.c): it rewrites OSXSAVE, APIC, OSPKE, 0xD.0 EBX,
0xD.1 EBX, KVM PV_UNHALT, MWAIT (quirk off) and, on 5.17–6.3, the SGX 0x12.1
XFRM in a list of entries, from the vCPU's state.  ``derive`` is
``kvm_vcpu_after_set_cpuid`` (MAXPHYADDR, reserved GPA bits,
guest_supported_xcr0, CR4 reserved bits, EFER validity).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import DEFAULT_KERNEL, KernelProfile, kernel_profile
from cpuidkit.core.supported import KVM_SIGNATURE
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.core.xsave import compacted_size, standard_size
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE

KVM_FEATURE_PV_UNHALT = 7
APICBASE_ENABLE = 1 << 11
MISC_ENABLE_MWAIT = 1 << 18

# CR4 bits (arch/x86/include/uapi/asm/processor-flags.h)
CR4 = {
    "VME": 0,
    "PVI": 1,
    "TSD": 2,
    "DE": 3,
    "PSE": 4,
    "PAE": 5,
    "MCE": 6,
    "PGE": 7,
    "PCE": 8,
    "OSFXSR": 9,
    "OSXMMEXCPT": 10,
    "UMIP": 11,
    "LA57": 12,
    "VMXE": 13,
    "SMXE": 14,
    "FSGSBASE": 16,
    "PCIDE": 17,
    "OSXSAVE": 18,
    "KL": 19,
    "SMEP": 20,
    "SMAP": 21,
    "PKE": 22,
    "CET": 23,
    "PKS": 24,
    "LAM_SUP": 28,
}
# CR4_RESERVED_BITS (arch/x86/include/asm/kvm_host.h): everything KVM does not know at all
_CR4_KNOWN = (
    "VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR PCIDE OSXSAVE SMEP FSGSBASE OSXMMEXCPT LA57 VMXE SMAP PKE UMIP"
).split()

# EFER bits (arch/x86/include/asm/msr-index.h)
EFER = {"SCE": 0, "LME": 8, "LMA": 10, "NX": 11, "SVME": 12, "LMSLE": 13, "FFXSR": 14, "TCE": 15, "AUTOIBRS": 21}
# The EFER bits KVM ties to a CPUID feature in some kernel (__kvm_valid_efer); which feature, and since
# when, comes from the kernel's efer_checks row.  SCE, LMSLE and TCE never depend on guest CPUID.
_EFER_CPUID_DEPENDENT = ("LME", "LMA", "NX", "SVME", "FFXSR", "AUTOIBRS")


@functools.lru_cache(maxsize=64)
def _feature_rule(value: str) -> tuple[tuple[str, tuple], ...]:
    """A data rule like ``"OSXSAVE<-XSAVE;CET<-SHSTK|IBT"`` as (register bit, catalog positions of its features).

    The feature names are the catalog's (Linux's) names in upper case, so their bit positions come from
    data/fields.csv, not from code.
    """

    cat = catalog()
    out = []
    for tok in value.split(";"):
        if not tok.strip():
            continue
        lhs, _, rhs = tok.partition("<-")
        refs = tuple(cat.resolve(name.strip().lower()).ref for name in rhs.split("|"))
        out.append((lhs.strip(), refs))
    return tuple(out)


@dataclass
class VcpuState:
    """The parts of a vCPU's state the CPUID rules read."""

    cr4: int = 0
    xcr0: int = 1  # kvm_vcpu_reset: XCR0 = FP
    xss: int = 0
    apic_base: int = 0xFEE00000 | APICBASE_ENABLE | (1 << 8)  # default base, enabled, BSP (vCPU 0)
    misc_enable: int = 0
    quirks_disabled: set[str] = field(default_factory=set)
    hlt_exits_disabled: bool = False

    def copy(self) -> VcpuState:
        return VcpuState(
            self.cr4,
            self.xcr0,
            self.xss,
            self.apic_base,
            self.misc_enable,
            set(self.quirks_disabled),
            self.hlt_exits_disabled,
        )


def _find(entries: list[CpuidEntry], function: int, index: int | None) -> int | None:
    """cpuid_entry2_find(); ``index=None`` is KVM_CPUID_INDEX_NOT_SIGNIFICANT."""
    for pos, e in enumerate(entries):
        if e.function != function:
            continue
        if index is None or not e.flags & 1 or e.index == index:
            return pos
    return None


def _set_bit(value: int, bit: int, on: bool) -> int:
    return value | (1 << bit) if on else value & ~(1 << bit)


def kvm_pv_base(entries: list[CpuidEntry]) -> int | None:
    """The KVM leaf base: the lowest 0x40000000 + n*0x100 whose (first) entry carries the KVM signature."""
    first: dict[int, CpuidEntry] = {}
    for e in entries:
        fn = e.function
        if 0x40000000 <= fn < 0x40010000 and not fn & 0xFF and fn not in first:
            first[fn] = e
    for base in sorted(first):
        e = first[base]
        if (e.ebx, e.ecx, e.edx) == KVM_SIGNATURE:
            return base
    return None


def guest_supported_xcr0(entries: list[CpuidEntry] | CpuidTable, supported_xcr0: int) -> int:
    """``cpuid_get_supported_xcr0``: 0xD.0 EDX:EAX ∩ kvm_caps.supported_xcr0 (0 without 0xD.0)."""
    ents = list(entries)
    pos = _find(ents, 0xD, 0)
    if pos is None:
        return 0
    e = ents[pos]
    return (e.eax | e.edx << 32) & supported_xcr0


def apply_pv_unhalt(entries: list[CpuidEntry], state: VcpuState, base: int | None = -1) -> list[CpuidEntry]:
    """Clear KVM_FEATURE_PV_UNHALT when HLT exits are disabled (``kvm_apply_cpuid_pv_features_quirk`` in 6.14+).

    ``base`` is the KVM leaf base to use; the default scans ``entries`` for the signature.
    """
    if not state.hlt_exits_disabled:
        return entries
    if base == -1:
        base = kvm_pv_base(entries)
    if base is None:
        return entries
    pos = _find(entries, base | 1, None)
    if pos is not None:
        e = entries[pos]
        entries[pos] = e.replace(eax=e.eax & ~(1 << KVM_FEATURE_PV_UNHALT))
    return entries


def apply_runtime(
    entries: list[CpuidEntry],
    state: VcpuState,
    kernel: KernelProfile,
    host: HostProfile,
    vendor: str,
    current_pv_base: int | None = None,
) -> list[CpuidEntry]:
    """The runtime update on a list of entries (returns the same list, changed in place).

    ``current_pv_base`` is the KVM leaf base of the table the vCPU holds now
    (``vcpu->arch.kvm_cpuid.base``), which 5.17–6.8 used even for incoming entries.
    """
    unconditional = kernel.flag("osxsave_ospke_unconditional")
    pos = _find(entries, 1, None)
    if pos is not None:
        e = entries[pos]
        ecx, edx = e.ecx, e.edx
        if unconditional or host.has_xsave:
            ecx = _set_bit(ecx, 27, bool(state.cr4 & CR4_OSXSAVE))
        edx = _set_bit(edx, 9, bool(state.apic_base & APICBASE_ENABLE))
        entries[pos] = e.replace(ecx=ecx, edx=edx)
    pos = _find(entries, 7, 0)
    if pos is not None and (unconditional or host.has_pku):
        e = entries[pos]
        entries[pos] = e.replace(ecx=_set_bit(e.ecx, 4, bool(state.cr4 & CR4_PKE)))
    comps = host.xsave_components
    pos = _find(entries, 0xD, 0)
    if pos is not None:
        entries[pos] = entries[pos].replace(ebx=standard_size(comps, state.xcr0))
    pos = _find(entries, 0xD, 1)
    if pos is not None and entries[pos].eax & 0b1010:  # XSAVEC (bit 1) or XSAVES (bit 3)
        mask = state.xcr0 | (state.xss if kernel.flag("xss_in_0xd1_ebx") else 0)
        size = compacted_size(comps, mask, honour_alignment=kernel.flag("xstate_compacted_alignment"))
        entries[pos] = entries[pos].replace(ebx=size)
    if kernel.flag("pv_unhalt_runtime"):
        lookup = kernel.value("kvm_pv_base_lookup")
        if lookup == "fixed_0x40000001":
            base: int | None = 0x40000000
        elif kernel.flag("pv_unhalt_first_set_missed"):
            base = current_pv_base  # the previous table's base: the first SET finds none
        else:
            base = -1  # scan the entries themselves
        apply_pv_unhalt(entries, state, base)
    if kernel.flag("mwait_misc_enable_quirk") and "MISC_ENABLE_NO_MWAIT" in state.quirks_disabled:
        pos = _find(entries, 1, None)
        if pos is not None:
            e = entries[pos]
            entries[pos] = e.replace(ecx=_set_bit(e.ecx, 3, bool(state.misc_enable & MISC_ENABLE_MWAIT)))
    if kernel.value("sgx_xfrm_adjust") == "runtime":
        apply_sgx_xfrm_adjust(entries, host, vendor, kernel)
    return entries


def apply_sgx_xfrm_adjust(
    entries: list[CpuidEntry], host: HostProfile, vendor: str, kernel: KernelProfile | None = None
) -> list[CpuidEntry]:
    """5.13–6.3: 0x12.1 ECX/EDX := (ECX/EDX ∩ guest supported XCR0) | FP | SSE."""
    pos = _find(entries, 0x12, 1)
    if pos is None:
        return entries
    gsx = guest_supported_xcr0(entries, host.kvm_supported_xcr0(vendor, kernel))
    e = entries[pos]
    entries[pos] = e.replace(ecx=(e.ecx & gsx & 0xFFFFFFFF) | 0b11, edx=e.edx & (gsx >> 32))
    return entries


def query_maxphyaddr(table: CpuidTable) -> int:
    """``cpuid_query_maxphyaddr``: 0x80000008.EAX[7:0] if reachable through 0x80000000.EAX, else 36."""
    ext = table.get_any(0x80000000)
    if ext is None or ext.eax < 0x80000008:
        return 36
    e = table.get_any(0x80000008)
    return 36 if e is None else e.eax & 0xFF


def reserved_gpa_bits(maxphyaddr: int) -> int:
    """``rsvd_bits(maxphyaddr, 63)``: every GPA bit from MAXPHYADDR up (none when ≥ 64)."""
    if maxphyaddr > 63:
        return 0
    return ((1 << 64) - 1) & ~((1 << maxphyaddr) - 1)


def _has_ref(table: CpuidTable, ref) -> bool:
    """Whether the one-bit field at ``ref`` (a catalog FieldRef) is set in ``table``."""
    e = table.get(ref.leaf, ref.subleaf)
    return bool(e is not None and e.reg(ref.register) >> ref.lo & 1)


@functools.lru_cache(maxsize=256)
def _cr4_global(host: HostProfile, kernel: KernelProfile) -> tuple[int, tuple[tuple[str, tuple], ...]]:
    """KVM's global ``cr4_reserved_bits`` for a host (its caps), and the CPUID-dependent CR4 bits."""
    # "OSXSAVE<-XSAVE;SMEP<-SMEP;…": the CR4 bits whose legality follows a CPUID feature in this kernel
    active = _feature_rule(kernel.value("cr4_reserved_from_cpuid"))
    names = {name for name, _ in active}
    known = set(_CR4_KNOWN)
    if "LAM_SUP" in names:
        known.add("LAM_SUP")
    if "CET" in names:
        known.add("CET")
    reserved = 0xFFFFFFFFFFFFFFFF
    for name in known:
        reserved &= ~(1 << CR4[name])
    caps = host.supported if host.supported is not None else host.cpuid
    for name, refs in active:
        if not any(_has_ref(caps, r) for r in refs):
            reserved |= 1 << CR4[name]
    return reserved, active


def cr4_reserved_bits(guest: CpuidTable, host: HostProfile, kernel: KernelProfile) -> int:
    """CR4 bits KVM_SET_SREGS refuses: unknown to KVM, absent from KVM's caps, or absent from guest CPUID."""
    reserved, active = _cr4_global(host, kernel)
    for name, refs in active:
        if not any(_has_ref(guest, r) for r in refs):
            reserved |= 1 << CR4[name]
    return reserved


def efer_allowed(guest: CpuidTable, kernel: KernelProfile | None = None) -> int:
    """EFER bits a guest WRMSR may set given guest CPUID (``__kvm_valid_efer``; SCE always).

    The EFER bits that need a CPUID feature come from the kernel's ``efer_checks`` row
    (AUTOIBRS joins in 6.3); other EFER bits are KVM-global, not CPUID-dependent.
    """
    if kernel is None:
        kernel = kernel_profile(DEFAULT_KERNEL)
    allowed = 1 << EFER["SCE"]
    for bit, refs in _efer_rules(kernel.value("efer_checks")):
        if refs is None or any(_has_ref(guest, r) for r in refs):
            allowed |= 1 << bit
    return allowed


@functools.lru_cache(maxsize=32)
def _efer_rules(value: str) -> tuple[tuple[int, tuple | None], ...]:
    """(EFER bit, the catalog positions of its features, or None when no feature gates it in this kernel)."""
    rules = dict(_feature_rule(value))
    return tuple((EFER[name], rules.get(name)) for name in _EFER_CPUID_DEPENDENT)


@dataclass(frozen=True)
class Derived:
    """What ``kvm_vcpu_after_set_cpuid`` computed from the stored table."""

    maxphyaddr: int
    reserved_gpa_bits: int
    guest_supported_xcr0: int
    cr4_reserved_bits: int
    efer_allowed: int
    kvm_pv_base: int | None

    def as_dict(self) -> dict:
        return {
            "maxphyaddr": self.maxphyaddr,
            "reserved_gpa_bits": self.reserved_gpa_bits,
            "guest_supported_xcr0": self.guest_supported_xcr0,
            "cr4_reserved_bits": self.cr4_reserved_bits,
            "efer_allowed": self.efer_allowed,
            "kvm_pv_base": self.kvm_pv_base,
        }


def derive(
    table: CpuidTable, host: HostProfile, kernel: KernelProfile, vendor: str, *, before_set: bool = False
) -> Derived:
    """``kvm_vcpu_after_set_cpuid`` on ``table``; ``before_set``: a fresh vCPU that has had no KVM_SET_CPUID2."""
    mpa = query_maxphyaddr(table)
    if before_set and kernel.value("cr4_before_set_cpuid") == "host_mask_only":
        cr4 = _cr4_global(host, kernel)[0]  # cr4_guest_rsvd_bits stays 0 until the first SET (before 6.14)
    else:
        cr4 = cr4_reserved_bits(table, host, kernel)
    return Derived(
        maxphyaddr=mpa,
        reserved_gpa_bits=reserved_gpa_bits(mpa),
        guest_supported_xcr0=guest_supported_xcr0(table, host.kvm_supported_xcr0(vendor, kernel)),
        cr4_reserved_bits=cr4,
        efer_allowed=efer_allowed(table, kernel),
        kvm_pv_base=kvm_pv_base(list(table)),
    )
