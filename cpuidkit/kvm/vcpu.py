"""SimulatedVcpu: a pure-Python model of what KVM does with guest CPUID.

Every call behaves as the modelled kernel version, vendor module and host
would: the same errno on failure (as :class:`cpuidkit.KvmError` carrying the
rule id, an explanation and the kernel source), the same stored table, the
same runtime rewrites.  Facts come from ``data/kvm-behaviours.csv`` through
:class:`KernelProfile`; nothing version-dependent is hard-coded here.
"""

from __future__ import annotations

import functools

from cpuidkit.core.addresses import linear_width_of
from cpuidkit.core.hosts import XFEATURE_MASK_XTILE_DATA, HostProfile, check_vendor
from cpuidkit.core.kernels import DEFAULT_KERNEL, KernelProfile, kernel_profile
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import InputError, KvmError
from cpuidkit.kvm.interface import (
    CR4_OSXSAVE,
    CR4_PKE,
    MSR_IA32_APICBASE,
    MSR_IA32_MISC_ENABLE,
    MSR_IA32_XSS,
    QUIRKS,
)
from cpuidkit.kvm.runtime import (
    APICBASE_ENABLE,
    MISC_ENABLE_MWAIT,
    Derived,
    VcpuState,
    _find,
    apply_pv_unhalt,
    apply_runtime,
    apply_sgx_xfrm_adjust,
    derive,
    reserved_gpa_bits,
)
from cpuidkit.kvm.vendors import (
    vendor_after_set,
    vendor_cr4_valid,
    vendor_mwait_checked,
    vendor_runtime,
    vendor_xss_accepted,
)

__all__ = ["SimulatedVcpu"]

XCR0_FP, XCR0_SSE, XCR0_YMM = 1, 2, 4
XCR0_MPX = 0b11 << 3
XCR0_AVX512 = 0b111 << 5
XCR0_XTILE = 0b11 << 17
XFEATURE_MASK_EXTEND = ~0b11 & ((1 << 64) - 1)
MAX_MSR_INDEX = 0xFFFF_FFFF
MAX_GET_CPUID2_NENT = 4096  # the largest buffer get_cpuid2_nent() asks with (LabVcpu allocates it)
HLT_IN_GUEST = {  # run_with_hlt_exits_disabled: what the probe guest's hlt does once HLT exits are off
    "resumes_after_hlt": (
        "EIO",
        "HLT exits were disabled before the vCPU was created, so the vendor module does not intercept "
        "the guest's hlt: the guest sleeps until a host interrupt, and on SVM (no HLT activity state in the "
        "VMCB) resumes after the hlt and runs into the zero bytes behind it, which end in KVM_EXIT_IO "
        "(in port 0), not KVM_EXIT_HLT",
    ),
    "stays_halted": (
        "ETIMEDOUT",
        "HLT exits were disabled before the vCPU was created, so the vendor module does not intercept "
        "the guest's hlt: VMX keeps the guest in its HLT activity state until KVM injects an event "
        "(vmx_clear_hlt), none comes, and KVM_RUN never returns KVM_EXIT_HLT",
    ),
}


@functools.lru_cache(maxsize=256)
def _empty_derived(host: HostProfile, kernel: KernelProfile, vendor: str) -> Derived:
    """What a fresh vCPU derives from its empty CPUID (MAXPHYADDR 36, no XCR0 beyond FP…)."""
    return derive(CpuidTable(), host, kernel, vendor, before_set=True)


class SimulatedVcpu:
    """The model behind the ``Vcpu`` interface (see ``cpuidkit.kvm.interface``)."""

    def __init__(
        self, kernel: str | KernelProfile = DEFAULT_KERNEL, vendor: str = "vmx", host: HostProfile | str | None = None
    ):
        check_vendor(vendor)
        self.kernel_profile = kernel if isinstance(kernel, KernelProfile) else kernel_profile(kernel)
        self.kernel = self.kernel_profile.name
        self.vendor = vendor
        self.host = HostProfile.resolve(host)
        self.state = VcpuState()
        self.state.misc_enable = self.host.reset_misc_enable
        self._stored = CpuidTable()
        self._dirty = False  # lazy runtime updates (6.15+): a trigger happened since the last refresh
        self.has_run = False
        self._vcpu_created = False
        # KVM_CAP_X86_DISABLE_EXITS(HLT) before the vCPU existed: the vendor module then set the vCPU up
        # without a HLT intercept (svm init_vmcb, vmx exec controls are fixed at vCPU creation)
        self._hlt_in_guest = False
        self.xfeature_perm = self.host.default_guest_perm()
        self.derived: Derived = _empty_derived(self.host, self.kernel_profile, vendor)
        self.closed = False

    def __repr__(self) -> str:
        return f"SimulatedVcpu(kernel={self.kernel!r}, vendor={self.vendor!r}, host={self.host.name!r})"

    # context manager, like LiveVcpu
    def __enter__(self) -> SimulatedVcpu:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.closed = True

    # -- helpers -------------------------------------------------------------
    def _err(self, errno_name: str, rule: str, explanation: str, operation: str) -> KvmError:
        return KvmError(
            errno_name, explanation, rule=rule, source=self.kernel_profile.source(rule), operation=operation
        )

    def _check_open(self, operation: str) -> None:
        """Refuse any call after close(), as LiveVcpu does (same class, errno and wording)."""
        if self.closed:
            raise KvmError("EBADF", "this SimulatedVcpu is closed; create a new one", operation=operation)

    def _vcpu(self, operation: str) -> None:
        self._check_open(operation)
        self._vcpu_created = True

    @staticmethod
    def _check_msr(index: int, value: int | None = None) -> None:
        """MSR indices are 32-bit and values 64-bit: refused as LiveVcpu refuses them (InputError naming the field)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_MSR_INDEX:
            shown = f"{index:#x}" if isinstance(index, int) else type(index).__name__
            raise InputError(
                f"an MSR index must be an integer in 0..{MAX_MSR_INDEX:#x}, got {shown}", where="msr index"
            )
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64):
            shown = f"{value:#x}" if isinstance(value, int) else type(value).__name__
            raise InputError(f"MSR value must be unsigned 64-bit, got {shown}", where=f"msr {index:#x} value")

    def _runtime(self, entries: list[CpuidEntry]) -> list[CpuidEntry]:
        entries = apply_runtime(
            entries, self.state, self.kernel_profile, self.host, self.vendor, current_pv_base=self.derived.kvm_pv_base
        )
        return vendor_runtime(self.vendor, entries, self.host, self.state.quirks_disabled)

    def _trigger(self) -> None:
        """A runtime trigger: eager kernels update now, lazy ones (6.15+) mark the table dirty."""
        if self.kernel_profile.value("runtime_update_mode") == "lazy":
            self._dirty = True
        else:
            self._refresh()

    def _refresh(self) -> None:
        self._stored = CpuidTable._of(self._runtime(list(self._stored)))
        self._dirty = False

    # -- KVM_SET_CPUID2 ---------------------------------------------------------
    def set_cpuid(self, table: CpuidTable) -> None:
        """KVM_SET_CPUID2 as the modelled kernel does it (see data/kvm-behaviours.csv for each rule)."""
        op = "KVM_SET_CPUID2"
        k = self.kernel_profile
        if not isinstance(table, CpuidTable):
            table = CpuidTable(table)
        self._vcpu(op)
        limit = k.number("max_cpuid_entries")
        if len(table) > limit:
            raise self._err(
                "E2BIG", "max_cpuid_entries", f"{len(table)} entries is more than KVM_MAX_CPUID_ENTRIES ({limit})", op
            )
        # The runtime rules rewrite the incoming entries first (before 5.17 they ran right
        # after installing them: the stored result is the same).
        incoming = self._runtime(list(table))
        if k.flag("pv_unhalt_at_set"):
            apply_pv_unhalt(incoming, self.state)

        if self.has_run:
            policy = k.value("post_run_set_cpuid")
            if policy == "reject":
                raise self._err(
                    "EINVAL", "post_run_set_cpuid", "KVM_SET_CPUID2 after KVM_RUN is always refused in this kernel", op
                )
            if policy == "identical":
                stale = self._dirty and not k.flag("set_cpuid_refreshes_current")
                if self._dirty and not stale:
                    self._refresh()
                why = self._differs(incoming, compare_flags=k.flag("post_run_compare_flags"))
                if why:
                    if stale:
                        # 6.15 until e2b43fb25243: the runtime update ran on the swapped-in copy and cleared
                        # the dirty flag; the stale table is swapped back and stays stale (failed_set_keeps_old)
                        self._dirty = False
                        why += " (the stored table still held stale runtime bits: a pending update was not applied)"
                    raise self._err(
                        "EINVAL",
                        "post_run_set_cpuid",
                        f"the vCPU has run, and the new table is not identical to the stored one: {why}",
                        op,
                    )
                return  # identical: nothing changes, nothing is re-derived

        failure = self._check(incoming)
        if failure is not None:
            if not k.flag("check_before_install"):
                # before 5.10 the new table was copied into the vCPU first and checked afterwards: before 5.9
                # it then stayed installed; 5.9 reset cpuid_nent to 0, leaving an EMPTY table and the state
                # derived from the previous one (failed_set_keeps_old)
                if k.value("failed_set_keeps_old") == "emptied":
                    self._stored = CpuidTable()
                    self._dirty = False
                else:
                    self._install(incoming)
            raise failure
        self._install(incoming)

    def _differs(self, incoming: list[CpuidEntry], compare_flags: bool) -> str | None:
        stored = list(self._stored)
        if len(incoming) != len(stored):
            return f"{len(incoming)} entries against {len(stored)} stored"
        for i, (a, b) in enumerate(zip(incoming, stored)):
            if (a.function, a.index) != (b.function, b.index):
                return f"entry {i} is {a.function:#x}.{a.index}, stored {b.function:#x}.{b.index}"
            if compare_flags and a.flags != b.flags:
                return f"entry {i} ({a.function:#x}.{a.index}) flags {a.flags} against {b.flags}"
            for r in ("eax", "ebx", "ecx", "edx"):
                if a.reg(r) != b.reg(r):
                    return f"entry {i} ({a.function:#x}.{a.index}) {r} {a.reg(r):#010x} against {b.reg(r):#010x}"
        return None

    def _check(self, entries: list[CpuidEntry]) -> KvmError | None:
        """``kvm_check_cpuid``: the linear-address width and dynamic xfeatures."""
        op = "KVM_SET_CPUID2"
        k = self.kernel_profile
        pos = _find(entries, 0x80000008, None)
        if pos is not None:
            width = linear_width_of(entries[pos])
            allowed = {int(v) for v in k.value("vaddr_width_values").split(";")}
            if width not in allowed:
                return self._err(
                    "EINVAL",
                    "vaddr_width_values",
                    f"0x80000008 EAX[15:8] (linear-address width) is {width}; KVM accepts only "
                    f"{', '.join(map(str, sorted(allowed)))}",
                    op,
                )
        if k.flag("amx_dynamic_eperm"):
            pos = _find(entries, 0xD, 0)
            if pos is not None:
                e = entries[pos]
                dynamic = (e.eax | e.edx << 32) & XFEATURE_MASK_XTILE_DATA
                if dynamic & ~self.xfeature_perm:
                    return self._err(
                        "EPERM",
                        "amx_dynamic_eperm",
                        "0xD.0 EAX enables AMX TILEDATA (bit 18), a dynamic XSAVE feature, and this "
                        "process has no guest permission for it (arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18))",
                        op,
                    )
        return None

    def _install(self, entries: list[CpuidEntry]) -> None:
        k = self.kernel_profile
        if k.value("sgx_xfrm_adjust") == "after_set":
            apply_sgx_xfrm_adjust(entries, self.host, self.vendor, k)
        stored = CpuidTable._of(entries)
        rewritten = vendor_after_set(self.vendor, stored, self.host)
        if rewritten is not None:
            # the vendor hook runs after KVM's runtime update; KVM's runtime fields are then
            # brought up to date on the rewritten table (e.g. 0xD.1 EBX once XSAVEC is forced on)
            stored = CpuidTable._of(self._runtime(list(rewritten)))
        self.derived = derive(stored, self.host, k, self.vendor)
        self._stored = stored
        self._dirty = False

    # -- KVM_GET_CPUID2 ---------------------------------------------------------
    def get_cpuid(self, nent: int | None = None) -> CpuidTable:
        """KVM_GET_CPUID2: the stored table with runtime fields applied; E2BIG if ``nent`` is too small."""
        self._vcpu("KVM_GET_CPUID2")
        if nent is not None and nent < len(self._stored):
            raise self._err(
                "E2BIG",
                "get_cpuid2_e2big",
                f"the buffer has room for {nent} entries but {len(self._stored)} are stored",
                "KVM_GET_CPUID2",
            )
        if self._dirty:
            self._refresh()
        return CpuidTable._of(self._stored, source="KVM_GET_CPUID2 (model)")

    def get_cpuid2_nent(self, nent: int = MAX_GET_CPUID2_NENT) -> int:
        """What one KVM_GET_CPUID2 with room for ``nent`` entries leaves in ``nent``.

        E2BIG (``nent`` left as passed) when fewer than the stored entries fit; on success the stored
        count from 6.5 (ab322c43cce9), but ``nent`` unchanged before: ask a 6.1 kernel with 256 and it
        answers 256 for a table of 30 (``get_cpuid2_nent_on_success``).
        """
        op = "KVM_GET_CPUID2"
        self._vcpu(op)
        if isinstance(nent, bool) or not isinstance(nent, int) or not 0 <= nent <= MAX_GET_CPUID2_NENT:
            raise InputError(f"nent must be an integer in 0..{MAX_GET_CPUID2_NENT}, got {nent!r}", where="nent")
        count = len(self.get_cpuid(nent))  # E2BIG as KVM_GET_CPUID2 gives it
        return count if self.kernel_profile.value("get_cpuid2_nent_on_success") == "set_to_count" else nent

    # -- runtime triggers -----------------------------------------------------------
    def set_cr4(self, value: int) -> None:
        """KVM_SET_SREGS with a new CR4: refused with EINVAL if a bit is reserved; OSXSAVE/PKE toggles update CPUID."""
        op = "KVM_SET_SREGS"
        self._vcpu(op)
        if not 0 <= value < 1 << 64:
            raise InputError(f"CR4 must be a 64-bit value, got {value:#x}")
        ok = vendor_cr4_valid(self.vendor, value, self.host)
        if ok is None:
            bad = value & self.derived.cr4_reserved_bits
            if bad:
                raise self._err(
                    "EINVAL",
                    "cr4_reserved_from_cpuid",
                    f"CR4 bits {bad:#x} are reserved for this vCPU (unknown to KVM, or their CPUID "
                    "feature is absent from KVM's caps or from guest CPUID)",
                    op,
                )
        elif not ok:
            raise self._err(
                "EINVAL", "cr4_reserved_from_cpuid", f"CR4 {value:#x} is outside the vendor module's fixed CR4 mask", op
            )
        failure = self._sregs_apic_base_error(op)
        if failure is not None:
            raise failure
        old = self.state.cr4
        self.state.cr4 = value
        if (old ^ value) & (CR4_OSXSAVE | CR4_PKE):
            self._trigger()

    def set_xcr0(self, value: int) -> None:
        """KVM_SET_XCRS with one XCR0 entry (``__kvm_set_xcr``): EINVAL on any rule, state unchanged."""
        self._vcpu("KVM_SET_XCRS")
        why = self.xcr0_violation(value)
        if why:
            raise self._err("EINVAL", "xcr0_rules", why, "KVM_SET_XCRS")
        old = self.state.xcr0
        self.state.xcr0 = value
        if (old ^ value) & XFEATURE_MASK_EXTEND:
            self._trigger()

    def xcr0_violation(self, value: int) -> str | None:
        """Why ``__kvm_set_xcr`` refuses ``value`` for this vCPU, or None."""
        if not 0 <= value < 1 << 64:
            return f"XCR0 must be a 64-bit value, got {value:#x}"
        if not value & XCR0_FP:
            return "XCR0 bit 0 (x87) must be set"
        if value & XCR0_YMM and not value & XCR0_SSE:
            return "XCR0 enables AVX (bit 2) without SSE (bit 1)"
        valid = self.derived.guest_supported_xcr0 | XCR0_FP
        if value & ~valid:
            return (
                f"XCR0 bits {value & ~valid:#x} are outside guest_supported_xcr0 ({self.derived.guest_supported_xcr0:#x}: "
                "0xD.0 EDX:EAX ∩ what KVM supports on this host)"
            )
        if bool(value & (1 << 3)) != bool(value & (1 << 4)):
            return "XCR0 must enable MPX BNDREGS and BNDCSR (bits 3, 4) together"
        if value & XCR0_AVX512:
            if not value & XCR0_YMM:
                return "XCR0 enables AVX-512 state without AVX (bit 2)"
            if value & XCR0_AVX512 != XCR0_AVX512:
                return "XCR0 must enable the three AVX-512 components (bits 5, 6, 7) together"
        if value & XCR0_XTILE and value & XCR0_XTILE != XCR0_XTILE:
            return "XCR0 must enable AMX TILECFG and TILEDATA (bits 17, 18) together"
        return None

    def get_xcr0(self) -> int:
        self._vcpu("KVM_GET_XCRS")
        return self.state.xcr0

    def _apic_base_reserved(self) -> tuple[int, bool]:
        """``kvm_set_apic_base``'s reserved bits for this vCPU now, and whether guest CPUID has X2APIC."""
        leaf1 = self._stored.get(1)
        has_x2apic = bool(leaf1 and leaf1.ecx >> 21 & 1)
        reserved = reserved_gpa_bits(self.derived.maxphyaddr) | 0x2FF | (0 if has_x2apic else 1 << 10)
        return reserved & ((1 << 64) - 1), has_x2apic

    def _sregs_apic_base_error(self, op: str) -> KvmError | None:
        """KVM_SET_SREGS hands the APIC base it carries to ``kvm_set_apic_base`` (host-initiated).

        The backends' SREGS writes carry the current base (KVM_GET_SREGS, then only CR4 or CS changed), so
        before 6.13 the reserved-bit test runs on it again: with a guest MAXPHYADDR below 32 the default
        0xFEE00000 is reserved and every KVM_SET_SREGS fails, even with CR4 = 0.  From 6.13 an unchanged
        base returns early (``apic_base_unchanged_noop``).
        """
        k = self.kernel_profile
        if not k.flag("sregs_apic_base_checked") or k.flag("apic_base_unchanged_noop"):
            return None
        value = self.state.apic_base
        reserved, has_x2apic = self._apic_base_reserved()
        if not value & reserved:
            return None
        return self._err(
            "EINVAL",
            "sregs_apic_base_checked",
            f"KVM_SET_SREGS re-validates the APIC base it carries ({value:#x}), and bits {value & reserved:#x} "
            f"of it are reserved for this vCPU (GPA bits ≥ MAXPHYADDR {self.derived.maxphyaddr}, bits 0-7 and 9"
            f"{'' if has_x2apic else ', and EXTD without X2APIC'})",
            op,
        )

    def set_msr(self, index: int, value: int) -> None:
        """KVM_SET_MSRS (host-initiated) for IA32_APIC_BASE, IA32_MISC_ENABLE and IA32_XSS."""
        op = "KVM_SET_MSRS"
        self._vcpu(op)
        self._check_msr(index, value)
        if index == MSR_IA32_APICBASE:
            reserved, has_x2apic = self._apic_base_reserved()
            if value & reserved and not (
                value == self.state.apic_base and self.kernel_profile.flag("apic_base_unchanged_noop")
            ):
                raise self._err(
                    "EINVAL",
                    "apic_base_reserved",
                    f"APIC_BASE bits {value & reserved:#x} are reserved (GPA bits ≥ MAXPHYADDR "
                    f"{self.derived.maxphyaddr}, bits 0-7 and 9{'' if has_x2apic else ', and EXTD without X2APIC'})",
                    op,
                )
            if value == self.state.apic_base and self.kernel_profile.flag("apic_base_unchanged_noop"):
                return  # kvm_apic_set_base() returns early when the value does not change
            if value & (1 << 10) and not value & APICBASE_ENABLE:
                raise self._err(
                    "EINVAL", "apic_base_reserved", "APIC_BASE EXTD (x2APIC) set without EN: invalid mode", op
                )
            old = self.state.apic_base
            self.state.apic_base = value
            if (old ^ value) & APICBASE_ENABLE:
                self._trigger()
        elif index == MSR_IA32_MISC_ENABLE:
            old = self.state.misc_enable
            if "MISC_ENABLE_NO_MWAIT" in self.state.quirks_disabled and (old ^ value) & MISC_ENABLE_MWAIT:
                # guest_cpuid_has(X86_FEATURE_XMM3): KVM's lookup of 1.0, so a flagged leaf-1 entry with another
                # index does not count (the runtime update itself finds leaf 1 whatever its index)
                e = self._stored.get(1, 0)
                if vendor_mwait_checked(self.vendor, self.host) and not (e and e.ecx & 1):
                    raise self._err(
                        "EINVAL",
                        "misc_enable_mwait_runtime",
                        "toggling MISC_ENABLE.MWAIT with the quirk disabled needs SSE3 in guest CPUID",
                        op,
                    )
                self.state.misc_enable = value
                self._trigger()
            else:
                self.state.misc_enable = value
        elif index == MSR_IA32_XSS:
            measured = vendor_xss_accepted(self.vendor, self.host)
            if measured is not None and value not in measured:
                raise self._err(
                    "EINVAL",
                    "supported_xss",
                    f"IA32_XSS {value:#x} is refused by the {self.vendor} module on this host (measured)",
                    op,
                )
            why = None if measured is not None else self._xss_violation(value)
            if why:
                raise self._err("EINVAL", "xss_write_rule", why, op)
            old = self.state.xss
            self.state.xss = value
            when = self.kernel_profile.value("xss_write_triggers_runtime")
            if when == "always" or (when == "on_change" and old != value):
                self._trigger()
        else:
            raise InputError(
                f"the model knows MSRs {MSR_IA32_APICBASE:#x}, {MSR_IA32_MISC_ENABLE:#x} and "
                f"{MSR_IA32_XSS:#x}; got {index:#x}"
            )

    def _kvm_supported_xss(self) -> int:
        """kvm_caps.supported_xss: KVM's set (0 before 6.18, CET_U|CET_S from 6.18) ∩ the host's XSS."""
        value = self.kernel_profile.value("supported_xss")
        return int(value, 0) & self.host.xss_mask if value not in ("", "0") else 0

    def _xss_violation(self, value: int) -> str | None:
        """Why a host-initiated IA32_XSS write fails (``kvm_set_msr_common``), or None."""
        supported = self._kvm_supported_xss()
        if self.kernel_profile.value("xss_write_rule") == "needs_guest_xsaves":
            e = self._stored.get(0xD, 1)
            if not (e and e.eax >> 3 & 1):
                if value == 0 and supported:
                    return None  # a host write of 0 to an advertised MSR is tolerated
                return "IA32_XSS needs XSAVES in guest CPUID (0xD.1 EAX[3])"
            guest = (e.ecx | e.edx << 32) & supported
            if value & ~guest:
                return f"IA32_XSS bits {value & ~guest:#x} are outside guest_supported_xss ({guest:#x})"
            return None
        if value & ~supported:
            return f"IA32_XSS bits {value & ~supported:#x} are outside kvm_caps.supported_xss ({supported:#x})"
        return None

    def get_msr(self, index: int) -> int:
        self._vcpu("KVM_GET_MSRS")
        self._check_msr(index)
        if index == MSR_IA32_APICBASE:
            return self.state.apic_base
        if index == MSR_IA32_MISC_ENABLE:
            return self.state.misc_enable
        if index == MSR_IA32_XSS:
            return self.state.xss
        raise InputError(f"the model does not know MSR {index:#x}")

    # -- VM-level capabilities --------------------------------------------------------
    def disable_quirk(self, name: str) -> None:
        """KVM_CAP_DISABLE_QUIRKS2: no runtime update happens until the next trigger."""
        self._check_open("KVM_ENABLE_CAP")
        if name not in QUIRKS:
            raise InputError(f"unknown quirk {name!r}; known: {', '.join(QUIRKS)}")
        self.state.quirks_disabled.add(name)

    def disable_hlt_exits(self) -> None:
        """KVM_CAP_X86_DISABLE_EXITS(HLT): refused once a vCPU exists, where the kernel refuses it."""
        self._check_open("KVM_ENABLE_CAP")
        if self._vcpu_created and self.kernel_profile.flag("disable_exits_after_vcpu_rejected"):
            raise self._err(
                "EINVAL",
                "disable_exits_after_vcpu_rejected",
                "KVM_CAP_X86_DISABLE_EXITS must be enabled before any vCPU is created",
                "KVM_ENABLE_CAP",
            )
        self.state.hlt_exits_disabled = True
        if not self._vcpu_created:
            self._hlt_in_guest = True  # a vCPU created later gets no HLT intercept

    def grant_xfeature_permission(self, mask: int) -> None:
        """arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM): only features the host supports can be granted."""
        self._check_open("ARCH_REQ_XCOMP_GUEST_PERM")
        for bit in range(2, 64):
            if not mask >> bit & 1:
                continue
            if not self.host.xcr0_mask >> bit & 1:
                raise KvmError(
                    "EOPNOTSUPP",
                    f"the host does not support XSAVE feature {bit}, so no permission can be granted",
                    rule="amx_dynamic_eperm",
                    operation="arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)",
                    source="arch/x86/kernel/fpu/xstate.c xstate_request_perm()",
                )
            self.xfeature_perm |= 1 << bit

    def run(self) -> None:
        """KVM_RUN of the backends' real-mode ``hlt`` probe: the vCPU enters the guest (this turns on the
        post-run SET_CPUID2 rule) and the ``hlt`` exits to the VMM.

        The backends set CS through KVM_SET_SREGS first, so the SREGS rules come first (EINVAL, and the
        vCPU has not entered: ``sregs_apic_base_checked``).  With HLT exits disabled before the vCPU was
        created, the vendor module does not intercept ``hlt`` (``run_with_hlt_exits_disabled``): the vCPU
        enters, but KVM_RUN ends without KVM_EXIT_HLT (svm: EIO, vmx: ETIMEDOUT; pvm intercepts ``hlt``
        anyway, measured).
        """
        op = "KVM_RUN"
        self._vcpu(op)
        failure = self._sregs_apic_base_error("KVM_SET_SREGS")
        if failure is not None:
            raise failure
        self.has_run = True
        if self._hlt_in_guest:
            how = self._hlt_in_guest_outcome()
            if how in HLT_IN_GUEST:
                errno_name, why = HLT_IN_GUEST[how]
                raise self._err(errno_name, "run_with_hlt_exits_disabled", why, op)

    def _hlt_in_guest_outcome(self) -> str:
        """This vendor's entry of ``run_with_hlt_exits_disabled`` (``vmx=stays_halted;svm=…;pvm=hlt_exit``)."""
        for item in self.kernel_profile.value("run_with_hlt_exits_disabled").split(";"):
            vendor, _, how = item.partition("=")
            if vendor.strip() == self.vendor:
                return how.strip()
        return "hlt_exit"

    # -- views ------------------------------------------------------------------------
    @property
    def stored(self) -> CpuidTable:
        """The stored table without resolving pending lazy updates (what KVM holds internally)."""
        return self._stored
