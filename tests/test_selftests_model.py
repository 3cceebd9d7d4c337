"""KVM's own selftests, as assertions on SimulatedVcpu (kvm-facts.md §8).

Each test names the selftest (tools/testing/selftests/kvm/x86/…) whose
CPUID-related assertion it reproduces.  The selftests give a fresh vCPU
KVM_GET_SUPPORTED_CPUID as its CPUID; the host here is a real machine's
recorded profile (``live-kvm-epyc``: raw CPUID and KVM_GET_SUPPORTED_CPUID).
"""

from __future__ import annotations

import pytest

from cpuidkit import CpuidTable, KvmError
from cpuidkit.core.hosts import HostProfile
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE
from cpuidkit.kvm.vcpu import SimulatedVcpu

HOST = HostProfile.builtin("live-kvm-epyc")
AMX_HOST = HostProfile.builtin("sapphire-rapids")
DYNAMIC = {(1, 0, "ecx"): 1 << 27, (7, 0, "ecx"): 1 << 4, (0xD, 0, "ebx"): 0xFFFFFFFF, (0xD, 1, "ebx"): 0xFFFFFFFF}


def selftest_vcpu(kernel="6.18", host=AMX_HOST) -> SimulatedVcpu:
    """vm_create_with_one_vcpu(): a vCPU whose CPUID is KVM_GET_SUPPORTED_CPUID."""
    v = SimulatedVcpu(kernel=kernel, vendor="svm" if host.vendor == "AuthenticAMD" else "vmx", host=host)
    v.set_cpuid(host.supported_cpuid())
    return v


def masked(t: CpuidTable) -> list[tuple]:
    out = []
    for e in t:
        regs = []
        for r in ("eax", "ebx", "ecx", "edx"):
            regs.append(e.reg(r) & ~DYNAMIC.get((e.function, e.index, r), 0))
        out.append((e.function, e.index, e.flags, *regs))
    return out


def test_cpuid_test_default_cpuid_equals_supported_apart_from_dynamic_fields():
    # cpuid_test: test_guest_cpuids / compare_cpuids (UP masks OSXSAVE, OSPKE, 0xD.{0,1}.EBX)
    for host in (HOST, AMX_HOST):
        v = selftest_vcpu(host=host)
        assert masked(v.get_cpuid()) == masked(host.supported_cpuid())


def test_cpuid_test_kvm_pv_max_leaf():
    # cpuid_test: the KVM PV max leaf (0x40000000 EAX) is KVM_CPUID_FEATURES = 0x40000001
    # (KVM_GET_SUPPORTED_CPUID reports it; the model passes it through unchanged)
    t = HOST.supported.with_entry(HOST.supported.get(0x40000000) or _kvm_base())
    v = SimulatedVcpu(kernel="6.18", vendor="svm", host=HOST)
    v.set_cpuid(t)
    assert v.get_cpuid().get(0x40000000).eax == t.get(0x40000000).eax


def _kvm_base():
    from cpuidkit import CpuidEntry

    return CpuidEntry(0x40000000, eax=0x40000001, ebx=0x4B4D564B, ecx=0x564B4D56, edx=0x4D)


def test_cpuid_test_set_cpuid_after_run():
    # cpuid_test: test_set_cpuid_after_run / set_cpuid_after_run
    v = selftest_vcpu()
    v.run()
    cur = v.get_cpuid()
    v.set_cpuid(cur)  # unmodified: OK
    v.set_cr4(CR4_OSXSAVE | CR4_PKE)  # UP: still OK after toggling CR4.OSXSAVE/PKE through SET_SREGS
    v.set_cpuid(cur)
    with pytest.raises(KvmError, match="EINVAL"):
        v.set_cpuid(cur.set_field("0x7.0.ebx[0]", 1 - cur.get_field("0x7.0.ebx[0]")))  # a 0x7 feature bit
    with pytest.raises(KvmError, match="EINVAL"):
        v.set_cpuid(cur.set_field("phys_addr_bits", cur.get_field("phys_addr_bits") - 1))  # lower MAXPHYADDR


def test_cpuid_test_get_cpuid2_nent():
    # cpuid_test: test_get_cpuid2 — too small nent gives E2BIG; exact nent works
    v = selftest_vcpu()
    n = len(v.get_cpuid())
    with pytest.raises(KvmError) as ei:
        v.get_cpuid(n - 1)
    assert ei.value.errno_name == "E2BIG"
    assert len(v.get_cpuid(n)) == n


def test_cr4_cpuid_sync_test():
    # cr4_cpuid_sync_test: CPUID.1.ECX.OSXSAVE follows CR4.OSXSAVE set/cleared by the host (KVM_SET_SREGS)
    v = selftest_vcpu()
    v.set_cr4(CR4_OSXSAVE)
    assert v.get_cpuid().get_field("osxsave") == 1
    v.set_cr4(0)
    assert v.get_cpuid().get_field("osxsave") == 0
    v.set_cr4(CR4_OSXSAVE)
    assert v.get_cpuid().get_field("osxsave") == 1


def test_xcr0_cpuid_test():
    # xcr0_cpuid_test: XCR0 at reset is FP; the full supported XCR0 is accepted; any single unsupported bit on top is refused
    v = selftest_vcpu(host=AMX_HOST)
    assert v.get_xcr0() == 1
    supported = v.derived.guest_supported_xcr0
    v.set_cr4(CR4_OSXSAVE)
    v.set_xcr0(supported | 1)
    for bit in range(64):
        if (supported | 1) >> bit & 1:
            continue
        with pytest.raises(KvmError):
            v.set_xcr0(supported | 1 | 1 << bit)
    assert v.get_xcr0() == supported | 1  # failed writes leave XCR0 alone


def test_amx_test_needs_permission_then_works():
    # amx_test: ARCH_REQ_XCOMP_GUEST_PERM before TILEDATA can be exposed; then XSETBV of both XTILE bits works
    t = AMX_HOST.cpuid
    v = SimulatedVcpu(kernel="6.18", vendor="vmx", host=AMX_HOST)
    with pytest.raises(KvmError) as ei:
        v.set_cpuid(t)
    assert ei.value.errno_name == "EPERM"
    v = SimulatedVcpu(kernel="6.18", vendor="vmx", host=AMX_HOST)
    v.grant_xfeature_permission(1 << 18)
    v.set_cpuid(t)
    v.set_cr4(CR4_OSXSAVE)
    v.set_xcr0(0x60007)
    # TILEDATA's XSAVE offset 2816 and size 8192 (amx_test) come from the host's 0xD.18
    e = AMX_HOST.cpuid.get(0xD, 18)
    assert (e.ebx, e.eax) == (2816, 8192)
    assert v.get_cpuid().get(0xD, 0).ebx == 2816 + 8192


def test_xss_msr_test_before_618():
    # xss_msr_test (6.12): IA32_XSS reads 0; any nonzero write fails while supported_xss is 0
    v = selftest_vcpu(kernel="6.12", host=AMX_HOST)
    assert v.get_msr(0xDA0) == 0
    for bit in range(64):
        with pytest.raises(KvmError):
            v.set_msr(0xDA0, 1 << bit)
