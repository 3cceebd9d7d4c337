"""What a review reads about a template on a host, computed once: flags, the context the kernel-note rules
test, the vCPU state after a guest boots, the features beyond what KVM virtualizes."""

from __future__ import annotations

from dataclasses import dataclass

from cpuidkit.core.bits import extract_bits
from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import supported_xcr0
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE
from cpuidkit.kvm.runtime import KVM_FEATURE_PV_UNHALT, kvm_pv_base
from cpuidkit.kvm.vendors import vendor_cr4_valid

_TILEDATA = 1 << 18


def _flag(t: CpuidTable, name: str) -> bool:
    for f in catalog().by_name(name):
        e = t.get(f.leaf, f.sub_lo)
        if e is not None and extract_bits(e.reg(f.register), f.hi, f.lo):
            return True
    return False


@dataclass
class _Ctx:
    """What the kernel-note rules (:data:`~cpuidkit.analysis.review.notes.CONDITIONS`) read about the template."""

    t: CpuidTable
    host: HostProfile
    kernel: str
    vendor: str
    outcome: object
    migration: object
    beyond: list[str]
    m0: int
    g_maxpa: int
    usable: int
    kvm_pv_unhalt: bool

    def has(self, name: str) -> bool:
        return _flag(self.t, name)


def _kvm_pv_unhalt(t: CpuidTable) -> bool:
    base = kvm_pv_base(list(t))
    if base is None:
        return False
    e = t.get(base | 1)
    return bool(e and e.eax >> KVM_FEATURE_PV_UNHALT & 1)


def _booted_state(out, template: CpuidTable, perm: int, host: HostProfile | None = None) -> dict:
    """The vCPU state after a guest OS enabled what it was offered: CR4.OSXSAVE/PKE, XCR0 = all it may use."""

    def cr4_ok(bit: int) -> bool:
        fixed = vendor_cr4_valid(out.vendor, bit, host) if host is not None else None  # pvm: a fixed mask
        return not out.derived["cr4_reserved_bits"] & bit if fixed is None else fixed

    cr4 = 0
    # what the guest reads is the stored table (a vendor module may have added XSAVE), as for _xsave()
    if _flag(out.stored, "xsave") and cr4_ok(CR4_OSXSAVE):
        cr4 |= CR4_OSXSAVE
    if _flag(out.stored, "pku") and cr4_ok(CR4_PKE):
        cr4 |= CR4_PKE
    state: dict = {"cr4": cr4, "xfeature_permission": perm}
    if cr4 & CR4_OSXSAVE:
        state["xcr0"] = _os_xcr0(out.derived["guest_supported_xcr0"])
    return state


def _os_xcr0(gsx: int) -> int:
    """What an OS enables: every offered component, with the all-or-none groups kept whole."""
    x = gsx | 1
    for group in (0b11 << 3, 0b111 << 5, 0b11 << 17):
        if x & group != group:
            x &= ~group
    if not x & 2:
        x &= ~4
    if not x & 4:
        x &= ~(0b111 << 5)
    return x


@dataclass(frozen=True)
class _Xsave:
    """The one place the review reads XSAVE from: what the template's 0xD.0 allows, what KVM stored (the vendor
    module may have appended or rewritten leaf 0xD), guest_supported_xcr0 derived from the stored table, and
    the XCR0 a guest OS then enables.  The summary and section 5 both read this."""

    template_mask: int  # the template's 0xD.0 EDX:EAX
    stored_mask: int  # the stored table's 0xD.0 EDX:EAX (what the guest reads)
    guest_supported: int  # guest_supported_xcr0: stored mask ∩ what KVM supports on the host
    os_xcr0: int  # what a guest OS enables (0 when the guest has no XSAVE state)

    @property
    def none(self) -> bool:
        return not self.guest_supported & ~1

    @property
    def from_vendor(self) -> bool:
        """The template has no XSAVE state of its own but the stored table has (the vendor module added it)."""
        return not self.template_mask & ~1 and bool(self.stored_mask & ~1)


def _xsave(t: CpuidTable, out) -> _Xsave:
    gsx = out.derived["guest_supported_xcr0"]
    return _Xsave(supported_xcr0(t), supported_xcr0(out.stored), gsx, 0 if not gsx & ~1 else _os_xcr0(gsx))


def _field_value(t: CpuidTable, o) -> int | None:
    e = t.get(o.field.leaf, o.subleaf)
    return None if e is None else extract_bits(e.reg(o.field.register), o.field.hi, o.field.lo)


def _beyond(h: HostProfile, out, mig) -> tuple[list[str], list[str], bool]:
    """(beyond, synthesized, measured): the template's features KVM does not virtualize on the host."""
    measured = h.supported is not None
    missing: list[str] = next((f.fields for f in mig.findings if f.rule == "feature_missing"), [])
    synthesized: list[str] = next((f.fields for f in mig.findings if f.rule == "feature_synthesized"), [])
    if measured:
        beyond = list(dict.fromkeys(out.derived["not_virtualized"]))
    else:
        beyond = list(missing)
    return beyond, list(synthesized), measured
