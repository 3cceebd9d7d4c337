"""The model against real kernels in the lab: Debian's 6.1 and 6.12 with upstream kvm_amd, booted in QEMU.

The differential scenarios of tests/test_differential.py (every scripted one, and seeded random
ones from the kernel's own KVM_GET_SUPPORTED_CPUID) run on a lab vCPU and on the model built for that
kernel (cpuidkit.analysis.lab_agreement): same errno at every step, the same final KVM_GET_CPUID2
table on every register (kvm_amd owns no field the way pvm does), the same state read back
afterwards (XCR0, MSRs, GET_CPUID2's nent, which CR4 bits and XCR0 values are accepted).  100 %
agreement is required; in CI these tests are required (CPUIDKIT_REQUIRE=lab).  Each kernel boots
once per session (the ``lab`` fixture of tests/conftest.py, shared with tests/test_lab.py).
"""

from __future__ import annotations

import random

import pytest

from cpuidkit import CpuidTable, KvmError
from cpuidkit.analysis.agreement import Step, random_scenario, scripted_scenarios
from cpuidkit.analysis.lab_agreement import PROBES, compare_backends, lab_host_profile, lab_model
from cpuidkit.kvm.interface import MSR_IA32_APICBASE
from cpuidkit.kvm.vcpu import SimulatedVcpu

pytestmark = pytest.mark.lab

N_RANDOM = 300
SEED = 20261212


@pytest.fixture(scope="session")
def lab_hosts():
    """The model's host per lab kernel (measured once per booted lab)."""
    return {}


@pytest.fixture()
def model(lab, lab_hosts):
    key = (lab.series, lab.pid)
    if key not in lab_hosts:
        lab_hosts[key] = lab_host_profile(lab)
    return lab_hosts[key], lab_model(lab, lab_hosts[key])


def _disagreements(lab, make_model, scenarios, seen: set[str] | None = None):
    out = []
    for name, steps in scenarios:
        case = compare_backends(make_model, lab.vcpu, steps)
        if seen is not None:
            seen.update(e for e in case.kernel.errnos if e)
        if case.diff:
            out.append((name, [str(s) for s in steps], case.diff[:5]))
    return out


def test_the_model_host_is_the_lab_guest(lab, model):
    host, make = model
    assert host.vendor_module == "svm" and host.supported is not None and len(host.supported) > 20
    v = make()
    assert (v.kernel, v.vendor) == (lab.kernel, "svm") and v.kernel == lab.series


def test_every_scripted_scenario_agrees(lab, model):
    host, make = model
    scripted = scripted_scenarios(host.supported)
    assert len(scripted) >= 40
    bad = _disagreements(lab, make, scripted.items())
    assert not bad, f"{lab.label}: {len(bad)} of {len(scripted)} scripted scenarios disagree: {bad[:5]}"


def test_seeded_random_scenarios_agree(lab, model):
    host, make = model
    rng = random.Random(SEED)
    scenarios = [(f"random {i}", random_scenario(rng, host.supported)) for i in range(N_RANDOM)]
    seen: set[str] = set()
    bad = _disagreements(lab, make, scenarios, seen)
    print(f"{lab.label}: {N_RANDOM - len(bad)}/{N_RANDOM} random cases agree (seed {SEED}), {len(PROBES)} probes each")
    assert not bad, bad[:5]
    # agreement means little unless the kernel really refuses: the generator reaches every kind of answer
    assert {"EINVAL", "E2BIG", "EPERM", "EIO"} <= seen, seen


def test_get_cpuid2_reads_the_real_entries_and_the_model_predicts_nent(lab, model):
    """Debian's 6.1 leaves nent unchanged by a successful KVM_GET_CPUID2 (256 in, 256 out; 30 entries held).

    The lab backend still reads exactly the 30 entries, and the model predicts what the kernel itself
    reports: 256 on 6.1 (before ab322c43cce9, 6.5), the count on 6.12.
    """
    host, make = model
    table = CpuidTable(host.supported.entries[:30])
    m = make()
    m.set_cpuid(table)
    with lab.vcpu() as v:
        v.set_cpuid(table)
        got = v.get_cpuid()
        assert len(got) == 30 and [e.key() for e in got] == [e.key() for e in table]
        reported = v.get_cpuid2_nent(256)
        assert reported == m.get_cpuid2_nent(256)
        assert reported == (256 if lab.series == "6.1" else 30)
        assert v.get_cpuid2_nent(30) == m.get_cpuid2_nent(30) == 30
        with pytest.raises(KvmError) as real:
            v.get_cpuid2_nent(29)
        with pytest.raises(KvmError) as modelled:
            m.get_cpuid2_nent(29)
        assert real.value.errno_name == modelled.value.errno_name == "E2BIG"
    assert SimulatedVcpu("6.1", "svm", host).kernel_profile.value("get_cpuid2_nent_on_success") == "unchanged"


@pytest.mark.parametrize("maxphyaddr", [0, 20, 31, 32])
def test_maxphyaddr_below_32_fails_every_sregs_write_in_both(lab, model, maxphyaddr):
    """The APIC base KVM_SET_SREGS carries is re-validated (before 6.13): model and kernel agree, run included."""
    host, make = model
    table = host.supported.set_field("0x80000008.0.eax[7:0]", maxphyaddr)
    steps = [Step("set_cpuid", (table,)), Step("set_cr4", (0,)), Step("run"), Step("set_cpuid", (table,))]
    case = compare_backends(make, lab.vcpu, steps)
    assert not case.diff, case.diff
    expected = "EINVAL" if maxphyaddr < 32 else None
    assert case.kernel.errnos[1:3] == [expected, expected]
    # a changed base above MAXPHYADDR is refused as an MSR write too
    case = compare_backends(make, lab.vcpu, [Step("set_cpuid", (table,)), Step("set_msr", (MSR_IA32_APICBASE, 0xFEE00100))])
    assert not case.diff, case.diff


def test_hlt_exits_disabled_before_the_vcpu_leave_the_hlt_to_the_guest(lab, model):
    """svm: the probe's hlt no longer exits (KVM_EXIT_IO after it resumes); enabled after the vCPU: still HLT."""
    host, make = model
    before = [Step("disable_hlt_exits"), Step("set_cpuid", (host.supported,)), Step("run"), Step("set_cpuid", (host.supported,))]
    after = [Step("set_cpuid", (host.supported,)), Step("disable_hlt_exits"), Step("run")]
    for steps, run_answer in ((before, "EIO"), (after, None)):
        case = compare_backends(make, lab.vcpu, steps)
        assert not case.diff, case.diff
        assert case.kernel.errnos[2] == run_answer
