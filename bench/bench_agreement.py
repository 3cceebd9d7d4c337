"""Model-vs-kernel agreement on this machine's /dev/kvm: every scripted scenario and N seeded random ones,
the final stored table compared on every register (the vendor module's leaves included, nothing masked).

    python bench/bench_agreement.py [N] [SEED]

N random cases run in each guest-permission state (cpuidkit.analysis.agreement.PERMISSION_STATES): no
permission asked, in this process, and AMX TILEDATA asked, in a fresh one (the permission is per process and
locked at its first vCPU).  Prints the figures; exits 0 even when they disagree (benchmarks report, tests judge).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(n: int = 2000, seed: int = 1) -> dict:
    from cpuidkit.analysis.agreement import PERMISSION_STATES, measure, measure_in_process

    runs = {}
    for name, perm in PERMISSION_STATES.items():
        if perm is None:
            runs[name] = measure(n, seed)
        else:
            runs[name] = measure_in_process(n, seed + 1, perm)
        if not runs[name]["cases"]:
            return {"cases": 0, "agreed": None, "note": runs[name]["note"]}
    first = runs["none"]
    return {
        "kernel": first["kernel"],
        "release": first.get("release"),
        "vendor": first["vendor"],
        "scripted": first["scripted"],
        "scripted_agreed": first["scripted_agreed"],
        "cases": sum(r["cases"] for r in runs.values()),
        "agreed": sum(r["agreed"] for r in runs.values()),
        "seconds": sum(r["seconds"] for r in runs.values()),
        "runs": runs,
    }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    r = measure(n, seed)
    if not r["cases"]:
        print(f"no /dev/kvm: {r['note']}")
        sys.exit(0)
    print(f"kernel {r['kernel']}, vendor {r['vendor']}; final tables compared on every register (nothing masked)")
    print(f"scripted scenarios: {r['scripted_agreed']}/{r['scripted']} agree")
    for name, run in r["runs"].items():
        refused = f", refused: {run['permission_refused']}" if run.get("permission_refused") else ""
        print(
            f"permission {name} ({run['permission']}{refused}; host {run['host_vendor']}, guest perm {run['guest_perm']}): "
            f"{run['agreed']}/{run['cases']} random cases agree ({100 * run['agreed'] / run['cases']:.2f} %) "
            f"in {run['seconds']:.1f} s"
        )
        print(f"  mix (set_cpuid tables): {dict(sorted(run['mix'].items()))}")
        print(f"  kernel answers per step: {run['kernel_answers']}")
        if run["disagreement_kinds"]:
            print(f"  disagreements: {run['disagreement_kinds']}")
            for f in run["failures"][:3]:
                print(f"    case {f['case']}: {f['differences']}")
    print(
        f"stored-table agreement, every register: {r['agreed']}/{r['cases']} "
        f"({100 * r['agreed'] / r['cases']:.2f} %) in {r['seconds']:.1f} s (seed {seed})"
    )
