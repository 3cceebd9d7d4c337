"""The model against the real kernel: same scenarios on SimulatedVcpu and LiveVcpu, same answers.

Agreement means every step gives the same errno (or none) and the final
KVM_GET_CPUID2 tables are equal: the same entries in the same order, every
register, the vendor module's leaves included (the pvm module's rewrite is
measured on this host first, see cpuidkit.live.calibrate, and applied the way
the module applies it, see tests/test_pvm_rewrite.py).  In CI these tests are
required (CPUIDKIT_REQUIRE=kvm).
"""

from __future__ import annotations

import random

import pytest

from cpuidkit.live import host_profile
from cpuidkit.analysis.agreement import compare, random_scenario, run_steps, scripted_scenarios

pytestmark = pytest.mark.kvm

N_RANDOM = 2000
SEED = 20261125


@pytest.fixture(scope="module")
def live():
    from cpuidkit.core.hosts import HostProfile
    from cpuidkit.live import LiveVcpu

    host = host_profile()
    with LiveVcpu() as v:
        kernel, vendor = v.kernel, v.vendor
    return host, kernel, vendor


def _both(live, steps):
    from cpuidkit.kvm.vcpu import SimulatedVcpu
    from cpuidkit.live import LiveVcpu

    host, kernel, vendor = live
    model = run_steps(SimulatedVcpu(kernel=kernel, vendor=vendor, host=host), steps)
    with LiveVcpu() as lv:
        real = run_steps(lv, steps)
    return model, real, {}  # nothing masked


def test_every_scripted_scenario_agrees(live):
    host = live[0]
    failures = {}
    for name, steps in scripted_scenarios(host.supported).items():
        model, real, masks = _both(live, steps)
        diff = compare(model, real, masks)
        if diff:
            failures[name] = diff[:5]
    assert not failures, failures


def test_seeded_random_scenarios_agree(live):
    host = live[0]
    rng = random.Random(SEED)
    disagreements = []
    errnos = set()
    for i in range(N_RANDOM):
        steps = random_scenario(rng, host.supported)
        model, real, masks = _both(live, steps)
        errnos.update(e for e in real.errnos if e)
        diff = compare(model, real, masks)
        if diff:
            disagreements.append((i, [str(s) for s in steps], diff[:3]))
    print(f"model-vs-kernel agreement: {N_RANDOM - len(disagreements)}/{N_RANDOM} random cases; kernel errnos seen: {sorted(errnos)}")
    # the generator must really exercise the rejections, or agreement means little
    assert {"EINVAL", "E2BIG", "EPERM"} <= errnos
    assert not disagreements, disagreements[:5]
