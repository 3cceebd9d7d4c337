"""The lint of every built-in host's own KVM_GET_SUPPORTED_CPUID (issue 13): each finding listed, with why.

A built-in host's supported table is predicted for its kernel and vendor (cpuidkit.core.supported) unless it was
measured (live-kvm-epyc).  KVM never offers OSXSAVE, MONITOR, the hypervisor's topology or leaves it does not
know, so the raw-CPU noise the lint found when the raw CPUID stood in for the supported table is gone; what
remains is listed here with the reason it is expected.  A new finding, or an expected one that disappears, fails
the test: the list is the reviewed state.
"""

from __future__ import annotations

import pytest

from cpuidkit.analysis.lint import lint_table
from cpuidkit.core.hosts import builtin_hosts

XSAVE_SIZE = (
    "0xD.0 EBX: KVM_GET_SUPPORTED_CPUID reports the XSAVE size for every state it supports; in a vCPU KVM "
    "recomputes the field for the guest's XCR0 (runtime-owned, information only)"
)
XSAVES_SIZE = "0xD.1 EBX: the compacted size for XCR0|IA32_XSS, recomputed by KVM at run time like 0xD.0 EBX"
AMX = (
    "asked without AMX guest permission (arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)): since 6.4 KVM hides TILECFG and "
    "TILEDATA from 0xD.0 (kvm_get_filtered_xcr0) and keeps the leaf-7 AMX bits; a VMM asks for the permission first"
)
PVM = (
    "measured kvm_pvm: its supported table clears {what} in leaf {leaf} while 0xD still lists the state; the module "
    "forces them on after KVM_SET_CPUID2 (the host's vendor_rewrite, docs/model.md)"
)

EXPECTED: dict[str, dict[tuple[str, tuple[str, ...]], str]] = {
    "skylake-client": {},
    "cascade-lake": {},
    "ice-lake": {},
    "sapphire-rapids": {},
    "emerald-rapids": {},
    "granite-rapids": {},
    "sierra-forest": {},
    "epyc-rome": {},
    "epyc-milan": {},
    "epyc-genoa": {},
    "live-kvm-epyc": {
        ("xstate_without_feature", ("0xd.0.eax[2]", "avx")): PVM.format(what="AVX", leaf="1"),
        ("pkru_without_pku", ("0xd.0.eax[9]", "pku")): PVM.format(what="PKU", leaf="7"),
    },
}
for _name in EXPECTED:
    EXPECTED[_name][("runtime_owned_value", ("xsave_size_enabled",))] = XSAVE_SIZE
for _name in ("skylake-client", "cascade-lake", "ice-lake", "sapphire-rapids", "emerald-rapids", "granite-rapids"):
    EXPECTED[_name][("runtime_owned_value", ("xsaves_size_enabled",))] = XSAVES_SIZE
for _name in ("sierra-forest", "epyc-rome", "epyc-milan", "epyc-genoa"):
    EXPECTED[_name][("runtime_owned_value", ("xsaves_size_enabled",))] = XSAVES_SIZE
for _name in ("sapphire-rapids", "emerald-rapids", "granite-rapids"):
    for _feature in ("amx_tile", "amx_bf16", "amx_int8"):
        EXPECTED[_name][("amx_without_xcr0", (_feature, "0xd.0.eax[17]", "0xd.0.eax[18]"))] = AMX


def test_every_builtin_host_is_listed():
    assert set(EXPECTED) == set(builtin_hosts())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lint_of_the_hosts_own_supported_table(name):
    host = builtin_hosts()[name]
    findings = lint_table(host.supported_cpuid(), host=host)
    got = {(f.rule, tuple(f.fields)) for f in findings}
    assert got == set(EXPECTED[name]), f"{name} ({host.supported_label}): {sorted(got)}"
    assert all(reason for reason in EXPECTED[name].values())
    assert not [f for f in findings if f.severity == "illegal"], "KVM's own table is never illegal"
