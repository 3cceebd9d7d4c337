"""The vCPU half of XSAVE: the XCR0 rules a guest meets, AMX permission and SGX XFRM.

XCR0
    :func:`xsetbv` is a guest ``XSETBV`` (``kvm_emulate_xsetbv``: #UD when
    CR4.OSXSAVE=0, raised by the CPU before the intercept; #GP when CPL>0 or the
    XCR number is not 0; #GP on a rule) and :func:`set_xcrs` is ``KVM_SET_XCRS``
    (``kvm_vcpu_ioctl_x86_set_xcrs``: EINVAL on the header checks; only the first
    XCR0 entry counts).  Both call the model's own ``__kvm_set_xcr``
    (:meth:`cpuidkit.kvm.vcpu.SimulatedVcpu.xcr0_violation`): the rules live in
    one place.  :func:`accept_set` lists every XCR0 value a table allows.

AMX and SGX
    :func:`amx_report` (TILECFG/TILEDATA, dynamic-feature permission, IA32_XFD)
    and :func:`sgx_ecreate` (KVM's ECREATE checks, which changed in 6.4).

The arithmetic (components, sizes, layouts, masks) is :mod:`cpuidkit.core.xsave`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from cpuidkit.core.bits import U64, set_bits
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import (
    KVM_MAX_XCRS,
    XCR_XFEATURE_ENABLED_MASK,
    XFEATURE_MASK_FP,
    XFEATURE_MASK_FPSSE,
    XFEATURE_MASK_XTILE,
    XFEATURE_MASK_XTILE_CFG,
    XFEATURE_MASK_XTILE_DATA,
    compacted_size,
    component_table,
    mask_names,
    standard_size,
    supported_xcr0,
)
from cpuidkit.errors import InputError, KvmError
from cpuidkit.kvm.interface import CR4_OSXSAVE
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.vendors import vendor_cr4_valid

# -- XCR0: guest XSETBV and KVM_SET_XCRS ----------------------------------------------------

OK, UD, GP, EINVAL = "ok", "#UD", "#GP", "EINVAL"

# Where each check lives (arch/x86/kvm/x86.c unless noted; read in 5.10.0, 6.12.117 and 6.18.2)
XCR_SOURCES = {
    "xsetbv_cr4_osxsave": "CPU: XSETBV with CR4.OSXSAVE=0 raises #UD before any VM exit (kvm_emulate_xsetbv comment; "
    "the emulator's em_xsetbv checks it explicitly)",
    "xsetbv_cpl": "arch/x86/kvm/x86.c kvm_emulate_xsetbv() (kvm_set_xcr() in 5.10): CPL != 0 -> #GP(0)",
    "xsetbv_xcr_index": "arch/x86/kvm/x86.c __kvm_set_xcr(): only XCR0 (ECX = 0) exists -> #GP(0)",
    "set_xcrs_protected_state": "arch/x86/kvm/x86.c kvm_vcpu_ioctl_x86_set_xcrs(): VMs with protected state "
    "(SEV-ES/SNP, TDX) -> EINVAL (absent in 5.10)",
    "set_xcrs_no_host_xsave": "arch/x86/kvm/x86.c kvm_vcpu_ioctl_x86_set_xcrs(): host without XSAVE -> EINVAL",
    "set_xcrs_header": "arch/x86/kvm/x86.c kvm_vcpu_ioctl_x86_set_xcrs(): nr_xcrs > KVM_MAX_XCRS (16) or flags != 0 "
    "-> EINVAL",
    "set_xcrs_no_xcr0_entry": "arch/x86/kvm/x86.c kvm_vcpu_ioctl_x86_set_xcrs(): only entries with xcr == 0 are "
    "processed (the first one); none at all returns 0 and changes nothing",
}


@dataclass(frozen=True)
class XcrResult:
    """The outcome of one XSETBV or KVM_SET_XCRS in the model."""

    outcome: str  # "ok", "#UD", "#GP" (XSETBV) or "ok", "EINVAL" (KVM_SET_XCRS)
    rule: str | None  # None when it succeeded
    explanation: str
    source: str

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "rule": self.rule, "explanation": self.explanation, "source": self.source}


def _xcr0_rule_source(vcpu: SimulatedVcpu) -> str:
    return vcpu.kernel_profile.source("xcr0_rules")


def _osxsave_settable(vcpu: SimulatedVcpu) -> bool:
    """Whether this vCPU can have CR4.OSXSAVE=1 at all (CPUID-derived or the vendor module's fixed mask)."""

    verdict = vendor_cr4_valid(vcpu.vendor, CR4_OSXSAVE, vcpu.host)
    if verdict is not None:
        return verdict
    return not vcpu.derived.cr4_reserved_bits & CR4_OSXSAVE


def _xsetbv_check(vcpu: SimulatedVcpu, value: int, index: int, cr4_osxsave: bool, cpl: int) -> XcrResult:
    if cr4_osxsave and not _osxsave_settable(vcpu):
        return XcrResult(
            UD,
            "xsetbv_cr4_osxsave",
            "CR4.OSXSAVE cannot be 1 for this vCPU (guest CPUID has no XSAVE, or the vendor module's CR4 "
            "mask refuses it), so XSETBV always raises #UD",
            XCR_SOURCES["xsetbv_cr4_osxsave"],
        )
    if not cr4_osxsave:
        return XcrResult(
            UD,
            "xsetbv_cr4_osxsave",
            f"CR4.OSXSAVE (bit {CR4_OSXSAVE.bit_length() - 1}) is 0: XSETBV raises #UD in the CPU before any VM exit",
            XCR_SOURCES["xsetbv_cr4_osxsave"],
        )
    if cpl != 0:
        return XcrResult(
            GP,
            "xsetbv_cpl",
            f"XSETBV at CPL {cpl}: KVM injects #GP(0) (only CPL 0 may write XCRs)",
            XCR_SOURCES["xsetbv_cpl"],
        )
    if index != XCR_XFEATURE_ENABLED_MASK:
        return XcrResult(
            GP,
            "xsetbv_xcr_index",
            f"XSETBV with ECX={index}: KVM supports only XCR0, #GP(0)",
            XCR_SOURCES["xsetbv_xcr_index"],
        )
    why = vcpu.xcr0_violation(value)
    if why:
        return XcrResult(
            GP, "xcr0_rules", why + "; KVM injects #GP(0) and does not advance RIP", _xcr0_rule_source(vcpu)
        )
    return XcrResult(OK, None, f"XCR0 := {value:#x}", _xcr0_rule_source(vcpu))


def xsetbv(
    vcpu: SimulatedVcpu,
    value: int,
    *,
    index: int = 0,
    cr4_osxsave: bool | None = None,
    cpl: int = 0,
    apply: bool = True,
) -> XcrResult:
    """A guest ``XSETBV`` with ECX=``index``, EDX:EAX=``value`` on a simulated vCPU.

    ``cr4_osxsave=None`` uses the vCPU's own CR4 (0 after reset: XSETBV then
    raises #UD).  Fault order as in KVM: #UD (CR4.OSXSAVE=0, from the CPU),
    then #GP for CPL>0, then #GP for ECX≠0 or an XCR0 rule.  On success, and
    with ``apply``, XCR0 is written through the model (which triggers KVM's
    runtime update of 0xD.0/0xD.1 EBX).
    """

    if cr4_osxsave is None:
        cr4_osxsave = bool(vcpu.state.cr4 & CR4_OSXSAVE)
    r = _xsetbv_check(vcpu, value, index, cr4_osxsave, cpl)
    if r.ok and apply:
        vcpu.set_xcr0(value)
    return r


def set_xcrs(
    vcpu: SimulatedVcpu,
    xcrs: Iterable[tuple[int, int]],
    *,
    flags: int = 0,
    nr_xcrs: int | None = None,
    protected_state: bool = False,
    apply: bool = True,
) -> XcrResult:
    """``KVM_SET_XCRS`` with ``xcrs`` = [(xcr number, value), ...] on a simulated vCPU.

    ``nr_xcrs`` defaults to the number of entries given; entries past those
    are zero (xcr 0, value 0), as in a zero-initialised ``struct kvm_xcrs``.
    CR4.OSXSAVE and CPL are not checked on this path.
    """
    entries = list(xcrs)
    nr = len(entries) if nr_xcrs is None else nr_xcrs
    if protected_state:
        return XcrResult(
            EINVAL,
            "set_xcrs_protected_state",
            "the VM's register state is protected",
            XCR_SOURCES["set_xcrs_protected_state"],
        )
    if not vcpu.host.has_xsave:
        return XcrResult(
            EINVAL, "set_xcrs_no_host_xsave", "the host CPU has no XSAVE", XCR_SOURCES["set_xcrs_no_host_xsave"]
        )
    if nr > KVM_MAX_XCRS or nr < 0 or flags:
        why = f"flags is {flags:#x} (must be 0)" if flags else f"nr_xcrs is {nr} (at most {KVM_MAX_XCRS})"
        return XcrResult(EINVAL, "set_xcrs_header", why, XCR_SOURCES["set_xcrs_header"])
    entries = (entries + [(0, 0)] * KVM_MAX_XCRS)[:nr]
    for xcr, value in entries:
        if xcr != XCR_XFEATURE_ENABLED_MASK:
            continue
        violation = vcpu.xcr0_violation(value)
        if violation:
            return XcrResult(EINVAL, "xcr0_rules", violation, _xcr0_rule_source(vcpu))
        if apply:
            vcpu.set_xcr0(value)
        return XcrResult(OK, None, f"XCR0 := {value:#x}", _xcr0_rule_source(vcpu))
    return XcrResult(
        OK,
        None,
        "no entry for XCR0: nothing is changed (other XCR numbers are ignored)",
        XCR_SOURCES["set_xcrs_no_xcr0_entry"],
    )


def evaluate_xcr0(vcpu: SimulatedVcpu, value: int, *, cr4_osxsave: bool = True, cpl: int = 0, index: int = 0) -> dict:
    """One XCR0 value through both paths, without changing the vCPU; with the area sizes it would give.

    Sizes come from the **host's** 0xD subleaves (as KVM computes 0xD.0/0xD.1
    EBX); the compacted size counts the current IA32_XSS where the kernel
    does (6.18+) and honours the 64-byte alignment where it does (5.17+).
    """
    k = vcpu.kernel_profile
    gx = xsetbv(vcpu, value, index=index, cr4_osxsave=cr4_osxsave, cpl=cpl, apply=False)
    sx = set_xcrs(vcpu, [(0, value)], apply=False)
    comps = vcpu.host.xsave_components
    xss = vcpu.state.xss if k.flag("xss_in_0xd1_ebx") else 0
    if not sx.ok:
        rule, explanation = sx.rule, sx.explanation
    elif not gx.ok:
        rule, explanation = gx.rule, gx.explanation
    else:
        rule, explanation = None, sx.explanation
    return {
        "value": value,
        "xsetbv": gx.outcome,
        "set_xcrs": sx.outcome,
        "rule": rule,
        "xsetbv_rule": gx.rule,
        "explanation": explanation,
        "components": mask_names(value),
        "standard_size": standard_size(comps, value),
        "compacted_size": compacted_size(comps, value | xss, honour_alignment=k.flag("xstate_compacted_alignment")),
        "guest_supported_xcr0": vcpu.derived.guest_supported_xcr0,
    }


MAX_ACCEPT_SET_BITS = 20


def accept_set(vcpu: SimulatedVcpu, over: int | None = None) -> list[int]:
    """Every value over the bits of ``over`` that KVM_SET_XCRS (and a CPL-0 XSETBV with CR4.OSXSAVE=1) accepts.

    The default ``over`` is ``guest_supported_xcr0 | FP``: a value with any
    other bit is always refused, so this is the complete accept set.
    """

    if over is None:
        over = vcpu.derived.guest_supported_xcr0 | XFEATURE_MASK_FP
    bits = list(set_bits(over))
    if len(bits) > MAX_ACCEPT_SET_BITS:
        raise InputError(f"{len(bits)} bits would mean 2^{len(bits)} values; give at most {MAX_ACCEPT_SET_BITS}")
    out = []
    for combo in itertools.product((0, 1), repeat=len(bits)):
        value = sum(1 << b for b, on in zip(bits, combo) if on)
        if vcpu.xcr0_violation(value) is None:
            out.append(value)
    return sorted(out)


def values_over(mask: int) -> list[int]:
    """All 2^n values whose set bits lie within ``mask`` (ascending)."""
    bits = list(set_bits(mask))
    return sorted(
        sum(1 << b for b, on in zip(bits, combo) if on) for combo in itertools.product((0, 1), repeat=len(bits))
    )


# -- AMX ------------------------------------------------------------------------------------

IA32_XFD, IA32_XFD_ERR = 0x1C4, 0x1C5


def amx_report(
    host: HostProfile | str | None = None,
    kernel: str = DEFAULT_KERNEL,
    vendor: str = "vmx",
    table: CpuidTable | None = None,
) -> dict:
    """What a guest with AMX meets on ``host``: components, permission, KVM_SET_CPUID2, XCR0, XFD.

    ``table`` is the guest CPUID (default: the host's own, i.e. host-passthrough).
    The KVM_SET_CPUID2 outcomes are the model's, with and without
    ``arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)``.
    """

    host = HostProfile.resolve(host)
    guest = table if table is not None else host.cpuid
    info = component_table()
    comps = host.xsave_components
    cfg, data = comps.get(17), comps.get(18)

    def _set(perm: bool) -> dict:
        v = SimulatedVcpu(kernel=kernel, vendor=vendor, host=host)
        if perm:
            try:
                v.grant_xfeature_permission(XFEATURE_MASK_XTILE_DATA)
            except KvmError as e:
                return {
                    "permission": e.errno_name,
                    "set_cpuid": None,
                    "explanation": e.explanation,
                    "guest_supported_xcr0": None,
                }
        try:
            v.set_cpuid(guest)
        except KvmError as e:
            return {
                "permission": "granted" if perm else "not requested",
                "set_cpuid": e.errno_name,
                "explanation": e.explanation,
                "guest_supported_xcr0": None,
            }
        gsx = v.derived.guest_supported_xcr0
        pair = {
            hex(x): evaluate_xcr0(v, x)["xsetbv"]
            for x in (0x7 | XFEATURE_MASK_XTILE, 0x7 | XFEATURE_MASK_XTILE_CFG, 0x7 | XFEATURE_MASK_XTILE_DATA)
        }
        return {
            "permission": "granted" if perm else "not requested",
            "set_cpuid": "ok",
            "guest_supported_xcr0": gsx,
            "xsetbv": pair,
            "ia32_xfd_allowed": gsx & XFEATURE_MASK_XTILE_DATA,
        }

    return {
        "host": host.name,
        "kernel": kernel,
        "vendor": vendor,
        "host_has_amx": bool(host.xcr0_mask & XFEATURE_MASK_XTILE == XFEATURE_MASK_XTILE),
        "guest_0xd0_has_tiledata": bool(supported_xcr0(guest) & XFEATURE_MASK_XTILE_DATA),
        "components": {
            "amx_tilecfg": {
                "bit": 17,
                "size": cfg.size if cfg else info[17].size,
                "offset": cfg.offset if cfg else info[17].std_offset,
                "xfd": bool(cfg and cfg.xfd),
                "reported_by_host": cfg is not None,
            },
            "amx_tiledata": {
                "bit": 18,
                "size": data.size if data else info[18].size,
                "offset": data.offset if data else info[18].std_offset,
                "xfd": bool(data.xfd) if data else True,
                "reported_by_host": data is not None,
            },
        },
        "rules": [
            "XCR0 bits 17 (TILECFG) and 18 (TILEDATA) must be set together (__kvm_set_xcr, since 5.17); "
            "either alone gives #GP on XSETBV and EINVAL on KVM_SET_XCRS",
            "TILEDATA is the only dynamic (XFD-capable) user feature: a VMM must call "
            "arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18) before creating its first vCPU, or KVM_SET_CPUID2 with "
            "0xD.0 EAX bit 18 fails with EPERM (kvm_check_cpuid -> fpu_enable_guest_xfd_features, since 5.17); "
            "bit 17 alone passes that check",
            "the permission can only be granted if the host kernel supports the feature (EOPNOTSUPP otherwise), "
            "and is per process",
            f"IA32_XFD (MSR {IA32_XFD:#x}) accepts only guest_supported_xcr0 & TILEDATA and needs CPUID XFD "
            "(0xD.1 EAX[4]); with TILEDATA armed in XFD, the first instruction touching tile data raises #NM "
            f"and records the bit in IA32_XFD_ERR (MSR {IA32_XFD_ERR:#x})",
            "TILEDATA is 8192 bytes at standard offset 2816 (8 tiles x 16 rows x 64 bytes; KVM's amx_test asserts "
            "both), 64-byte aligned in the compacted format",
        ],
        "without_permission": _set(False),
        "with_permission": _set(True),
    }


# -- SGX ------------------------------------------------------------------------------------

SGX_ATTR_DEBUG, SGX_ATTR_MODE64BIT, SGX_ATTR_PROVISIONKEY = 1 << 1, 1 << 2, 1 << 4


def sgx_fields(table: CpuidTable) -> dict:
    """The SGX fields of a table: 7.0 EBX.SGX, 0x12.0 (SGX1/2, MISCSELECT, max enclave sizes), 0x12.1 (ATTRIBUTES, XFRM)."""
    e7 = table.get(7, 0)
    s0, s1 = table.get(0x12, 0), table.get(0x12, 1)
    return {
        "sgx": bool(e7 and e7.ebx >> 2 & 1),
        "sgx_lc": bool(e7 and e7.ecx >> 30 & 1),
        "sgx1": bool(s0 and s0.eax & 1),
        "sgx2": bool(s0 and s0.eax >> 1 & 1),
        "miscselect": None if s0 is None else s0.ebx,
        "max_enclave_size_32_log2": None if s0 is None else s0.edx & 0xFF,
        "max_enclave_size_64_log2": None if s0 is None else s0.edx >> 8 & 0xFF,
        "attributes": None if s1 is None else s1.eax | s1.ebx << 32,
        "xfrm": None if s1 is None else s1.ecx | s1.edx << 32,
        "leaf_0x12_0": s0 is not None,
        "leaf_0x12_1": s1 is not None,
    }


@dataclass(frozen=True)
class EcreateResult:
    """What a guest ENCLS[ECREATE] meets."""

    outcome: str  # "ok", "#UD", "#GP", "emulation-failure" (exit to userspace)
    by: str  # "kvm" (intercepted and checked by KVM), "cpu" (the ECREATE instruction itself), "none"
    intercepted: bool | None
    rule: str | None
    explanation: str
    source: str

    def as_dict(self) -> dict:
        return {
            "outcome": self.outcome,
            "by": self.by,
            "intercepted": self.intercepted,
            "rule": self.rule,
            "explanation": self.explanation,
            "source": self.source,
        }


_SGX_SRC = "arch/x86/kvm/vmx/sgx.c"


def _sgx_intercepts_ecreate(guest: CpuidTable, host_cpuid: CpuidTable, provisioning_allowed: bool) -> bool:
    """``sgx_intercept_encls_ecreate``: KVM intercepts ECREATE unless guest 0x12 equals the hardware's."""
    if not provisioning_allowed:
        return True
    g0, h0 = guest.get(0x12, 0), host_cpuid.get(0x12, 0)
    if g0 is None or h0 is None or (g0.ebx, g0.edx) != (h0.ebx, h0.edx):
        return True
    g1, h1 = guest.get(0x12, 1), host_cpuid.get(0x12, 1)
    if g1 is None or h1 is None or (g1.eax, g1.ebx, g1.ecx, g1.edx) != (h1.eax, h1.ebx, h1.ecx, h1.edx):
        return True
    return False


def sgx_ecreate(
    vcpu: SimulatedVcpu,
    xfrm: int,
    *,
    attributes: int = SGX_ATTR_MODE64BIT,
    miscselect: int = 0,
    size: int = 1 << 20,
    provisioning_allowed: bool = False,
    bios_enabled: bool = True,
    paging: bool = True,
) -> EcreateResult:
    """A guest ENCLS[ECREATE] for an enclave with this SECS (XFRM, ATTRIBUTES, MISCSELECT, size).

    Uses the vCPU's **stored** CPUID (so 5.13–6.3's trimming of 0x12.1 is in
    effect) and the kernel profile's ``sgx_ecreate_xfrm_check`` (6.4+: XFRM
    must also lie within guest_supported_xcr0 | FP | SSE and contain FP and
    SSE).  ``provisioning_allowed`` is KVM_CAP_SGX_ATTRIBUTE for the
    provisioning key.  Checks by the ECREATE instruction itself after KVM's
    (or without interception) are modelled against the host's 0x12.1.
    """
    k = vcpu.kernel_profile
    if vcpu.vendor != "vmx" or not k.flag("sgx_virtualized"):
        why = (
            "SGX is virtualized only by kvm_intel"
            if vcpu.vendor != "vmx"
            else f"KVM {k.name} has no SGX virtualization (vmx/sgx.c arrives in 5.13)"
        )
        return EcreateResult(
            UD, "kvm", None, "sgx_not_virtualized", f"ENCLS raises #UD: {why}", f"{_SGX_SRC} handle_encls()"
        )
    stored = vcpu.get_cpuid()
    f = sgx_fields(stored)
    if not sgx_fields(vcpu.host.cpuid)["sgx"]:
        return EcreateResult(
            UD,
            "kvm",
            None,
            "sgx_cpuid",
            "the host has no SGX, so KVM cannot offer it (enable_sgx is off): ENCLS raises #UD",
            f"{_SGX_SRC} handle_encls()",
        )
    if not (f["sgx"] and f["sgx1"]):
        return EcreateResult(
            UD,
            "kvm",
            None,
            "sgx_cpuid",
            "guest CPUID lacks SGX (7.0 EBX[2]) or SGX1 (0x12.0 EAX[0]): ENCLS raises #UD",
            f"{_SGX_SRC} handle_encls()",
        )
    if not bios_enabled or not paging:
        why = "SGX is not enabled by the guest BIOS (IA32_FEATURE_CONTROL)" if not bios_enabled else "paging is off"
        return EcreateResult(
            GP, "kvm", None, "sgx_disabled", f"ENCLS raises #GP(0): {why}", f"{_SGX_SRC} handle_encls()"
        )
    host = vcpu.host.cpuid
    intercepted = _sgx_intercepts_ecreate(stored, host, provisioning_allowed)
    src = f"{_SGX_SRC} __handle_encls_ecreate(), kernel {k.name}"
    if intercepted:
        if not (f["leaf_0x12_0"] and f["leaf_0x12_1"]):
            return EcreateResult(
                "emulation-failure",
                "kvm",
                True,
                "sgx_leaf_missing",
                "guest CPUID has no 0x12.0 or 0x12.1 entry: KVM exits to userspace with an emulation failure",
                src,
            )
        if not provisioning_allowed and attributes & SGX_ATTR_PROVISIONKEY:
            return EcreateResult(
                GP,
                "kvm",
                True,
                "sgx_provisionkey",
                "ATTRIBUTES requests PROVISIONKEY, which this VM may not use: #GP(0)",
                src,
            )
        g0, g1 = stored.get(0x12, 0), stored.get(0x12, 1)
        assert g0 is not None and g1 is not None  # f["leaf_0x12_0"] and f["leaf_0x12_1"] checked above
        allowed_xfrm = g1.ecx | g1.edx << 32
        if miscselect & ~g0.ebx & 0xFFFFFFFF:
            return EcreateResult(
                GP,
                "kvm",
                True,
                "sgx_miscselect",
                f"MISCSELECT {miscselect:#x} is not within 0x12.0 EBX {g0.ebx:#x}: #GP(0)",
                src,
            )
        if attributes & ~(g1.eax | g1.ebx << 32) & U64:
            return EcreateResult(
                GP,
                "kvm",
                True,
                "sgx_attributes",
                f"ATTRIBUTES {attributes:#x} not within 0x12.1 EBX:EAX {g1.eax | g1.ebx << 32:#x}: #GP(0)",
                src,
            )
        if xfrm & ~allowed_xfrm & U64:
            trimmed = k.value("sgx_xfrm_adjust") != "none"
            note = (
                " (KVM trimmed 0x12.1 to the guest-supported XCR0 with FP|SSE at KVM_SET_CPUID2)"
                if trimmed
                else " (stored as userspace gave it)"
            )
            return EcreateResult(
                GP,
                "kvm",
                True,
                "sgx_xfrm_cpuid",
                f"XFRM {xfrm:#x} is not within 0x12.1 EDX:ECX {allowed_xfrm:#x}{note}: #GP(0)",
                src,
            )
        if k.flag("sgx_ecreate_xfrm_check"):
            gsx = vcpu.derived.guest_supported_xcr0
            if xfrm & ~(gsx | XFEATURE_MASK_FPSSE):
                return EcreateResult(
                    GP,
                    "kvm",
                    True,
                    "sgx_ecreate_xfrm_check",
                    f"XFRM {xfrm:#x} has bits {xfrm & ~(gsx | XFEATURE_MASK_FPSSE):#x} outside "
                    f"guest_supported_xcr0 | FP | SSE ({gsx | XFEATURE_MASK_FPSSE:#x}): #GP(0) "
                    "(check added in 6.4 by ad45413d22e6)",
                    k.source("sgx_ecreate_xfrm_check"),
                )
            if xfrm & XFEATURE_MASK_FPSSE != XFEATURE_MASK_FPSSE:
                return EcreateResult(
                    GP,
                    "kvm",
                    True,
                    "sgx_ecreate_xfrm_check",
                    f"XFRM {xfrm:#x} lacks FP or SSE, which every enclave needs: #GP(0)",
                    k.source("sgx_ecreate_xfrm_check"),
                )
        log2 = (g0.edx >> 8 & 0xFF) if attributes & SGX_ATTR_MODE64BIT else g0.edx & 0xFF
        if size >= 1 << log2:
            return EcreateResult(
                GP, "kvm", True, "sgx_size", f"enclave size {size:#x} is not below 2^{log2} (0x12.0 EDX): #GP(0)", src
            )
    # The ECREATE instruction itself (run by KVM after its checks, or directly by the guest)
    h1 = host.get(0x12, 1)
    hw_xfrm = None if h1 is None else h1.ecx | h1.edx << 32
    if xfrm & XFEATURE_MASK_FPSSE != XFEATURE_MASK_FPSSE:
        return EcreateResult(
            GP,
            "cpu",
            intercepted,
            "ecreate_xfrm_fpsse",
            f"XFRM {xfrm:#x} lacks FP or SSE: the ECREATE instruction raises #GP(0)"
            + (" (KVM passes the fault on)" if intercepted else ""),
            "Intel SDM ECREATE",
        )
    if hw_xfrm and xfrm & ~hw_xfrm:
        return EcreateResult(
            GP,
            "cpu",
            intercepted,
            "ecreate_xfrm_hardware",
            f"XFRM {xfrm:#x} is outside the CPU's own allowed XFRM {hw_xfrm:#x}: the ECREATE instruction raises #GP(0)",
            "Intel SDM ECREATE",
        )
    where = (
        "KVM's checks passed; the enclave is created"
        if intercepted
        else "not intercepted (guest 0x12 equals the hardware's and provisioning is allowed): the CPU runs ECREATE"
    )
    note = ""
    if xfrm & ~(vcpu.derived.guest_supported_xcr0 | XFEATURE_MASK_FPSSE):
        note = (
            "; XFRM asks for state outside the guest's XCR0 support, so EENTER will #GP unless XCR0 covers it "
            "(the CPU requires XFRM within XCR0 at EENTER)"
        )
    return EcreateResult(OK, "kvm" if intercepted else "cpu", intercepted, None, where + note, src)
