"""SGX: CPUID 0x12 and the enclave XFRM, on both sides of Linux 6.4.

Facts (arch/x86/kvm; read in 6.1.192, 6.3.8, 6.4.6 and 6.18.2):
* 5.13-6.3: KVM rewrites the guest's 0x12.1 ECX/EDX to (value & guest_supported_xcr0) | FP | SSE
  (after SET in 5.13-5.16, in the runtime update in 5.17-6.3);
* 6.4+ (275a87244ec8, ad45413d22e6): 0x12.1 is stored verbatim, and the intercepted ECREATE injects
  #GP(0) when XFRM is not within guest_supported_xcr0 | FP | SSE or lacks FP/SSE;
* handle_encls: #UD without SGX/SGX1 in guest CPUID; ECREATE is intercepted unless the guest's 0x12
  equals the hardware's and the provisioning key is allowed.
"""

from __future__ import annotations

import pytest

from cpuidkit.core.hosts import HostProfile
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.xcr import SGX_ATTR_MODE64BIT, SGX_ATTR_PROVISIONKEY, sgx_ecreate, sgx_fields

SGX_HOST = HostProfile.builtin("emerald-rapids")  # CPUID 7.0 EBX.SGX set


def sgx_table(guest_xcr0: int = 0x7, xfrm: int = 0xE7, attributes: int = 0x36, sgx1: bool = True,
              host: HostProfile = SGX_HOST):
    t = host.cpuid.set_field("0xd.0.eax", guest_xcr0).set_field("0xd.0.edx", 0)
    t = t.set_field("sgx", 1)
    t = t.set_field("0x12.0.eax", 1 if sgx1 else 0).set_field("0x12.0.ebx", 0).set_field("0x12.0.edx", 0x2F1F)
    t = t.set_field("0x12.1.eax", attributes).set_field("0x12.1.ebx", 0)
    return t.set_field("0x12.1.ecx", xfrm & 0xFFFFFFFF).set_field("0x12.1.edx", xfrm >> 32)


def sgx_vcpu(kernel: str, guest_xcr0: int = 0x7, xfrm: int = 0xE7, **kw) -> SimulatedVcpu:
    v = SimulatedVcpu(kernel=kernel, vendor="vmx", host=SGX_HOST)
    v.set_cpuid(sgx_table(guest_xcr0, xfrm, **kw))
    return v


def test_the_fields_are_read():
    f = sgx_fields(sgx_table(xfrm=0x2E7))
    assert f["sgx"] and f["sgx1"] and not f["sgx2"]
    assert f["xfrm"] == 0x2E7 and f["attributes"] == 0x36
    assert f["max_enclave_size_32_log2"] == 0x1F and f["max_enclave_size_64_log2"] == 0x2F


@pytest.mark.parametrize("kernel, trimmed", [("5.12", False), ("5.13", True), ("5.16", True), ("5.17", True),
                                             ("6.3", True), ("6.4", False), ("6.18", False)])
def test_0x12_1_is_trimmed_only_in_5_13_to_6_3(kernel, trimmed):
    v = sgx_vcpu(kernel, guest_xcr0=0x7, xfrm=0x2E6)  # asks for AVX-512 and PKRU, and lacks FP
    s1 = v.get_cpuid().get(0x12, 1)
    assert s1.ecx == (0x7 if trimmed else 0x2E6)  # (0x2e6 & 0x7) | FP | SSE = 0x7


def test_a_trim_follows_the_guest_xcr0_support_not_the_host():
    v = sgx_vcpu("6.1", guest_xcr0=0x2E7, xfrm=0x602E7)
    assert v.get_cpuid().get(0x12, 1).ecx == 0x2E7  # AMX removed: not in this guest's 0xD.0


@pytest.mark.parametrize("kernel", ["6.3", "6.4"])
def test_an_enclave_within_the_guest_xcr0_works_on_both_sides(kernel):
    v = sgx_vcpu(kernel, guest_xcr0=0x7, xfrm=0x7)
    r = sgx_ecreate(v, xfrm=0x7)
    assert r.outcome == "ok" and r.intercepted


def test_missing_fp_sse_in_xfrm_is_gp_by_kvm_from_6_4_and_by_the_cpu_before():
    old = sgx_ecreate(sgx_vcpu("6.3", xfrm=0x7), xfrm=0x1)
    new = sgx_ecreate(sgx_vcpu("6.4", xfrm=0x7), xfrm=0x1)
    assert (old.outcome, old.by) == ("#GP", "cpu")
    assert (new.outcome, new.by, new.rule) == ("#GP", "kvm", "sgx_ecreate_xfrm_check")


def test_a_cpuid_without_sse_in_xfrm_differs_across_6_4():
    # userspace's 0x12.1 allows only FP: 6.3 forces FP|SSE in, so an FP|SSE enclave passes; 6.4 keeps it
    assert sgx_ecreate(sgx_vcpu("6.3", xfrm=0x1), xfrm=0x3).outcome == "ok"
    r = sgx_ecreate(sgx_vcpu("6.4", xfrm=0x1), xfrm=0x3)
    assert (r.outcome, r.rule) == ("#GP", "sgx_xfrm_cpuid")


def test_xfrm_beyond_guest_xcr0_before_6_4_passes_only_if_0x12_1_was_not_trimmed():
    # 6.3: the trim keeps 0x12.1 within the guest's XCR0 support, so the CPUID check stops it
    r = sgx_ecreate(sgx_vcpu("6.3", guest_xcr0=0x7, xfrm=0xE7), xfrm=0xE7)
    assert (r.outcome, r.rule) == ("#GP", "sgx_xfrm_cpuid")
    # 6.4: 0x12.1 keeps 0xe7, the new check stops it
    r = sgx_ecreate(sgx_vcpu("6.4", guest_xcr0=0x7, xfrm=0xE7), xfrm=0xE7)
    assert (r.outcome, r.rule) == ("#GP", "sgx_ecreate_xfrm_check")
    assert "guest_supported_xcr0" in r.explanation


def test_other_ecreate_checks():
    v = sgx_vcpu("6.18", xfrm=0x7)
    assert sgx_ecreate(v, xfrm=0x3, attributes=SGX_ATTR_MODE64BIT | SGX_ATTR_PROVISIONKEY).rule == "sgx_provisionkey"
    assert sgx_ecreate(v, xfrm=0x3, attributes=1 << 40).rule == "sgx_attributes"
    assert sgx_ecreate(v, xfrm=0x3, miscselect=1).rule == "sgx_miscselect"
    assert sgx_ecreate(v, xfrm=0x3, size=1 << 0x2F).rule == "sgx_size"
    assert sgx_ecreate(v, xfrm=0x3, size=(1 << 0x2F) - 4096).outcome == "ok"
    assert sgx_ecreate(v, xfrm=0x3, attributes=0, size=1 << 0x1F).rule == "sgx_size"  # 32-bit enclave limit


def test_ud_and_gp_before_ecreate():
    assert sgx_ecreate(sgx_vcpu("6.18", sgx1=False), xfrm=0x3).outcome == "#UD"
    assert sgx_ecreate(sgx_vcpu("5.12"), xfrm=0x3).rule == "sgx_not_virtualized"
    v = SimulatedVcpu("6.18", "svm", HostProfile.builtin("epyc-genoa"))
    v.set_cpuid(sgx_table(host=HostProfile.builtin("epyc-genoa")))
    assert sgx_ecreate(v, xfrm=0x3).outcome == "#UD"
    no_sgx_host = HostProfile.builtin("sapphire-rapids")  # this w7-3465X dump has no SGX
    v = SimulatedVcpu("6.18", "vmx", no_sgx_host)
    v.set_cpuid(sgx_table(host=no_sgx_host).set_field("0xd.0.eax[18]", 0))
    assert sgx_ecreate(v, xfrm=0x3).outcome == "#UD"
    v = sgx_vcpu("6.18", xfrm=0x7)
    assert sgx_ecreate(v, xfrm=0x3, bios_enabled=False).outcome == "#GP"
    assert sgx_ecreate(v, xfrm=0x3, paging=False).outcome == "#GP"
    no_leaf = SimulatedVcpu("6.18", "vmx", SGX_HOST)
    no_leaf.set_cpuid(sgx_table().without(0x12, 1))
    assert sgx_ecreate(no_leaf, xfrm=0x3).outcome == "emulation-failure"


def test_not_intercepted_when_the_guest_0x12_is_the_hardwares():
    host = SGX_HOST
    hw = HostProfile.from_table(sgx_table(host=host), name="sgx-hw")  # a host whose 0x12 is exactly the guest's
    v = SimulatedVcpu("6.18", "vmx", hw)
    v.set_cpuid(sgx_table(host=host))
    r = sgx_ecreate(v, xfrm=0xE7, provisioning_allowed=True)
    assert r.intercepted is False and r.by == "cpu" and r.outcome == "ok"
    assert "EENTER" in r.explanation  # XFRM beyond the guest's XCR0 support: only EENTER will catch it
    assert sgx_ecreate(v, xfrm=0xE7).intercepted is True  # provisioning not allowed: always intercepted
