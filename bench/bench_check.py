"""check() (the model) against the live round trip it replaces, same 61-entry table, same run.

Prints medians and writes nothing; bench/run_all.py collects the figures.
  verdict:   SimulatedVcpu.set_cpuid + get_cpuid (KVM's verdict and the stored table)
  annotated: cpuidkit.check() (field ownership, derived state, lint findings) and its as_dict()
  live:      KVM_CREATE_VM + KVM_CREATE_VCPU + KVM_SET_CPUID2 + KVM_GET_CPUID2 + close, through LiveVcpu
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _median_us(fn, n: int) -> float:
    fn()  # warm
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def measure(n: int = 300) -> dict:
    from cpuidkit.live import host_profile
    from cpuidkit.kvm.check import check
    from cpuidkit.core.hosts import HostProfile
    from cpuidkit.kvm.vcpu import SimulatedVcpu

    try:
        from cpuidkit.live import LiveVcpu, kvm_available

        live_ok, why = kvm_available()
    except Exception as e:  # pragma: no cover - no ctypes/ioctl platform
        live_ok, why = False, str(e)

    if live_ok:
        host = host_profile()
        with LiveVcpu() as v:
            vendor, kernel = v.vendor, v.kernel
    else:
        host = HostProfile.builtin("live-kvm-epyc")
        vendor, kernel = "pvm", "6.18"
    # the 61-entry KVM_GET_SUPPORTED_CPUID recorded on one of our machines (data/hosts/live-kvm-epyc.json)
    table = HostProfile.builtin("live-kvm-epyc").supported

    def verdict():
        v = SimulatedVcpu(kernel=kernel, vendor=vendor, host=host)
        v.set_cpuid(table)
        v.get_cpuid()

    def annotated():  # check() carries the ownership of every field, the derived state and the lint findings
        check(table, kernel=kernel, vendor=vendor, host=host).as_dict()

    res = {"entries": len(table), "verdict_us": _median_us(verdict, n), "annotated_us": _median_us(annotated, max(n // 5, 20))}
    if live_ok:
        def live():
            with LiveVcpu() as v:
                v.set_cpuid(table)
                v.get_cpuid()

        res["live_us"] = _median_us(live, n)
        res["check_vs_live_ratio"] = res["verdict_us"] / res["live_us"]
        res["annotated_vs_live_ratio"] = res["annotated_us"] / res["live_us"]
    else:
        res["live_us"] = None
        res["check_vs_live_ratio"] = None
        res["annotated_vs_live_ratio"] = None
        res["live_note"] = why
    return res


if __name__ == "__main__":
    r = measure()
    print(f"table: {r['entries']} entries")
    print(f"model verdict + stored table : {r['verdict_us']:8.1f} µs (median)")
    print(f"model annotated (ownership…)  : {r['annotated_us']:8.1f} µs")
    if r["live_us"]:
        print(f"live round trip (VM+vCPU+set+get+close): {r['live_us']:8.1f} µs")
        print(f"check_vs_live_ratio     {r['check_vs_live_ratio']:.3f}  (goal ≤ 0.1)")
        print(f"annotated_vs_live_ratio {r['annotated_vs_live_ratio']:.3f}  (goal ≤ 1.0)")
    else:
        print(f"no live figure: {r['live_note']}")
