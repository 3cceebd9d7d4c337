"""SimulatedVcpu: KVM's rules, scripted, at the edges of their version ranges.

Expected values here are facts from the kernel sources (named per test), not
read back from data/kvm-behaviours.csv: a wrong row in the data fails these.
"""

from __future__ import annotations

import pytest

from cpuidkit import CpuidEntry, CpuidTable, KvmError
from cpuidkit.kvm.check import VcpuSetup, check
from cpuidkit.core.hosts import HostProfile
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE, MSR_IA32_APICBASE, MSR_IA32_MISC_ENABLE, MSR_IA32_XSS
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.core.kernels import kernel_profile, modelled_kernel

SPR = HostProfile.builtin("sapphire-rapids")  # AMX, PKU, 52-bit
ROME = HostProfile.builtin("epyc-rome")


def guest(host: HostProfile = SPR) -> CpuidTable:
    """A plausible guest table: the host's own CPUID, with 0xD.0 without AMX TILEDATA."""
    t = host.cpuid
    e = t.get(0xD, 0)
    return t.set_field("0xd.0.eax[18]", 0).set_field("0xd.0.eax[17]", 0) if e else t


def vcpu(kernel="6.18", vendor="vmx", host=SPR) -> SimulatedVcpu:
    return SimulatedVcpu(kernel=kernel, vendor=vendor, host=host)


def errno_of(fn, *a) -> str | None:
    try:
        fn(*a)
    except KvmError as e:
        return e.errno_name
    return None


# -- R1: the entry limit ------------------------------------------------------------------

def many(n: int) -> CpuidTable:
    return CpuidTable(CpuidEntry(0x40000100 + i) for i in range(n))


@pytest.mark.parametrize("kernel,limit", [("5.9", 80), ("5.10", 256), ("6.1", 256), ("6.18", 256)])
def test_entry_limit_and_its_history(kernel, limit):
    # KVM_MAX_CPUID_ENTRIES: 80 until 3f4e3eb417b1 "bump KVM_MAX_CPUID_ENTRIES" (5.10 merge window;
    # 5.10.0's kvm_host.h has 256), 256 since
    v = vcpu(kernel)
    assert errno_of(v.set_cpuid, many(limit)) is None
    with pytest.raises(KvmError) as ei:
        v.set_cpuid(many(limit + 1))
    assert ei.value.errno_name == "E2BIG" and ei.value.rule == "max_cpuid_entries"
    assert "kvm" in ei.value.source.lower() or "cpuid" in ei.value.source.lower()
    assert len(v.get_cpuid()) == limit  # the failed call left the stored table alone


# -- R4: linear-address width -----------------------------------------------------------------

@pytest.mark.parametrize("width,ok", [(0, True), (48, True), (57, True), (32, False), (50, False), (52, False), (64, False)])
@pytest.mark.parametrize("kernel", ["5.10", "6.1", "6.12", "6.18"])
def test_linear_width_check(kernel, width, ok):
    t = guest().set_field("0x80000008.0.eax[15:8]", width)
    v = vcpu(kernel)
    before = v.get_cpuid()
    got = errno_of(v.set_cpuid, t)
    assert got == (None if ok else "EINVAL")
    if not ok:
        assert v.get_cpuid() == before  # 5.9+: checked before installing


def test_maxphyaddr_is_never_checked_and_36_is_the_default():
    for bits in (0, 20, 36, 46, 52, 64, 255):
        v = vcpu()
        v.set_cpuid(guest().set_field("0x80000008.0.eax[7:0]", bits))
        assert v.derived.maxphyaddr == bits
    v = vcpu()
    v.set_cpuid(guest().set_field("0x80000000.0.eax", 0x80000001))  # 0x80000008 unreachable
    assert v.derived.maxphyaddr == 36
    assert v.derived.reserved_gpa_bits == ((1 << 64) - 1) & ~((1 << 36) - 1)


# -- R5: AMX TILEDATA needs permission ----------------------------------------------------------

@pytest.mark.parametrize("kernel,eperm", [("5.16", False), ("5.17", True), ("6.18", True)])
def test_tiledata_without_permission(kernel, eperm):
    t = guest().set_field("0xd.0.eax[18]", 1).set_field("0xd.0.eax[17]", 1)
    assert errno_of(vcpu(kernel).set_cpuid, t) == ("EPERM" if eperm else None)
    v = vcpu(kernel)
    v.grant_xfeature_permission(1 << 18)  # the SPR host has AMX, so permission can be granted
    assert errno_of(v.set_cpuid, t) is None
    # TILECFG alone passes the check (it is not a dynamic feature)
    assert errno_of(vcpu(kernel).set_cpuid, guest().set_field("0xd.0.eax[17]", 1)) is None


def test_permission_cannot_be_granted_on_a_host_without_amx():
    v = vcpu(host=ROME)
    with pytest.raises(KvmError) as ei:
        v.grant_xfeature_permission(1 << 18)
    assert ei.value.errno_name == "EOPNOTSUPP"


# -- R3: after KVM_RUN --------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,same,changed", [
    ("5.15", None, None),          # anything accepted
    ("5.16", "EINVAL", "EINVAL"),  # every call refused
    ("5.17", None, "EINVAL"),      # identical only
    ("6.18", None, "EINVAL"),
])
def test_set_cpuid_after_run_by_version(kernel, same, changed):
    v = vcpu(kernel)
    v.set_cpuid(guest())
    v.run()
    current = v.get_cpuid()
    assert errno_of(v.set_cpuid, current) == same
    assert errno_of(v.set_cpuid, current.set_field("0x6.0.eax[0]", 1 - current.get_field("0x6.0.eax[0]"))) == changed


def test_after_run_runtime_fields_do_not_count_as_changes():
    # cpuid_test (upstream): re-set after toggling CR4.OSXSAVE/PKE through KVM_SET_SREGS still succeeds
    v = vcpu()
    v.set_cpuid(guest())
    v.run()
    original = v.get_cpuid()
    v.set_cr4(CR4_OSXSAVE | CR4_PKE)
    assert errno_of(v.set_cpuid, original) is None  # KVM rewrites OSXSAVE/OSPKE in the incoming copy
    assert errno_of(v.set_cpuid, v.get_cpuid()) is None


def test_after_run_order_flags_and_maxphyaddr_changes_fail():
    v = vcpu()
    v.set_cpuid(guest())
    v.run()
    cur = v.get_cpuid()
    assert errno_of(v.set_cpuid, CpuidTable(reversed(list(cur)))) == "EINVAL"
    e7 = cur.get(7, 0)
    pos = list(cur).index(e7)
    assert errno_of(v.set_cpuid, cur.replace_at(pos, e7.replace(flags=0))) == "EINVAL"
    assert errno_of(v.set_cpuid, cur.set_field("0x80000008.0.eax[7:0]", 36)) == "EINVAL"
    assert errno_of(v.set_cpuid, cur.set_field("avx2", 1 - cur.get_field("avx2"))) == "EINVAL"
    assert v.get_cpuid() == cur


# -- runtime fields -------------------------------------------------------------------------------

def test_runtime_fields_follow_their_triggers():
    v = vcpu()
    t = guest().set_field("osxsave", 1).set_field("0xd.0.ebx", 12345)
    v.set_cpuid(t)
    got = v.get_cpuid()
    assert got.get_field("osxsave") == 0  # CR4 = 0 at reset
    assert got.get(0xD, 0).ebx == 576  # XCR0 = 1 at reset
    v.set_cr4(CR4_OSXSAVE)
    assert v.get_cpuid().get_field("osxsave") == 1
    v.set_xcr0(0x7)
    assert v.get_cpuid().get(0xD, 0).ebx == 832  # legacy+header 576 + AVX 256 at offset 576
    v.set_msr(MSR_IA32_APICBASE, 0xFEE00000)  # disabled
    assert v.get_cpuid().get_field("apic") == 0


def test_mwait_follows_misc_enable_only_with_the_quirk_disabled():
    t = guest().set_field("monitor", 0)
    v = vcpu()
    v.set_cpuid(t)
    v.set_msr(MSR_IA32_MISC_ENABLE, 1 << 18)
    assert v.get_cpuid().get_field("monitor") == 0  # quirk on: userspace owns the bit
    v = vcpu()
    v.disable_quirk("MISC_ENABLE_NO_MWAIT")
    v.set_cpuid(t)
    v.set_msr(MSR_IA32_MISC_ENABLE, 1 << 18)
    assert v.get_cpuid().get_field("monitor") == 1


def test_pv_unhalt_cleared_with_hlt_exits_disabled():
    kvm_leaves = CpuidTable([
        CpuidEntry(0x40000000, eax=0x40000001, ebx=0x4B4D564B, ecx=0x564B4D56, edx=0x4D),
        CpuidEntry(0x40000001, eax=0xFFFF),
    ])
    t = CpuidTable(list(guest()) + list(kvm_leaves))
    v = vcpu()
    v.set_cpuid(t)
    assert v.get_cpuid().get(0x40000001).eax >> 7 & 1 == 1
    v = vcpu()
    v.disable_hlt_exits()
    v.set_cpuid(t)
    assert v.get_cpuid().get(0x40000001).eax >> 7 & 1 == 0


def test_xsave_sizes_come_from_the_host_not_the_guest():
    # kvm-facts §2 / §9.4: 0xD.0 EBX uses host offsets even if the guest's 0xD subleaves lie
    t = guest().set_field("0xd.9.ebx", 4000)  # guest claims PKRU at 4000
    v = vcpu()
    v.set_cpuid(t)
    v.set_cr4(CR4_OSXSAVE)
    v.set_xcr0(0x207)
    assert v.get_cpuid().get(0xD, 0).ebx == 2696  # SPR PKRU offset 2688 + 8


def test_xss_in_compacted_size_from_618():
    for kernel, expect_xss in (("6.17", False), ("6.18", True)):
        v = vcpu(kernel)
        v.set_cpuid(guest())
        base = v.get_cpuid().get(0xD, 1).ebx
        if expect_xss:
            v.set_msr(MSR_IA32_XSS, 1 << 11)  # CET_U
            assert v.get_cpuid().get(0xD, 1).ebx > base
        else:
            assert errno_of(v.set_msr, MSR_IA32_XSS, 1 << 11) == "EINVAL"  # supported_xss is 0 before 6.18


# -- XCR0 rules (__kvm_set_xcr) ------------------------------------------------------------------

def test_xcr0_rules_and_guest_supported_xcr0_from_0xd_only():
    v = vcpu()
    assert v.get_xcr0() == 1
    assert errno_of(v.set_xcr0, 0x3) == "EINVAL"  # before SET_CPUID2: only XCR0=1
    v.set_cpuid(guest().set_field("avx", 0).set_field("pku", 0))  # flags off, 0xD.0 still lists AVX and PKRU
    for ok in (0x1, 0x3, 0x7, 0x207, 0xE7 | 0x200):
        assert errno_of(v.set_xcr0, ok) is None, hex(ok)
    for bad in (0x0, 0x2, 0x5, 0x27, 0x67, 0x8, 0x10, 0x1 | 1 << 17, 1 << 8 | 1, 1 << 63 | 1):
        assert errno_of(v.set_xcr0, bad) == "EINVAL", hex(bad)


def test_cr4_reserved_bits_follow_guest_cpuid():
    v = vcpu()
    v.set_cpuid(guest().set_field("pku", 0))
    assert errno_of(v.set_cr4, CR4_PKE) == "EINVAL"
    v2 = vcpu()
    v2.set_cpuid(guest())
    assert errno_of(v2.set_cr4, CR4_PKE) is None


# -- SGX XFRM -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,adjusted", [("5.12", False), ("5.13", True), ("6.3", True), ("6.4", False), ("6.18", False)])
def test_sgx_xfrm_trimmed_513_to_63_then_stored_verbatim(kernel, adjusted):
    t = guest().with_entry(CpuidEntry(0x12, 1, 1, eax=0x36, ebx=0, ecx=0xFFFFFFFC, edx=0xFFFFFFFF))
    v = vcpu(kernel)
    v.set_cpuid(t)
    e = v.get_cpuid().get(0x12, 1)
    if adjusted:
        gsx = v.derived.guest_supported_xcr0
        assert e.ecx == (0xFFFFFFFC & gsx) | 0b11 and e.edx == 0xFFFFFFFF & (gsx >> 32)
    else:
        assert (e.ecx, e.edx) == (0xFFFFFFFC, 0xFFFFFFFF)


# -- check() and the selftests --------------------------------------------------------------------

def test_check_reports_verdict_stored_ownership_and_derived():
    out = check(guest().set_field("0x80000008.0.eax[15:8]", 50), host=SPR)
    assert out.verdict == "rejected" and out.errno == "EINVAL"
    d = out.as_dict()
    assert d["rule"] == "vaddr_width_values" and "kvm_check_cpuid" in d["source"]
    ok = check(guest(), host=SPR, state={"cr4": CR4_OSXSAVE, "xcr0": 7})
    owners = {f["name"]: f for f in ok.as_dict()["fields"]}
    assert owners["osxsave"]["owner"] == "runtime" and owners["osxsave"]["value"] == 1
    assert owners["avx2"]["owner"] == "passthrough"
    assert ok.derived["guest_supported_xcr0"] & 0x7 == 0x7


def test_get_cpuid2_with_too_small_buffer():
    v = vcpu()
    v.set_cpuid(guest())
    n = len(v.get_cpuid())
    assert errno_of(v.get_cpuid, n - 1) == "E2BIG"
    assert len(v.get_cpuid(n)) == n


# -- more rules at the edges of their ranges --------------------------------------------------

KVM_LEAVES = [
    CpuidEntry(0x40000000, eax=0x40000001, ebx=0x4B4D564B, ecx=0x564B4D56, edx=0x4D),
    CpuidEntry(0x40000001, eax=0xFFFF),
]


@pytest.mark.parametrize("kernel,first_set_clears", [("5.15", True), ("5.17", False), ("6.8", False), ("6.9", True), ("6.18", True)])
def test_pv_unhalt_first_set(kernel, first_set_clears):
    # 5.17-6.8 looked the PV leaf up through the *previous* table's base (4736d85f0d18 fixed it in 6.9)
    t = CpuidTable(list(guest()) + KVM_LEAVES)
    v = vcpu(kernel)
    v.disable_hlt_exits()
    v.set_cpuid(t)
    assert (v.get_cpuid().get(0x40000001).eax >> 7 & 1 == 0) == first_set_clears
    v.set_cpuid(t)  # the second SET knows the base in every version
    assert v.get_cpuid().get(0x40000001).eax >> 7 & 1 == 0


@pytest.mark.parametrize("kernel,allowed", [("6.13", True), ("6.14", False), ("6.18", False)])
def test_disable_hlt_exits_after_vcpu_creation(kernel, allowed):
    v = vcpu(kernel)
    v.set_cpuid(guest())
    assert errno_of(v.disable_hlt_exits) == (None if allowed else "EINVAL")


@pytest.mark.parametrize("kernel,noop", [("6.12", False), ("6.13", True)])
def test_unchanged_apic_base_write(kernel, noop):
    v = vcpu(kernel)
    v.set_cpuid(guest().set_field("0x80000008.0.eax[7:0]", 20))  # 0xfee00000 is now above MAXPHYADDR
    assert errno_of(v.set_msr, MSR_IA32_APICBASE, v.get_msr(MSR_IA32_APICBASE)) == (None if noop else "EINVAL")
    assert errno_of(v.set_msr, MSR_IA32_APICBASE, 0xFEE00100) == "EINVAL"


@pytest.mark.parametrize("kernel,unconditional", [("6.13", False), ("6.14", True)])
def test_osxsave_follows_cr4_even_without_host_xsave_from_614(kernel, unconditional):
    # without host XSAVE, <= 6.13 never touched 1.ECX.OSXSAVE: userspace's 1 survived;
    # 6.14 made the update unconditional, so it follows CR4.OSXSAVE (0 at reset)
    old = HostProfile.builtin("sapphire-rapids")
    no_xsave = HostProfile.from_table(old.cpuid.set_field("xsave", 0), name="no-xsave")
    v = vcpu(kernel, host=no_xsave)
    v.set_cpuid(guest().set_field("osxsave", 1))
    assert v.get_cpuid().get_field("osxsave") == (0 if unconditional else 1)
    assert errno_of(v.set_cr4, CR4_OSXSAVE) == "EINVAL"  # KVM's caps lack XSAVE: the bit is reserved


@pytest.mark.parametrize("kernel,aligned", [("5.16", False), ("5.17", True)])
def test_compacted_size_alignment_from_517(kernel, aligned):
    # cc04b6a21d43 (5.17) made xstate_required_size() honour 0xD.i ECX[1] (64-byte alignment in compacted
    # form).  On real CPUs only AMX components carry the flag, and 5.16 cannot enable AMX at all, so the
    # old arithmetic is checked on the runtime rule itself with AMX forced into XCR0.
    from cpuidkit.kvm.runtime import VcpuState, apply_runtime
    from cpuidkit.core.kernels import kernel_profile
    from cpuidkit.core.xsave import compacted_size

    e = SPR.cpuid.get(0xD, 1)
    entries = [e.replace(eax=e.eax | 0b1010)]
    apply_runtime(entries, VcpuState(xcr0=0x602E7), kernel_profile(kernel), SPR, "vmx")
    assert entries[0].ebx == compacted_size(SPR.xsave_components, 0x602E7, honour_alignment=aligned)
    assert compacted_size(SPR.xsave_components, 0x602E7, honour_alignment=True) != compacted_size(
        SPR.xsave_components, 0x602E7, honour_alignment=False)
    if aligned:  # and through the real path: XSETBV of AMX, then KVM_GET_CPUID2
        v = vcpu(kernel)
        v.grant_xfeature_permission(1 << 18)
        v.set_cpuid(SPR.cpuid)
        v.set_cr4(CR4_OSXSAVE)
        v.set_xcr0(0x602E7)
        assert v.get_cpuid().get(0xD, 1).ebx == entries[0].ebx


@pytest.mark.parametrize("kernel,lam_rule", [("6.7", False), ("6.8", True)])
def test_cr4_lam_sup_rule_from_68(kernel, lam_rule):
    v = vcpu(kernel)
    v.set_cpuid(guest().set_field("0x7.1.eax[26]", 0))
    lam = 1 << 28
    # before 6.8 KVM does not know CR4.LAM_SUP at all (reserved); from 6.8 it is reserved without LAM
    assert errno_of(v.set_cr4, lam) == "EINVAL"
    assert bool(v.derived.cr4_reserved_bits & lam)
    assert ("LAM_SUP<-LAM" in v.kernel_profile.value("cr4_reserved_from_cpuid")) == lam_rule


@pytest.mark.parametrize("kernel,readback_ok", [("6.14", True), ("6.15", False), ("6.17", False), ("6.18", True)])
def test_lazy_runtime_update_regression_615_to_618y(kernel, readback_ok):
    # 93da6af3ae56 (6.15) made runtime updates lazy; until e2b43fb25243 (6.19, queued for 6.18.y) a
    # post-run SET compared against a stale stored table: QEMU's vCPU re-plug failed with EINVAL
    v = vcpu(kernel)
    v.set_cpuid(guest())
    v.run()
    v.set_cr4(CR4_OSXSAVE)  # a trigger: 6.15+ only marks the table dirty
    # what KVM_GET_CPUID2 would now return, built without calling it (a GET would flush the update)
    incoming = v.stored.set_field("osxsave", 1)
    assert errno_of(v.set_cpuid, incoming) == (None if readback_ok else "EINVAL")
    if not readback_ok:
        # the pending update was lost with the failed call: the stored table stays stale
        assert v.get_cpuid().get_field("osxsave") == 0
    else:
        assert v.get_cpuid().get_field("osxsave") == 1


@pytest.mark.parametrize("kernel,osxsave_ok", [("6.13", True), ("6.14", False)])
def test_cr4_before_the_first_set_cpuid(kernel, osxsave_ok):
    # before 6.14 cr4_guest_rsvd_bits stayed 0 until KVM_SET_CPUID2; 6.14's kvm_arch_vcpu_create
    # derives it from the empty table, so every CPUID-dependent CR4 bit is reserved until CPUID is set
    v = vcpu(kernel)
    assert errno_of(v.set_cr4, CR4_OSXSAVE) == (None if osxsave_ok else "EINVAL")
    v2 = vcpu(kernel)
    v2.set_cpuid(guest())
    assert errno_of(v2.set_cr4, CR4_OSXSAVE) is None


@pytest.mark.parametrize("kernel,left", [("5.8", "new"), ("5.9", "empty"), ("5.10", "old")])
def test_what_a_failed_set_leaves_before_and_after_510(kernel, left):
    # 5.8.1: the entries are copied into the vCPU and checked afterwards, and stay; 5.9.1 (kvm_check_cpuid on
    # the installed entries) resets cpuid_nent to 0 on failure: an EMPTY table, nothing re-derived; 5.10.0
    # (vmemdup_user + kvm_check_cpuid before the swap) keeps the old table
    small = CpuidTable(e for e in guest() if e.function in (0, 1, 6, 0x80000000, 0x80000008))  # < 80 entries
    small = small.set_field("0x80000008.0.eax[7:0]", 40)
    v = vcpu(kernel)
    v.set_cpuid(small)
    bad = small.set_field("0x80000008.0.eax[15:8]", 50).set_field("0x6.0.eax[0]", 1).set_field(
        "0x80000008.0.eax[7:0]", 44
    )
    assert errno_of(v.set_cpuid, bad) == "EINVAL"
    got = v.get_cpuid()
    width = got.get_field("0x80000008.0.eax[15:8]")
    assert {"new": width == 50, "empty": len(got) == 0, "old": len(got) == len(small) and width != 50}[left], got
    if left == "empty":
        assert v.derived.maxphyaddr == 40  # what KVM derived from the previous table stays


@pytest.mark.parametrize("kernel,found", [("5.15", False), ("5.16", True)])
def test_kvm_leaves_behind_hyperv_leaves(kernel, found):
    # 5.16's signature scan finds KVM's leaves at 0x40000100 (Hyper-V first); before, only 0x40000001 counted
    from cpuidkit import CpuidEntry

    hv = [CpuidEntry(0x40000000, eax=0x4000000A, ebx=0x7263694D, ecx=0x666F736F, edx=0x76482074),
          CpuidEntry(0x40000001, eax=0x31237648)]
    kvm = [CpuidEntry(0x40000100, eax=0x40000101, ebx=0x4B4D564B, ecx=0x564B4D56, edx=0x4D),
           CpuidEntry(0x40000101, eax=0xFFFF)]
    t = CpuidTable(list(guest()) + hv + kvm)
    v = vcpu(kernel)
    v.disable_hlt_exits()
    v.set_cpuid(t)
    v.set_cpuid(t)  # twice: 5.17-6.8 miss the first SET
    assert (v.get_cpuid().get(0x40000101).eax >> 7 & 1 == 0) == found
    assert v.get_cpuid().get(0x40000001).eax == 0x31237648  # Hyper-V's leaf is never touched


@pytest.mark.parametrize("kernel,cet_known", [("6.17", False), ("6.18", True)])
def test_cr4_cet_from_618(kernel, cet_known):
    v = vcpu(kernel)
    v.set_cpuid(guest().set_field("shstk", 1))
    cet = 1 << 23
    assert errno_of(v.set_cr4, cet) == (None if cet_known else "EINVAL")


@pytest.mark.parametrize(
    "kernel,pcid_rule", [("5.10", False), ("5.10.22", False), ("5.10.23", True), ("5.11", True), ("5.12", True)]
)
def test_cr4_pcide_follows_pcid_from_511_and_5_10_23(kernel, pcid_rule):
    # 4683d758f48e "Supplement __cr4_reserved_bits() with X86_FEATURE_PCID check": 5.11-rc7 (5.10.0 lacks it,
    # 5.11.0 has it), backported in 5.10.23 (its stable review lists it; 5.10.35 has it)
    v = vcpu(kernel)
    v.set_cpuid(guest().set_field("pcid", 0))
    assert bool(v.derived.cr4_reserved_bits & 1 << 17) == pcid_rule


@pytest.mark.parametrize("kernel,autoibrs_checked", [("6.2", False), ("6.3", True)])
def test_efer_autoibrs_from_63(kernel, autoibrs_checked):
    v = vcpu(kernel, host=HostProfile.builtin("epyc-genoa"))
    v.set_cpuid(HostProfile.builtin("epyc-genoa").cpuid.set_field("autoibrs", 0))
    assert (not v.derived.efer_allowed >> 21 & 1) == autoibrs_checked
    assert v.derived.efer_allowed >> 11 & 1  # NX allowed: the guest has NX


@pytest.mark.parametrize("kernel,amx", [("5.16", False), ("5.17", True)])
def test_amx_joins_kvm_supported_xcr0_in_517(kernel, amx):
    # KVM_SUPPORTED_XCR0 gains XFEATURE_MASK_XTILE in 5.17 (supported_xcr0_mask)
    v = vcpu(kernel)
    v.grant_xfeature_permission(1 << 18)
    v.set_cpuid(SPR.cpuid)
    v.set_cr4(CR4_OSXSAVE)
    assert bool(v.derived.guest_supported_xcr0 & 0x60000) == amx
    assert errno_of(v.set_xcr0, 0x60007) == (None if amx else "EINVAL")


def test_code_constants_agree_with_the_kernel_data():
    # KVM_SUPPORTED_XCR0 in cpuidkit.core.hosts is the newest row of supported_xcr0_mask
    from cpuidkit.core.hosts import KVM_SUPPORTED_XCR0
    from cpuidkit.core.kernels import kernel_profile

    assert KVM_SUPPORTED_XCR0 == int(kernel_profile("6.18").value("supported_xcr0_mask"), 0)


@pytest.mark.parametrize("kernel,refreshes", [("5.10", False), ("5.15", True), ("6.17", True), ("6.18", False)])
def test_an_unchanged_xss_write_refreshes_runtime_fields(kernel, refreshes):
    # kvm_set_msr_common(MSR_IA32_XSS): 5.15-6.17 run the runtime update on every accepted write (0 is
    # the only accepted value before 6.18); 6.18.2 returns early when the value does not change
    v = vcpu(kernel)
    v.set_cpuid(guest().set_field("monitor", 0).set_field("0xd.1.eax[3]", 1))
    v.set_msr(MSR_IA32_MISC_ENABLE, 1 << 18)  # quirk on: stored, CPUID untouched
    v.disable_quirk("MISC_ENABLE_NO_MWAIT")  # not a trigger either: MWAIT stays 0 for now
    assert v.get_cpuid().get_field("monitor") == 0
    v.set_msr(MSR_IA32_XSS, 0)
    assert v.get_cpuid().get_field("monitor") == (1 if refreshes else 0)


@pytest.mark.parametrize("kernel,cfg_shown", [("6.3", True), ("6.4", False)])
def test_supported_cpuid_hides_tilecfg_too_from_64(kernel, cfg_shown):
    from cpuidkit.core.kernels import kernel_profile

    t = SPR.supported_cpuid(kernel=kernel_profile(kernel))
    assert t.get(0xD, 0).eax >> 18 & 1 == 0
    assert bool(t.get(0xD, 0).eax >> 17 & 1) == cfg_shown


# -- KVM_SET_SREGS carries the APIC base (lab: Debian 6.1.192 / 6.12.117 with kvm_amd) --------------------


@pytest.mark.parametrize("vendor", ["vmx", "svm", "pvm"])
@pytest.mark.parametrize("kernel,refused", [("5.10", True), ("6.1", True), ("6.12", True), ("6.13", False), ("6.18", False)])
@pytest.mark.parametrize("maxphyaddr", [0, 20, 31, 32, 36])
def test_maxphyaddr_below_32_fails_every_sregs_write_before_613(kernel, refused, vendor, maxphyaddr):
    # __set_sregs(_common) hands sregs->apic_base (the unchanged 0xfee00900) to kvm_set_apic_base, whose
    # reserved bits start at MAXPHYADDR; from 6.13 kvm_apic_set_base returns 0 first for an unchanged value
    # (live 6.18.44 + pvm: accepted; a changed base is still refused there, so it is not a vendor matter)
    narrow = guest().set_field("0x80000008.0.eax[7:0]", maxphyaddr)
    v = vcpu(kernel, vendor)
    v.set_cpuid(narrow)
    expected = "EINVAL" if refused and maxphyaddr < 32 else None
    assert errno_of(v.set_cr4, 0) == expected
    assert errno_of(v.run) == expected  # the probe sets CS through KVM_SET_SREGS first
    assert v.has_run == (expected is None)  # refused there, the vCPU never entered...
    if expected:
        v.set_cpuid(guest())  # ...so a different table is still accepted
    w = vcpu(kernel, vendor)
    w.set_cpuid(narrow)  # a changed base above MAXPHYADDR is refused in every kernel
    assert errno_of(w.set_msr, MSR_IA32_APICBASE, 0xFEE00100) == ("EINVAL" if maxphyaddr < 32 else None)


def test_a_changed_apic_base_then_a_narrower_table_breaks_sregs():
    v = vcpu("6.1", "svm", ROME)
    v.set_cpuid(guest(ROME).set_field("0x80000008.0.eax[7:0]", 40))
    v.set_msr(MSR_IA32_APICBASE, 0x1FEE00900)  # bit 32: fine with MAXPHYADDR 40
    v.set_cpuid(guest(ROME).set_field("0x80000008.0.eax[7:0]", 32))  # now bit 32 is reserved
    assert errno_of(v.set_cr4, 0) == "EINVAL"
    assert vcpu("6.13", "svm", ROME).kernel_profile.flag("apic_base_unchanged_noop")


# -- KVM_RUN with HLT exits disabled (lab: kvm_amd; live: pvm) ----------------------------------------------


@pytest.mark.parametrize("vendor,answer", [("svm", "EIO"), ("vmx", "ETIMEDOUT"), ("pvm", None)])
@pytest.mark.parametrize("kernel", ["6.1", "6.12", "6.18"])
def test_run_with_hlt_exits_disabled_before_the_vcpu(kernel, vendor, answer):
    # svm init_vmcb sets INTERCEPT_HLT only without kvm_hlt_in_guest (at vCPU creation): the probe's hlt
    # sleeps until a host interrupt and resumes after it (lab: KVM_EXIT_IO); vmx keeps the HLT activity
    # state (ETIMEDOUT); pvm intercepts HLT anyway (live 6.18.44)
    v = vcpu(kernel, vendor)
    v.disable_hlt_exits()
    v.set_cpuid(guest())
    assert errno_of(v.run) == answer
    assert v.has_run  # the vCPU entered either way: the post-run SET rule applies
    if answer:
        assert errno_of(v.run) == answer  # every run


@pytest.mark.parametrize("vendor", ["svm", "vmx"])
def test_hlt_exits_disabled_after_the_vcpu_keep_the_intercept(vendor):
    v = vcpu("6.1", vendor)
    v.set_cpuid(guest())
    v.disable_hlt_exits()  # accepted before 6.14, but the vCPU was set up with the HLT intercept
    assert errno_of(v.run) is None
    assert v.state.hlt_exits_disabled  # PV_UNHALT still follows kvm_hlt_in_guest()


def test_check_reports_a_failed_run_as_a_state_error():
    t = guest().set_field("0x80000008.0.eax[7:0]", 31)
    out = check(t, kernel="6.1", vendor="vmx", host=SPR, state=VcpuSetup(has_run=True))
    assert [e["step"] for e in out.state_errors] == ["run"] and out.verdict == "accepted"
    assert check(t, kernel="6.18", vendor="vmx", host=SPR, state=VcpuSetup(has_run=True)).state_errors == ()


# -- KVM_GET_CPUID2's nent on success (lab: 6.1.192 256, 6.12.117 the count) -------------------------------


@pytest.mark.parametrize("kernel,reported", [("5.10", 256), ("6.1", 256), ("6.4", 256), ("6.5", 30), ("6.12", 30)])
def test_get_cpuid2_nent_on_success(kernel, reported):
    # ab322c43cce9 "Update number of entries for KVM_GET_CPUID2 on success, not failure" (kvm-x86-misc-6.5):
    # before it nent was written only on the error path, which x86.c never copies back
    v = vcpu(kernel, "svm")
    v.set_cpuid(CpuidTable(guest().entries[:30]))
    assert v.get_cpuid2_nent(256) == reported
    assert v.get_cpuid2_nent(30) == 30
    assert errno_of(v.get_cpuid2_nent, 29) == "E2BIG"
    assert len(v.get_cpuid()) == 30


# -- stable releases -------------------------------------------------------------------------------------


def test_point_releases_take_their_stable_rows():
    # 6.18.0-6.18.2 lack e2b43fb25243 (leftymods/linux-6.18.y v6.18.2 / v6.18.3); the 6.18 profile is 6.18.y
    assert modelled_kernel("6.18.1") == "6.18"
    assert not kernel_profile("6.18.1").flag("set_cpuid_refreshes_current")
    assert kernel_profile("6.18.3").flag("set_cpuid_refreshes_current")
    assert kernel_profile("6.18").flag("set_cpuid_refreshes_current")
    assert kernel_profile("6.18.44") == kernel_profile("6.18") != kernel_profile("6.18.2")
    notes = kernel_profile("6.18").stable_notes()
    assert any("6.18.0 to 6.18.2" in n and "set_cpuid_refreshes_current" in n for n in notes)
    assert kernel_profile("6.18.2").stable_notes() and not kernel_profile("6.18.5").stable_notes()
    assert "releases 6.18.0 to 6.18.2" in kernel_profile("6.18.2").source("set_cpuid_refreshes_current")
    # 5.10.y: the GET_CPUID2 copy fix from 5.10.15, PCIDE from 5.10.23; the 5.10 profile is 5.10.0
    assert kernel_profile("5.10").value("get_cpuid2_copies_entries") == "false"
    assert kernel_profile("5.10.14").value("get_cpuid2_copies_entries") == "false"
    assert kernel_profile("5.10.15").value("get_cpuid2_copies_entries") == "true"
    assert {n.split(":")[0] for n in kernel_profile("5.10").stable_notes()} == {
        "5.10.15 and later 5.10.y", "5.10.23 and later 5.10.y"
    }


def test_618_0_to_2_reject_the_stale_readback_after_run():
    # the lazy-update regression (6.15 to 6.18.2): a pending runtime update is not applied before the
    # post-run comparison, so re-setting the stale table fails; 6.18.3 and later accept it
    t = guest()
    for release, ok in (("6.17", False), ("6.18.1", False), ("6.18.2", False), ("6.18", True), ("6.18.3", True)):
        v = vcpu(release)
        v.set_cpuid(t)
        readback = v.get_cpuid()  # what the VMM read before the trigger
        v.run()
        v.set_cr4(CR4_OSXSAVE)  # a trigger: only marked dirty (lazy updates)
        assert errno_of(v.set_cpuid, readback) == (None if ok else "EINVAL"), release


def test_mwait_toggle_checks_sse3_with_kvms_lookup():
    """guest_cpuid_has(XMM3) finds leaf 1 with KVM's lookup for index 0: a flagged 1.255 entry does not count
    (EINVAL), an unflagged one does (found by the lab on Debian's 6.1 with the issue-15 generator)."""
    host = HostProfile.builtin("epyc-milan")
    leaf1 = host.cpuid.get(1)
    assert leaf1 is not None and leaf1.ecx & 1  # SSE3
    for flags, ok in ((1, False), (0, True)):
        t = host.cpuid.without(1).appended(leaf1.replace(index=255, flags=flags))
        v = SimulatedVcpu("6.1", "svm", host)
        v.disable_quirk("MISC_ENABLE_NO_MWAIT")
        v.set_cpuid(t)
        if ok:
            v.set_msr(MSR_IA32_MISC_ENABLE, 1 << 18)
            assert v.get_cpuid().get_any(1).ecx >> 3 & 1  # the runtime update finds leaf 1 whatever its index
        else:
            with pytest.raises(KvmError) as info:
                v.set_msr(MSR_IA32_MISC_ENABLE, 1 << 18)
            assert info.value.errno_name == "EINVAL"
