"""LiveVcpu under load: N create/set/get/close cycles on /dev/kvm; file descriptors and memory before/after.

    .venv/bin/python bench/bench_soak.py               # 10,000 cycles, KVM_RUN every 10th
    .venv/bin/python bench/bench_soak.py -n 2000 --run-every 0

Each cycle: ``LiveVcpu()`` (KVM_CREATE_VM), ``set_cpuid(supported)``
(KVM_CREATE_VCPU + KVM_SET_CPUID2), ``get_cpuid()`` (KVM_GET_CPUID2), and
``close()``; every ``--run-every``-th cycle also runs the one-``hlt`` guest
(which maps the kvm_run page and 64 KiB of guest memory).  Printed: open fds
(``/proc/self/fd``), VmRSS and VmSize (``/proc/self/status``) and the number
of mappings (``/proc/self/maps``) after a warm-up cycle, at every tenth of the
run, and at the end.  Goal: no fd or mapping growth, RSS flat (a few hundred
KiB of allocator noise at most).  Nothing is written.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def snapshot() -> dict[str, int]:
    status = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmSize", "VmHWM"):
                status[key] = int(rest.split()[0])  # kB
    with open("/proc/self/maps") as fh:
        maps = sum(1 for _ in fh)
    return {"fds": len(os.listdir("/proc/self/fd")), "rss_kib": status["VmRSS"], "vm_kib": status["VmSize"],
            "maps": maps, "hwm_kib": status["VmHWM"]}


def soak(cycles: int, run_every: int, report=print) -> dict:
    from cpuidkit.live import LiveVcpu, supported_cpuid

    table = supported_cpuid()

    def cycle(i: int) -> None:
        with LiveVcpu() as v:
            v.set_cpuid(table)
            v.get_cpuid()
            if run_every and i % run_every == 0:
                v.run()

    for i in range(20):  # warm up: everything created once per process (ctypes types, caches)
        cycle(0 if i % 2 else 1)
    gc.collect()
    before = snapshot()
    report(f"{'cycles':>8} {'fds':>5} {'RSS KiB':>9} {'VmSize KiB':>11} {'maps':>6}")
    report(f"{0:>8} {before['fds']:>5} {before['rss_kib']:>9} {before['vm_kib']:>11} {before['maps']:>6}")
    started = time.perf_counter()
    step = max(cycles // 10, 1)
    for i in range(1, cycles + 1):
        cycle(i)
        if i % step == 0 and i != cycles:
            s = snapshot()
            report(f"{i:>8} {s['fds']:>5} {s['rss_kib']:>9} {s['vm_kib']:>11} {s['maps']:>6}")
    elapsed = time.perf_counter() - started
    gc.collect()
    after = snapshot()
    report(f"{cycles:>8} {after['fds']:>5} {after['rss_kib']:>9} {after['vm_kib']:>11} {after['maps']:>6}")
    return {"cycles": cycles, "run_every": run_every, "seconds": elapsed, "before": before, "after": after}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--cycles", type=int, default=10_000)
    ap.add_argument("--run-every", type=int, default=10, help="also KVM_RUN the hlt guest every Nth cycle (0: never)")
    args = ap.parse_args(argv)
    from cpuidkit.live import kvm_available

    ok, why = kvm_available()
    if not ok:
        print(f"no /dev/kvm: {why}")
        return 2
    print(f"LiveVcpu soak: {args.cycles:,} cycles of create/set_cpuid/get_cpuid/close"
          + (f", KVM_RUN every {args.run_every}" if args.run_every else ""))
    r = soak(args.cycles, args.run_every)
    b, a = r["before"], r["after"]
    print(f"fds before/after: {b['fds']} -> {a['fds']} ({a['fds'] - b['fds']:+d})")
    print(f"RSS before/after: {b['rss_kib']} KiB -> {a['rss_kib']} KiB ({a['rss_kib'] - b['rss_kib']:+d} KiB)")
    print(f"VmSize before/after: {b['vm_kib']} KiB -> {a['vm_kib']} KiB ({a['vm_kib'] - b['vm_kib']:+d} KiB); "
          f"mappings {b['maps']} -> {a['maps']}")
    print(f"{r['seconds']:.1f} s, {r['seconds'] / r['cycles'] * 1e6:.0f} µs per cycle")
    return 0 if a["fds"] == b["fds"] and a["maps"] <= b["maps"] else 1


if __name__ == "__main__":
    sys.exit(main())
