"""Who owns each named field: userspace (passthrough), KVM at runtime, the vendor module, or nobody.

=================  ==============================================================
owner              meaning
=================  ==============================================================
``passthrough``    KVM stores what userspace gave and the guest sees it unchanged
``runtime``        KVM overwrites it from vCPU state (``driver`` names the state)
``vendor``         the vendor module (pvm) decides it after KVM_SET_CPUID2
``not-virtualized``  the guest sees the bit, but KVM's capabilities lack it, so
                   KVM treats the feature as absent (6.14+: cpu_caps = CPUID ∩ KVM)
=================  ==============================================================
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from cpuidkit.core.bits import FieldRef
from cpuidkit.core.catalog import Field, catalog
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE, MSR_IA32_APICBASE, MSR_IA32_MISC_ENABLE
from cpuidkit.kvm.runtime import KVM_FEATURE_PV_UNHALT, kvm_pv_base
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.vendors import vendor_mask

if TYPE_CHECKING:  # pragma: no cover
    from cpuidkit.kvm.vcpu import SimulatedVcpu

OWNERS = ("passthrough", "runtime", "vendor", "not-virtualized")

# Leaves whose one-bit fields are CPU features KVM may or may not virtualize.
FEATURE_LEAVES = {1, 6, 7, 0xD, 0x14, 0x19, 0x80000001, 0x80000007, 0x80000008, 0x8000001F, 0x80000021}


class Ownership(NamedTuple):
    """Who decides one field's value in the stored table (an immutable tuple: cheap to make by the hundred)."""

    field: Field
    subleaf: int
    value: int
    owner: str
    driver: str | None

    def as_dict(self) -> dict:
        f = self.field
        return {
            "name": f.name,
            "leaf": f.leaf,
            "subleaf": self.subleaf,
            "register": f.register,
            "bits": f.bits,
            "value": self.value,
            "owner": self.owner,
            "driver": self.driver,
        }


@functools.lru_cache(maxsize=64)
def _vendor_masks(vendor: str, host: HostProfile) -> dict[tuple[int, int, str], int]:
    """A memo of ``vendor_mask(vendor, host, …)`` per (leaf, subleaf, register), one per vendor and host
    (a host profile is immutable and hashed by identity; the cache holds it, so it cannot be confused)."""
    return {}


def as_dicts(items: Iterable[Ownership]) -> list[dict]:
    """``[o.as_dict() for o in items]``, without a method call per field."""
    return [
        {
            "name": f.name,
            "leaf": f.leaf,
            "subleaf": sub,
            "register": f.register,
            "bits": f.bits,
            "value": value,
            "owner": owner,
            "driver": driver,
        }
        for f, sub, value, owner, driver in items
    ]


def _make(f: Field, subleaf: int, value: int, owner: str, driver: str | None) -> Ownership:
    """``Ownership(...)`` without the keyword handling of the generated ``__new__``."""
    return _new(Ownership, (f, subleaf, value, owner, driver))


_new = tuple.__new__


def runtime_drivers(vcpu: SimulatedVcpu, table: CpuidTable) -> dict[tuple, str]:
    """Positions (leaf, subleaf, register, hi, lo) KVM rewrites at runtime for this vCPU → the state driving them."""
    k, host, state = vcpu.kernel_profile, vcpu.host, vcpu.state
    unconditional = k.flag("osxsave_ospke_unconditional")
    out: dict[tuple, str] = {(1, 0, "edx", 9, 9): "IA32_APIC_BASE.EN", (0xD, 0, "ebx", 31, 0): "XCR0"}
    if unconditional or host.has_xsave:
        out[(1, 0, "ecx", 27, 27)] = "CR4.OSXSAVE"
    if unconditional or host.has_pku:
        out[(7, 0, "ecx", 4, 4)] = "CR4.PKE"
    if "MISC_ENABLE_NO_MWAIT" in state.quirks_disabled:
        out[(1, 0, "ecx", 3, 3)] = "IA32_MISC_ENABLE.MWAIT (quirk MISC_ENABLE_NO_MWAIT disabled)"
    e = table.get(0xD, 1)
    if e is not None and e.eax & 0b1010:
        out[(0xD, 1, "ebx", 31, 0)] = "XCR0 | IA32_XSS" if k.flag("xss_in_0xd1_ebx") else "XCR0"
    if k.value("sgx_xfrm_adjust") != "none":
        for reg in ("ecx", "edx"):
            out[(0x12, 1, reg, 31, 0)] = "0xD.0 (guest supported XCR0), FP|SSE forced"
    if state.hlt_exits_disabled:
        base = kvm_pv_base(list(table))
        if base is not None:
            out[(base | 1, 0, "eax", KVM_FEATURE_PV_UNHALT, KVM_FEATURE_PV_UNHALT)] = (
                "HLT exits disabled (KVM_CAP_X86_DISABLE_EXITS)"
            )
    return out


def _not_virtualized(vcpu: SimulatedVcpu, f: Field, subleaf: int, value: int) -> bool:
    sup = vcpu.host.supported
    if sup is None or not f.is_flag or not value or f.leaf not in FEATURE_LEAVES:
        return False
    e = sup.get(f.leaf, subleaf)
    return e is None or not (e.reg(f.register) >> f.lo) & 1


def ownership(vcpu: SimulatedVcpu, table: CpuidTable | None = None) -> list[Ownership]:
    """Ownership of every catalog field present in the vCPU's stored table."""
    table = vcpu.get_cpuid() if table is None else table
    drivers = runtime_drivers(vcpu, table)
    driven = {(k[0], k[1], k[2]) for k in drivers}
    vendor = vcpu.vendor
    vendor_driver = f"{vendor} module"
    sup = vcpu.host.supported
    vmasks = _vendor_masks(vendor, vcpu.host)
    out: list[Ownership] = []
    append = out.append
    for leaf, reg, members, found in catalog().registers(table):
        # per subleaf: the runtime drivers of this register, the vendor module's mask, and (for feature leaves
        # on a host with a measured KVM_GET_SUPPORTED_CPUID) the supported register, -1 when the entry is absent
        info = []
        for sub, rv in found:
            key = (leaf, sub, reg)
            vm = vmasks.get(key)
            if vm is None:
                vm = vmasks[key] = vendor_mask(vendor, vcpu.host, leaf, sub, reg)
            supported = None
            if sup is not None and leaf in FEATURE_LEAVES:
                e = sup.get(leaf, sub)
                supported = -1 if e is None else getattr(e, reg)
            info.append((sub, rv, key in driven, vm, supported))
        if len(info) == 1 and not info[0][2] and not info[0][3] and info[0][4] is None:
            # the common case: one subleaf, no runtime driver, no vendor bits, nothing to compare: passthrough
            sub, rv = info[0][0], info[0][1]
            for f, lo, ones in members:
                append(_new(Ownership, (f, sub, (rv >> lo) & ones, "passthrough", None)))
            continue
        for f, lo, ones in members:
            flag = ones == 1
            for sub, rv, has_driver, vm, supported in info:
                value = (rv >> lo) & ones
                if has_driver:
                    driver = drivers.get((leaf, sub, reg, f.hi, lo))
                    if driver:
                        append(_make(f, sub, value, "runtime", driver))
                        continue
                if vm and vm & (ones << lo):
                    append(_make(f, sub, value, "vendor", vendor_driver))
                elif value and flag and supported is not None and (supported == -1 or not (supported >> lo) & 1):
                    append(_make(f, sub, value, "not-virtualized", None))
                else:
                    append(_make(f, sub, value, "passthrough", None))
    return out


# -- the catalog's owner column -----------------------------------------------------------------

REFERENCE = {"kernel": DEFAULT_KERNEL, "vendor": "vmx", "host": "sapphire-rapids"}
CATALOG_OWNERS = ("runtime", "checked", "derived", "passthrough")


def classify_field(
    f: Field, kernel: str = REFERENCE["kernel"], vendor: str = REFERENCE["vendor"], host: str = REFERENCE["host"]
) -> str:
    """The catalog class of a field, found by experiment on the model (not by reading the rules):

    ``runtime``  KVM overwrote the value userspace set, under some vCPU state;
    ``checked``  some value makes KVM_SET_CPUID2 fail;
    ``derived``  changing it changes state KVM derives (MAXPHYADDR, guest XCR0, CR4/EFER rules, PV base);
    ``passthrough`` otherwise.
    """

    h = HostProfile.resolve(host)
    base = h.cpuid.set_field("0xd.0.eax[18]", 0).set_field("0xd.1.eax[3]", 1)
    base = base.with_entry(CpuidEntry(0x40000000, eax=0x40000001, ebx=0x4B4D564B, ecx=0x564B4D56, edx=0x4D))
    base = base.with_entry(CpuidEntry(0x40000001))
    base = base.with_entry(CpuidEntry(0x12, 1, 1))
    ones = (1 << f.width) - 1
    samples = sorted({0, ones, 1 << (f.width - 1), ones >> 1, 0x30 & ones, 0x39 & ones})
    refs = [FieldRef(f.leaf, sub, f.register, f.hi, f.lo) for sub in (f.sub_lo, f.sub_hi)]

    def fresh(state: int) -> SimulatedVcpu:
        v = SimulatedVcpu(kernel=kernel, vendor=vendor, host=h)
        if state & 1:
            v.disable_quirk("MISC_ENABLE_NO_MWAIT")
            v.disable_hlt_exits()
        return v

    def poke(v: SimulatedVcpu, state: int) -> None:
        if state & 2:
            v.set_cr4(CR4_OSXSAVE | (CR4_PKE if v.derived.cr4_reserved_bits & CR4_PKE == 0 else 0))
            v.set_xcr0(v.derived.guest_supported_xcr0 | 1)
            v.set_msr(MSR_IA32_MISC_ENABLE, 1 << 18)
            v.set_msr(MSR_IA32_APICBASE, 0xFEE00000)

    checked = derived = False
    for ref in refs:
        derived_seen = set()
        for val in samples:
            t = base.set_field(ref, val)
            for state in (0, 1, 2, 3):
                v = fresh(state)
                try:
                    v.set_cpuid(t)
                except KvmError:
                    checked = True
                    continue
                try:
                    poke(v, state)
                except KvmError:
                    pass
                got = v.get_cpuid().get_field(ref)
                if got != val:
                    return "runtime"
                d = v.derived
                derived_seen.add(
                    (d.maxphyaddr, d.guest_supported_xcr0, d.cr4_reserved_bits, d.efer_allowed, d.kvm_pv_base)
                )
        derived |= len(derived_seen) > 1
    if checked:
        return "checked"
    return "derived" if derived else "passthrough"
