"""The kernel lab: boot time and the time of each call after boot, per Debian kernel.

    .venv/bin/python bench/bench_lab.py              # 6.1 and 6.12, 30 rounds each
    .venv/bin/python bench/bench_lab.py -n 100 6.12

For each kernel: the time to have the kernel ready (cache hit, or download and
unpack), the boot (QEMU start to the agent's ``ready``), then medians and p95
of each call through a LabVcpu (host -> virtio-serial -> agent -> LiveVcpu on
the guest's /dev/kvm and back), with the part the agent itself spent in the
guest.  A "case" is create VM + set_cpuid + get_cpuid + close, the unit of a
model-vs-kernel comparison.  Goal: every call after boot <= 100 ms.  Prints;
never asserts (benchmarks report, tests judge).  bench/run_all.py can collect
``measure()``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_MS = 100.0


def _stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered) * 1e3, "p95_ms": p95 * 1e3, "n": len(ordered)}


def measure_kernel(series: str, rounds: int = 30, cpu: str | None = None) -> dict:
    from cpuidkit.lab import DEFAULT_CPU, KernelLab
    from cpuidkit.lab.kernels import ensure_kernel

    t = time.perf_counter()
    build = ensure_kernel(series, log=print)
    prepare_s = time.perf_counter() - t
    t = time.perf_counter()
    with KernelLab(series, cpu=cpu or DEFAULT_CPU) as lab:
        start_s = time.perf_counter() - t
        supported = lab.supported_cpuid()
        wall: dict[str, list[float]] = {}
        guest: dict[str, list[float]] = {}

        def timed(name: str, fn):
            t0 = time.perf_counter()
            result = fn()
            wall.setdefault(name, []).append(time.perf_counter() - t0)
            if lab.last_guest_seconds is not None:
                guest.setdefault(name, []).append(lab.last_guest_seconds)
            return result

        for _ in range(rounds):
            timed("ping", lab.ping)
            timed("supported_cpuid", lab.supported_cpuid)
            v = timed("vcpu (KVM_CREATE_VM)", lab.vcpu)
            timed("set_cpuid (+KVM_CREATE_VCPU)", lambda v=v: v.set_cpuid(supported))
            timed("set_cpuid again", lambda v=v: v.set_cpuid(supported))
            timed("get_cpuid", v.get_cpuid)
            timed("set_cr4", lambda v=v: v.set_cr4(1 << 18))
            timed("set_xcr0", lambda v=v: v.set_xcr0(0x7))
            timed("get_xcr0", v.get_xcr0)
            timed("get_msr", lambda v=v: v.get_msr(0x1B))
            timed("run (KVM_RUN, hlt)", v.run)
            timed("close", v.close)

            def case():
                with lab.vcpu() as c:
                    c.set_cpuid(supported)
                    c.get_cpuid()

            t0 = time.perf_counter()
            case()
            wall.setdefault("case: create+set+get+close", []).append(time.perf_counter() - t0)
        calls = {name: _stats(samples) for name, samples in wall.items()}
        for name, samples in guest.items():
            calls[name]["guest_median_ms"] = statistics.median(samples) * 1e3
        return {
            "series": series,
            "package": build.package,
            "package_version": build.version,
            "kernel_release": lab.kernel_release,
            "cpu": lab.cpu,
            "prepare_s": prepare_s,
            "boot_s": lab.boot_seconds,
            "start_s": start_s,
            "calls": calls,
            "worst_call_median_ms": max(c["median_ms"] for n, c in calls.items() if not n.startswith("case")),
        }


def measure(rounds: int = 30, kernels: tuple[str, ...] = ("6.1", "6.12")) -> dict:
    """Figures for bench/run_all.py: boot seconds and the slowest per-call median, per kernel."""
    from cpuidkit.lab import missing_requirements

    missing = missing_requirements()
    if missing:
        return {"note": "; ".join(missing)}
    out: dict = {"kernels": {}}
    for series in kernels:
        out["kernels"][series] = measure_kernel(series, rounds)
    out["lab_boot_s"] = max(k["boot_s"] for k in out["kernels"].values())
    out["lab_call_ms"] = max(k["worst_call_median_ms"] for k in out["kernels"].values())
    return out


def report(r: dict) -> None:
    print(f"\n{r['package']} {r['package_version']} (uname -r {r['kernel_release']}), QEMU TCG -cpu {r['cpu']},+svm")
    print(
        f"  kernel ready {r['prepare_s']:.2f} s (cache or download); boot to agent ready {r['boot_s']:.2f} s "
        f"(KernelLab() returned after {r['start_s']:.2f} s)"
    )
    print(f"  {'call':32} {'median ms':>10} {'p95 ms':>8} {'in guest ms':>12}")
    for name, c in r["calls"].items():
        in_guest = f"{c['guest_median_ms']:.2f}" if "guest_median_ms" in c else "-"
        print(f"  {name:32} {c['median_ms']:10.2f} {c['p95_ms']:8.2f} {in_guest:>12}")
    verdict = "within" if r["worst_call_median_ms"] <= GOAL_MS else "ABOVE"
    print(f"  slowest call median {r['worst_call_median_ms']:.1f} ms: {verdict} the {GOAL_MS:.0f} ms goal")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kernels", nargs="*", default=["6.1", "6.12"])
    parser.add_argument("-n", "--rounds", type=int, default=30)
    parser.add_argument("--cpu", default=None, help="QEMU CPU model (default: the lab's, EPYC-Rome)")
    args = parser.parse_args(argv)
    from cpuidkit.lab import missing_requirements

    missing = missing_requirements()
    if missing:
        print("the kernel lab cannot run here: " + "; ".join(missing))
        return 0
    for series in args.kernels:
        report(measure_kernel(series, args.rounds, args.cpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
