"""Model-vs-kernel agreement over N seeded random scenarios (and every scripted one), on this machine's /dev/kvm.

    python bench/bench_agreement.py [N] [SEED]
Prints the agreement figure; exits 0 even when they disagree (benchmarks report, tests judge).
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(n: int = 2000, seed: int = 1) -> dict:
    from cpuidkit.live import host_profile
    from cpuidkit.analysis.agreement import (
        compare,
        random_scenario,
        run_steps,
        scripted_scenarios,
        vendor_masks,
    )
    from cpuidkit.core.hosts import HostProfile
    from cpuidkit.kvm.vcpu import SimulatedVcpu
    from cpuidkit.live import LiveVcpu, kvm_available

    ok, why = kvm_available()
    if not ok:
        return {"cases": 0, "agreed": None, "note": why}
    host = host_profile()
    with LiveVcpu() as v:
        kernel, vendor = v.kernel, v.vendor
    masks = vendor_masks(vendor, host)

    def one(steps):
        m = run_steps(SimulatedVcpu(kernel=kernel, vendor=vendor, host=host), steps)
        with LiveVcpu() as lv:
            r = run_steps(lv, steps)
        return compare(m, r, masks), r

    start = time.perf_counter()
    scripted = scripted_scenarios(host.supported)
    s_ok = sum(not one(steps)[0] for steps in scripted.values())
    rng = random.Random(seed)
    agreed, errnos, kinds = 0, Counter(), Counter()
    for _ in range(n):
        diff, real = one(random_scenario(rng, host.supported))
        agreed += not diff
        errnos.update(e or "ok" for e in real.errnos)
        if diff:
            kinds[diff[0].split(":")[0]] += 1
    return {
        "kernel": kernel, "vendor": vendor, "scripted": len(scripted), "scripted_agreed": s_ok,
        "cases": n, "agreed": agreed, "seconds": time.perf_counter() - start,
        "kernel_answers": dict(errnos), "disagreement_kinds": dict(kinds),
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    r = measure(n, seed)
    if not r["cases"]:
        print(f"no /dev/kvm: {r['note']}")
        sys.exit(0)
    print(f"kernel {r['kernel']}, vendor {r['vendor']}")
    print(f"scripted scenarios: {r['scripted_agreed']}/{r['scripted']} agree")
    print(f"random scenarios (seed {seed}): {r['agreed']}/{r['cases']} agree ({100 * r['agreed'] / r['cases']:.2f} %) "
          f"in {r['seconds']:.1f} s")
    print(f"kernel answers per step: {r['kernel_answers']}")
    if r["disagreement_kinds"]:
        print(f"disagreements: {r['disagreement_kinds']}")
