"""Can a guest with this CPUID move to that host?  Findings with a severity, a rule and the fields involved.

KVM itself refuses very little on the destination (KVM_SET_CPUID2 accepts
unsupported bits and any MAXPHYADDR), so most problems surface later, inside
the guest.  :func:`migrate` compares a guest table with a destination
:class:`~cpuidkit.core.hosts.HostProfile` and reports:

==========================  ===================================================================
rule                        what is compared
==========================  ===================================================================
``vendor``                  guest vendor string against the destination CPU's
``cpuid_rejected``          the model's KVM_SET_CPUID2 of the guest table on the destination
``feature_missing``         CPU features the guest sees that the destination cannot provide
``feature_synthesized``     features KVM sets from the host kernel's state (mitigations, microcode, emulation), not raw CPUID
``xcr0_components``         the guest's XCR0 against the destination's guest_supported_xcr0
``amx_permission``          the dynamic-feature permission the destination VMM must request
``xsave_layout``            standard-format offsets/sizes the guest sized its buffers from
``xsave_size``              XSAVE area sizes before and after
``maxphyaddr``              guest physical width against the destination's (both directions)
``guest_phys_bits``         GuestPhysBits the guest (firmware) may have used
``linear_width``            57-bit linear addresses (LA57) against the destination
``sgx_xfrm``                SGX allowed XFRM against the destination's XCR0 support
==========================  ===================================================================

Severity: ``blocker`` (the guest will break or the VMM cannot restore it),
``warning`` (it moves, but something it could rely on changes), ``info``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cpuidkit.analysis.addressing import (
    guest_linear_bits,
    guest_maxphyaddr,
    guest_phys_bits_field,
    host_has_five_level_tdp,
    smaller_maxphyaddr,
    usable_gpa_bits,
)
from cpuidkit.core.addresses import has_la57
from cpuidkit.core.bits import extract_bits
from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import KVM_SUPPORTED_XCR0, HostProfile
from cpuidkit.core.kernels import DEFAULT_KERNEL, kernel_profile
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import (
    XFEATURE_MASK_FPSSE,
    XFEATURE_MASK_XTILE_DATA,
    components_of,
    mask_names,
    standard_size,
    supported_xcr0,
)
from cpuidkit.errors import KvmError
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.xcr import sgx_fields
from cpuidkit.live import resolve_host

__all__ = ["Finding", "MigrationReport", "migrate", "SEVERITIES"]

SEVERITIES = ("blocker", "warning", "info")

# Bits KVM offers whatever the host CPU says (kvm_set_cpu_caps in arch/x86/kvm/cpuid.c, 6.12: "KVM emulates
# x2apic in software", "TSC_ADJUST and ARCH_CAPABILITIES are emulated in software", ARAT forced in leaf 6;
# HYPERVISOR and TSC_DEADLINE are set by KVM_GET_SUPPORTED_CPUID for an in-kernel LAPIC).
KVM_PROVIDED = frozenset({"x2apic", "hypervisor", "tsc_deadline_timer", "tsc_adjust", "arch_capabilities", "arat"})
# Bits KVM sets from the host kernel's state (mitigations, microcode, emulation) rather than raw CPUID: a
# difference here is worth a look, not a verdict.
# 6.12 kvm_set_cpu_caps also sets SBPB, IBPB_BRTYPE, SRSO_NO, VERW_CLEAR and TSA_*_NO from the host kernel's
# own flags (kvm_cpu_cap_check_and_set; SYNTHESIZED_F in 6.18); 6.18 sets AMD_IBPB_RET when the host has it;
# vmx_set_cpu_caps sets UMIP when KVM can emulate it and DS/DTES64 when the PMU supports PEBS.
KVM_SYNTHESIZED = frozenset(
    {
        "spec_ctrl",
        "intel_stibp",
        "spec_ctrl_ssbd",
        "amd_ibpb",
        "amd_ibrs",
        "amd_stibp",
        "amd_ssbd",
        "amd_ssb_no",
        "virt_ssbd",
        "lfence_rdtsc",
        "null_sel_clr_base",
        "no_smm_ctl_msr",
        "flush_l1d",
        "md_clear",
        "sbpb",
        "ibpb_brtype",
        "srso_no",
        "verw_clear",
        "tsa_sq_no",
        "tsa_l1_no",
        "tsa_fill_no",
        "amd_ibpb_ret",
        "umip",
        "dts",
        "dtes64",
    }
)
# Fields KVM rewrites at runtime or that this module compares through a dedicated rule.
_SKIP = frozenset({"osxsave", "ospke", "apic", "la57", "xsave"})
# The registers whose flags are instruction-set and CPU features KVM can offer a guest (the CPUID words of
# kvm_set_cpu_caps in arch/x86/kvm/cpuid.c). Power/thermal leaves (6, most of 0x80000007), Processor Trace
# (0x14), Key Locker (0x19) and SEV (0x8000001F) are not offered to ordinary guests, so a host-passthrough
# guest table carrying them loses nothing real when the destination lacks them.
_VIRTUALIZABLE_REGS = frozenset(
    {
        (1, 0, "ecx"),
        (1, 0, "edx"),
        (7, 0, "ebx"),
        (7, 0, "ecx"),
        (7, 0, "edx"),
        (7, 1, "eax"),
        (7, 1, "edx"),
        (0xD, 1, "eax"),
        (0x80000001, 0, "ecx"),
        (0x80000001, 0, "edx"),
        (0x80000008, 0, "ebx"),
        (0x80000021, 0, "eax"),
    }
)
# ...and, in those registers, the bits KVM never offers (kvm_set_cpu_caps masks them off for every guest): the
# never_offered row of data/kvm-behaviours.csv, per kernel (MONITOR, DS-CPL, SMX, EST, TM2, xTPR, DCA, PSN, ACPI,
# HTT, TM, PBE, TSX_FORCE_ABORT ...).  DS and DTES64 are offered by VMX with PEBS and SELFSNOOP (ss) is
# offered (F(SELFSNOOP)), so they are not listed.
_EXTRA_FLAGS = frozenset({"constant_tsc"})


@dataclass(frozen=True)
class Finding:
    severity: str
    rule: str
    fields: list[str]
    explanation: str

    def as_dict(self) -> dict:
        return {
            "severity": self.severity,
            "rule": self.rule,
            "fields": list(self.fields),
            "explanation": self.explanation,
        }


@dataclass
class MigrationReport:
    guest: str
    destination: str
    kernel: str
    vendor: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def blockers(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "blocker"]

    @property
    def verdict(self) -> str:
        """``"blocked"`` with any blocker, ``"ok-with-warnings"`` with warnings, else ``"ok"``."""
        if self.blockers:
            return "blocked"
        if any(f.severity == "warning" for f in self.findings):
            return "ok-with-warnings"
        return "ok"

    def as_dict(self) -> dict:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return {
            "guest": self.guest,
            "destination": self.destination,
            "kernel": self.kernel,
            "vendor": self.vendor,
            "verdict": self.verdict,
            "blockers": len(self.blockers),
            "findings": [f.as_dict() for f in sorted(self.findings, key=lambda f: order[f.severity])],
        }


def _never_offered(kernel: str) -> frozenset[str]:
    return frozenset(x for x in kernel_profile(kernel).value("never_offered").split(";") if x)


def _flag_fields(kernel: str):
    never = _never_offered(kernel)
    for f in catalog():
        if not (f.is_flag and f.sub_lo == f.sub_hi) or f.name in never:
            continue
        if (f.leaf, f.sub_lo, f.register) in _VIRTUALIZABLE_REGS or f.name in _EXTRA_FLAGS:
            yield f


def _has(table: CpuidTable, f) -> bool | None:
    e = table.get(f.leaf, f.sub_lo)
    if e is None:
        return None
    return bool(extract_bits(e.reg(f.register), f.hi, f.lo))


def _features(guest: CpuidTable, dest: HostProfile, kernel: str, vendor: str, findings: list[Finding]) -> None:
    provider = dest.supported if dest.supported is not None else dest.cpuid
    where = (
        "KVM_GET_SUPPORTED_CPUID measured on the destination"
        if dest.supported is not None
        else "the destination CPU's own CPUID"
    )
    forced = None
    if vendor == "pvm" and dest.vendor_rewrite and dest.supported is not None:
        # the pvm module forces host features on after KVM_SET_CPUID2 that KVM_GET_SUPPORTED_CPUID does not list

        v = SimulatedVcpu(kernel=kernel, vendor=vendor, host=dest)
        try:
            v.set_cpuid(dest.supported)
            forced = v.get_cpuid()
            where += " and what the pvm module forces on"
        except KvmError:
            forced = None
    missing: list[str] = []
    synthesized: list[str] = []
    for f in _flag_fields(kernel):
        if f.name in _SKIP or f.owner == "runtime":
            continue
        if not _has(guest, f):
            continue
        if f.name in KVM_PROVIDED:
            continue
        if _has(provider, f) or (forced is not None and _has(forced, f)):
            continue
        (synthesized if f.name in KVM_SYNTHESIZED else missing).append(f.name)
    if missing:
        findings.append(
            Finding(
                "blocker",
                "feature_missing",
                missing,
                f"the guest sees {len(missing)} CPU feature(s) that {where} lacks: {', '.join(missing)}. KVM_SET_CPUID2 "
                "would still accept them (KVM never refuses unsupported bits), but a guest that has started using them "
                "meets #UD, #GP or silently different behaviour after the move. Mask them in the guest's CPU model "
                "(the common baseline of the pool) before it boots.",
            )
        )
    if synthesized:
        findings.append(
            Finding(
                "warning",
                "feature_synthesized",
                synthesized,
                f"{', '.join(synthesized)}: KVM sets these from the host kernel's state (mitigations, microcode, emulation), not from raw CPUID, so "
                f"{where} is not conclusive; compare KVM_GET_SUPPORTED_CPUID on the destination before relying on it.",
            )
        )


def _vcpu_on(dest: HostProfile, guest: CpuidTable, kernel: str, vendor: str, findings: list[Finding]):
    v = SimulatedVcpu(kernel=kernel, vendor=vendor, host=dest)
    wants_dynamic = bool(supported_xcr0(guest) & XFEATURE_MASK_XTILE_DATA)
    if wants_dynamic:
        try:
            v.grant_xfeature_permission(XFEATURE_MASK_XTILE_DATA)
            findings.append(
                Finding(
                    "info",
                    "amx_permission",
                    ["0xd.0.eax[18]"],
                    "the guest's 0xD.0 enables AMX TILEDATA, a dynamic XSAVE feature: the destination VMM must call "
                    "arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18) before creating vCPUs, or KVM_SET_CPUID2 fails with EPERM "
                    "and the incoming migration cannot be set up.",
                )
            )
        except KvmError as e:
            findings.append(
                Finding(
                    "blocker",
                    "amx_permission",
                    ["0xd.0.eax[18]"],
                    f"the guest's 0xD.0 enables AMX TILEDATA, but the destination cannot grant the permission "
                    f"({e.errno_name}: {e.explanation}); KVM_SET_CPUID2 with bit 18 would fail with EPERM.",
                )
            )
    try:
        v.set_cpuid(guest)
    except KvmError as e:
        findings.append(
            Finding(
                "blocker", "cpuid_rejected", [e.rule or ""], f"KVM on the destination refuses the guest's table: {e}"
            )
        )
        if e.errno_name != "EPERM":
            return None
        # Go on with the dynamic bits cleared so the remaining rules can still be judged.
        v = SimulatedVcpu(kernel=kernel, vendor=vendor, host=dest)
        try:
            v.set_cpuid(guest.set_field("0xd.0.eax[18]", 0))
        except KvmError:
            return None
    return v


def _xcr0(guest: CpuidTable, v, guest_xcr0: int, findings: list[Finding]) -> None:
    why = v.xcr0_violation(guest_xcr0)
    gsx = v.derived.guest_supported_xcr0
    if why:
        lost = guest_xcr0 & ~(gsx | 1)
        findings.append(
            Finding(
                "blocker",
                "xcr0_components",
                [f"xcr0[{b}]" for b in range(64) if lost >> b & 1] or ["xcr0"],
                f"the guest's XCR0 {guest_xcr0:#x} ({', '.join(mask_names(guest_xcr0))}) cannot be restored: {why}. "
                f"KVM_SET_XCRS on the destination fails with EINVAL (and KVM_SET_XSAVE refuses state for components "
                f"it does not support), so the migration fails at restore time"
                + (f"; the destination lacks {', '.join(mask_names(lost))}" if lost else "")
                + ".",
            )
        )
    else:
        findings.append(
            Finding(
                "info",
                "xcr0_components",
                ["xcr0"],
                f"the guest's XCR0 {guest_xcr0:#x} is within the destination's guest_supported_xcr0 {gsx:#x}: "
                "KVM_SET_XCRS accepts it.",
            )
        )


def _xsave(
    guest: CpuidTable, dest: HostProfile, source: HostProfile | None, guest_xcr0: int, findings: list[Finding]
) -> None:
    dest_comps = dest.xsave_components
    guest_comps = components_of(guest) or (source.xsave_components if source is not None else {})
    if not guest_comps and guest_xcr0 & ~0b11:
        findings.append(
            Finding(
                "info",
                "xsave_layout",
                ["0xd.2-63"],
                "the guest table has no 0xD component subleaves (and no --from host was given), so "
                "the XSAVE layout it was built with cannot be compared.",
            )
        )
        return
    partial = ""
    if guest_xcr0 & ~(dest.xcr0_mask | 0b11):
        guest_xcr0 &= dest.xcr0_mask | 0b11
        partial = " (components the destination has)"
    moved = []
    for bit in range(2, 64):
        if not guest_xcr0 >> bit & 1:
            continue
        g, d = guest_comps.get(bit), dest_comps.get(bit)
        if g is None or d is None:
            continue
        if (g.offset, g.size) != (d.offset, d.size):
            moved.append(f"{mask_names(1 << bit)[0]} {g.size}@{g.offset} -> {d.size}@{d.offset}")
    if moved:
        findings.append(
            Finding(
                "blocker",
                "xsave_layout",
                [
                    f"0xd.{b}"
                    for b in range(2, 64)
                    if guest_xcr0 >> b & 1
                    and guest_comps.get(b)
                    and dest_comps.get(b)
                    and (guest_comps[b].offset, guest_comps[b].size) != (dest_comps[b].offset, dest_comps[b].size)
                ],
                "the standard-format XSAVE layout differs for enabled components (" + "; ".join(moved) + "). The guest "
                "laid out and sized its XSAVE buffers (signal frames, ptrace, its own 0xD subleaves) from the source "
                "CPU, but XSAVE/XRSTOR in the guest run on the destination CPU and use its offsets: state lands in the "
                "wrong place or beyond the buffer. Offsets are CPU-reported (Intel PKRU 2688, AMD Zen 3/4 2432, "
                "Zen 2 832).",
            )
        )
    e0 = guest.get(0xD, 0)
    guest_max = e0.ecx if e0 is not None else standard_size(guest_comps, guest_xcr0)
    before = standard_size(guest_comps, guest_xcr0)
    after = standard_size(dest_comps, guest_xcr0)
    fields = ["0xd.0.ebx", "0xd.0.ecx"]
    if after > guest_max:
        findings.append(
            Finding(
                "blocker",
                "xsave_size",
                fields,
                f"for XCR0 {guest_xcr0:#x}{partial} the destination's standard XSAVE area is {after} bytes, larger than the "
                f"{guest_max} bytes the guest's 0xD.0 ECX promised (and sized its buffers for). KVM recomputes 0xD.0 EBX "
                "from the destination host's offsets, so the guest may even see EBX > ECX.",
            )
        )
    elif after != before:
        findings.append(
            Finding(
                "warning",
                "xsave_size",
                fields,
                f"for XCR0 {guest_xcr0:#x}{partial} the standard XSAVE area changes from {before} to {after} bytes (KVM computes "
                "0xD.0 EBX from the host's offsets); it still fits the guest's 0xD.0 ECX.",
            )
        )
    else:
        findings.append(
            Finding(
                "info",
                "xsave_size",
                fields,
                f"standard XSAVE area for XCR0 {guest_xcr0:#x}{partial}: {after} bytes on both sides.",
            )
        )


def _maxphyaddr(guest: CpuidTable, dest: HostProfile, vendor: str, findings: list[Finding]) -> None:
    G, H = guest_maxphyaddr(guest), dest.maxphyaddr
    tdp = dest.tdp and vendor != "pvm"
    five = host_has_five_level_tdp(dest)
    usable = usable_gpa_bits(H, tdp=tdp, five_level_tdp=five)
    fields = ["0x80000008.eax[7:0]"]
    if G > H:
        if tdp:
            findings.append(
                Finding(
                    "blocker",
                    "maxphyaddr",
                    fields,
                    f"the guest's physical address width is {G} bits, the destination host's {H}. KVM accepts the CPUID, "
                    f"but under {'NPT' if vendor == 'svm' else 'EPT'} the CPU checks guest page tables against the host "
                    f"width: any guest PTE with an address bit in {H}..{G - 1} raises #PF(RSVD) inside the guest with no "
                    f"VM exit, and KVM_SET_USER_MEMORY_REGION refuses memslots ending above 2^{H}. Firmware and the OS "
                    f"may already have placed RAM or 64-bit BARs above 2^{H}; guests have panicked after such moves. "
                    f"Keep guest phys-bits at or below the smallest host width in the pool.",
                )
            )
        else:
            findings.append(
                Finding(
                    "warning",
                    "maxphyaddr",
                    fields,
                    f"the guest's physical address width ({G}) is wider than the destination host's ({H}); with shadow "
                    "paging KVM walks guest page tables itself and allows memslots up to 52 bits, so it works, "
                    "but only as long as this host does not use TDP.",
                )
            )
    elif G < H:
        s = smaller_maxphyaddr(vendor, tdp=tdp, module_param=dest.allow_smaller_maxphyaddr)
        sev = "info" if s["available"] else "warning"
        findings.append(
            Finding(
                sev,
                "maxphyaddr",
                fields,
                f"the guest's physical address width ({G}) is narrower than the destination host's ({H}): not a "
                f"blocker. What it costs: {s['cost']} ({s['mechanism']}).",
            )
        )
    else:
        findings.append(Finding("info", "maxphyaddr", fields, f"same physical address width on both sides ({G})."))
    if G <= H and G > usable:
        findings.append(
            Finding(
                "blocker",
                "maxphyaddr",
                fields + ["0x7.0.ecx[16]"],
                f"the destination host is {H}-bit but has no 5-level EPT/NPT (no LA57; the VMX capability itself is not "
                f"in CPUID), so KVM can only map guest-physical addresses below 2^{usable}; a {G}-bit guest may place "
                "memory above that (Sierra Forest guests hung this way until firmware honoured GuestPhysBits, which "
                "KVM reports since 6.10).",
            )
        )
    elif G > 48 and five and dest.vendor == "AuthenticAMD" and tdp:
        findings.append(
            Finding(
                "info",
                "maxphyaddr",
                fields,
                "on AMD, KVM uses 5-level NPT only when the host kernel itself runs with 5-level paging; check that, "
                "or the destination can map only 48-bit guest-physical addresses.",
            )
        )
    gpb = guest_phys_bits_field(guest)
    if gpb and gpb > usable:
        findings.append(
            Finding(
                "warning",
                "guest_phys_bits",
                ["0x80000008.eax[23:16]"],
                f"the guest's GuestPhysBits is {gpb}: its firmware may have placed memory or BARs up to 2^{gpb}, but "
                f"the destination can map only {usable}-bit guest-physical addresses.",
            )
        )


def _linear(guest: CpuidTable, dest: HostProfile, findings: list[Finding]) -> None:
    g = guest_linear_bits(guest)
    g57 = has_la57(guest)
    h57 = has_la57(dest.cpuid)
    if g57 and not h57:
        findings.append(
            Finding(
                "blocker",
                "linear_width",
                ["0x7.0.ecx[16]", "0x80000008.eax[15:8]"],
                "the guest has LA57 (57-bit linear addresses, 5-level paging) and the destination CPU does not: a guest "
                "running with CR4.LA57=1 cannot continue there (KVM refuses CR4.LA57 without host support).",
            )
        )
    elif g > dest.linear_bits:
        findings.append(
            Finding(
                "warning",
                "linear_width",
                ["0x80000008.eax[15:8]"],
                f"the guest is told of {g}-bit linear addresses, the destination supports {dest.linear_bits}.",
            )
        )


def _sgx(guest: CpuidTable, v, findings: list[Finding]) -> None:
    f = sgx_fields(guest)
    if not f["sgx"] or f["xfrm"] is None:
        return
    gsx = v.derived.guest_supported_xcr0
    extra = f["xfrm"] & ~(gsx | XFEATURE_MASK_FPSSE)
    if not extra:
        return
    k = v.kernel_profile
    if k.value("sgx_xfrm_adjust") != "none":
        how = (
            f"kernel {k.name} trims 0x12.1 to guest_supported_xcr0 | FP | SSE at KVM_SET_CPUID2, so the guest's "
            "allowed XFRM shrinks under it after the move"
        )
    elif k.flag("sgx_ecreate_xfrm_check"):
        how = (
            f"kernel {k.name} stores 0x12.1 as given but its ECREATE emulation injects #GP for an enclave whose "
            "XFRM uses them"
        )
    else:
        how = "enclaves requesting them cannot be entered (XFRM must be within XCR0 at EENTER)"
    findings.append(
        Finding(
            "warning",
            "sgx_xfrm",
            ["0x12.1.ecx", "0x12.1.edx"],
            f"the guest's SGX allowed XFRM {f['xfrm']:#x} includes components {extra:#x} the destination does not "
            f"support in XCR0; {how}.",
        )
    )


def migrate(
    guest: CpuidTable,
    dest: HostProfile | str,
    *,
    source: HostProfile | str | None = None,
    kernel: str = DEFAULT_KERNEL,
    vendor: str | None = None,
    guest_xcr0: int | None = None,
    guest_name: str | None = None,
) -> MigrationReport:
    """Compare a guest's CPUID with a destination host.

    ``guest_xcr0`` is the XCR0 the guest runs with; by default the guest's
    0xD.0 mask limited to what KVM can offer at all (on ``source`` when given),
    i.e. what an OS enables.  ``vendor`` defaults to the destination's
    (``vmx`` for Intel, ``svm`` for AMD, the measured module for a live host).
    """

    dest = resolve_host(dest)
    src = resolve_host(source) if source is not None else None
    vendor = dest.vendor_for(vendor)
    kp = kernel_profile(kernel)
    report = MigrationReport(
        guest=guest_name or guest.source or "guest", destination=dest.name, kernel=kp.name, vendor=vendor
    )
    findings = report.findings
    if guest_xcr0 is None:
        limit = src.kvm_supported_xcr0(src.vendor_for(None)) if src is not None else KVM_SUPPORTED_XCR0
        guest_xcr0 = (supported_xcr0(guest) & limit) | 1
    if guest.vendor and dest.vendor and guest.vendor != dest.vendor:
        findings.append(
            Finding(
                "warning",
                "vendor",
                ["0x0.ebx", "0x0.ecx", "0x0.edx"],
                f"the guest's vendor string is {guest.vendor}, the destination CPU is {dest.vendor}. KVM does not "
                "refuse it, but guests pick vendor-specific code paths at boot (SYSENTER/SYSCALL in compatibility mode, "
                "MSRs, errata, mitigations); cross-vendor live migration is not something VMMs support.",
            )
        )
    _features(guest, dest, kp.name, vendor, findings)
    v = _vcpu_on(dest, guest, kp.name, vendor, findings)
    if v is not None:
        _xcr0(guest, v, guest_xcr0, findings)
        _sgx(guest, v, findings)
    _xsave(guest, dest, src, guest_xcr0, findings)
    _maxphyaddr(guest, dest, vendor, findings)
    _linear(guest, dest, findings)
    return report
