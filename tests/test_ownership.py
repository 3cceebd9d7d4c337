"""Who owns each field: the catalog's owner column, and per-vCPU ownership (runtime, vendor, not-virtualized)."""

from __future__ import annotations

import pytest

from cpuidkit.live import host_profile
from cpuidkit.core.catalog import catalog
from cpuidkit.kvm.check import check
from cpuidkit.core.hosts import HostProfile
from cpuidkit.kvm.ownership import classify_field, ownership
from cpuidkit.kvm.vcpu import SimulatedVcpu


def test_catalog_owner_column_matches_the_model():
    # data/fields.csv's owner column is filled by tools/fill_owner_column.py; a model change must refresh it
    stale = [(f.name, f.owner, classify_field(f)) for f in catalog() if f.owner != classify_field(f)]
    assert not stale, f"re-run tools/fill_owner_column.py: {stale[:10]}"


@pytest.mark.parametrize("name,owner", [
    ("osxsave", "runtime"), ("ospke", "runtime"), ("apic", "runtime"), ("monitor", "runtime"),
    ("xsave_size_enabled", "runtime"), ("xsaves_size_enabled", "runtime"), ("kvm_pv_unhalt", "runtime"),
    ("virt_addr_bits", "checked"), ("xcr0_supported_lo", "checked"),
    ("phys_addr_bits", "derived"), ("pku", "derived"), ("la57", "derived"), ("lm", "derived"), ("nx", "derived"),
    ("avx2", "passthrough"), ("avx512f", "passthrough"), ("hypervisor", "passthrough"),
    ("guest_phys_addr_bits", "passthrough"), ("sgx_xfrm_lo", "passthrough"),
])
def test_known_owners(name, owner):
    # facts from kvm-facts.md §1-3 (runtime rules, kvm_check_cpuid, kvm_vcpu_after_set_cpuid)
    assert catalog().resolve(name).owner == owner


def test_runtime_drivers_depend_on_the_vcpu_state():
    host = HostProfile.builtin("sapphire-rapids")
    out = check(host.cpuid.set_field("0xd.0.eax[18]", 0), host=host)
    by = {o["name"]: o for o in out.as_dict()["fields"]}
    assert by["osxsave"]["driver"] == "CR4.OSXSAVE"
    assert by["monitor"]["owner"] == "passthrough"  # the MWAIT quirk is on by default
    out = check(host.cpuid.set_field("0xd.0.eax[18]", 0), host=host, state={"quirks_disabled": ["MISC_ENABLE_NO_MWAIT"]})
    by = {o["name"]: o for o in out.as_dict()["fields"]}
    assert by["monitor"]["owner"] == "runtime" and "MISC_ENABLE" in by["monitor"]["driver"]


def test_not_virtualized_needs_a_measured_supported_table():
    host = HostProfile.builtin("live-kvm-epyc")  # has KVM_GET_SUPPORTED_CPUID from a real machine
    guest = host.cpuid  # the raw host CPUID: far more than KVM supports (e.g. SSE4.2 on this pvm host)
    v = SimulatedVcpu(kernel="6.18", vendor="vmx", host=host)
    v.set_cpuid(guest)
    owners = {o.field.name: o.owner for o in ownership(v)}
    sup = host.supported
    for o in ownership(v):
        f = o.field
        if o.owner == "not-virtualized":
            e = sup.get(f.leaf, o.subleaf)  # a leaf KVM does not report at all supports nothing
            assert o.value == 1 and (e is None or not (e.reg(f.register) >> f.lo) & 1)
    assert owners["sse4_2"] == "not-virtualized"
    assert owners["x2apic"] == "passthrough"  # KVM supports it


@pytest.mark.kvm
def test_pvm_owns_what_it_rewrites_on_this_host():
    from cpuidkit.live import LiveVcpu

    host = host_profile()
    if host.vendor_module != "pvm":
        pytest.skip("the pvm module is not the vendor module here")
    v = SimulatedVcpu(kernel="6.18", vendor="pvm", host=host)
    v.set_cpuid(host.supported)
    owned = {o.field.name for o in ownership(v) if o.owner == "vendor"}
    # every field the model says pvm owns really is forced: set the opposite on the real kernel
    with LiveVcpu() as lv:
        lv.set_cpuid(host.supported)
        real = lv.get_cpuid()
    assert owned, "pvm should own some fields in leaves 1, 7 and 0xD"
    for o in ownership(v):
        if o.owner == "vendor" and o.field.is_flag:
            assert o.field.leaf in (1, 7, 0xD)
            assert real.get_field(o.field.ref_for(o.subleaf)) == o.value
