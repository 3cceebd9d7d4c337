"""KVM_GET_SUPPORTED_CPUID predicted vs the real kernels: agreement per (kernel, QEMU CPU model), and live.

    .venv/bin/python bench/bench_supported.py            # the lab's 6.1 and 6.12 on five CPU models, and /dev/kvm
    .venv/bin/python bench/bench_supported.py --no-lab   # this machine only

For each lab kernel and each model of cpuidkit.analysis.supported_agreement.LAB_CPU_MODELS: one boot, the
guest's CPUID (the host its KVM sees) and the kernel's KVM_GET_SUPPORTED_CPUID, the prediction
(cpuidkit.core.supported) from that CPUID, and the comparison register by register (flags and the four
registers of every entry of either table).  Then the same on this machine's kernel, measured now (with
kvm_pvm, the leaves the module decides itself are left out and named).  Also the time one prediction takes.
Prints a line per comparison and every disagreement; exits 0 either way (benchmarks report, tests judge).
bench/run_all.py collects ``measure()`` into results.json (``supported_prediction``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KERNELS = ("6.1", "6.12")


def _lab(log=print) -> dict:
    from cpuidkit.analysis.supported_agreement import LAB_CPU_MODELS, lab_supported_agreement
    from cpuidkit.lab import KernelLab, missing_requirements

    missing = missing_requirements()
    if missing:
        return {"note": "the kernel lab cannot run here: " + "; ".join(missing)}
    out: dict = {}
    for series in KERNELS:
        for cpu in LAB_CPU_MODELS:
            t = time.perf_counter()
            with KernelLab(series, cpu=cpu) as lab:
                boot = time.perf_counter() - t
                agreement, measured, _ = lab_supported_agreement(lab)
                out[f"{series} {cpu}"] = {
                    "package": lab.package,
                    "package_version": lab.package_version,
                    "cpu": cpu,
                    "entries": len(measured),
                    "registers": agreement.registers,
                    "agreeing": agreement.agreeing,
                    "same_order": agreement.same_order,
                    "disagreements": agreement.disagreements,
                    "boot_s": round(boot, 1),
                }
            if log:
                log(str(agreement))
    return out


def _live(log=print) -> dict:
    from cpuidkit.analysis.supported_agreement import live_supported_agreement

    try:
        agreement, measured, _ = live_supported_agreement()
    except Exception as e:  # no /dev/kvm here
        return {"note": f"{type(e).__name__}: {e}"}
    if log:
        log(str(agreement))
    d = agreement.as_dict()
    d["entries"] = len(measured)
    return d


def _speed(rounds: int = 200) -> float:
    """Median milliseconds for one prediction of a built-in host's table (the tables already loaded)."""
    from cpuidkit.core.hosts import HostProfile
    from cpuidkit.core.supported import predict_supported_cpuid

    table = HostProfile.builtin("sapphire-rapids").cpuid
    predict_supported_cpuid(table, "6.18", "vmx")
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        predict_supported_cpuid(table, "6.18", "vmx")
        times.append(time.perf_counter() - t)
    times.sort()
    return 1000 * times[len(times) // 2]


def measure(lab: bool = True, log=print) -> dict:
    t = time.perf_counter()
    out = {"lab": _lab(log) if lab else {"note": "not asked (--no-lab)"}, "live": _live(log)}
    out["predict_ms"] = round(_speed(), 3)
    comparisons = [v for v in out["lab"].values() if isinstance(v, dict)]
    if "registers" in out["live"]:
        comparisons.append(out["live"])
    out["registers"] = sum(c["registers"] for c in comparisons)
    out["agreeing"] = sum(c["agreeing"] for c in comparisons)
    out["seconds"] = round(time.perf_counter() - t, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-lab", action="store_true", help="only this machine's kernel")
    args = parser.parse_args()
    r = measure(lab=not args.no_lab)
    print()
    for key, v in r["lab"].items():
        if isinstance(v, dict):
            print(f"lab {key:<24} {v['agreeing']:>4}/{v['registers']:<4} registers  [{v['package_version']}]")
        else:
            print(f"lab: {v}")
    live = r["live"]
    if "registers" in live:
        print(f"live {live['kernel']}/{live['vendor']:<8} {live['agreeing']:>4}/{live['registers']:<4} registers "
              f"(left out: {', '.join(live['skipped_leaves']) or 'nothing'})")
    else:
        print(f"live: {live.get('note')}")
    print(f"total {r['agreeing']}/{r['registers']} registers agree; one prediction {r['predict_ms']} ms; {r['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
