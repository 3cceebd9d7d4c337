"""Model-vs-kernel agreement on the kernel lab's real kernels (Debian 6.1 and 6.12 with kvm_amd, in QEMU).

    .venv/bin/python bench/bench_lab_agreement.py                   # 10,000 cases per kernel, seed 1
    .venv/bin/python bench/bench_lab_agreement.py -n 2000 --seed 7 6.12
    .venv/bin/python bench/bench_lab_agreement.py --jobs 2          # both kernels at once (one QEMU each)

For each kernel: every scripted scenario and N seeded random ones
(cpuidkit.analysis.agreement's generator, from the lab kernel's own KVM_GET_SUPPORTED_CPUID) on a lab
vCPU and on the model for that kernel (cpuidkit.analysis.lab_agreement): errno per step, the whole
final table, and the state read back afterwards.  Prints the figures per kernel (cases, agreed, the
kernel's answers by errno and how many of each the model matched) and the disagreements, if any;
exits 0 either way (benchmarks report, tests judge).  bench/run_all.py collects ``measure()``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_CASES = 10_000
KERNELS = ("6.1", "6.12")


def measure_kernel(series: str, n: int = DEFAULT_CASES, seed: int = 1, cpu: str | None = None, log=None) -> dict:
    from cpuidkit.analysis.lab_agreement import lab_agreement
    from cpuidkit.lab import DEFAULT_CPU, KernelLab

    t = time.perf_counter()
    with KernelLab(series, cpu=cpu or DEFAULT_CPU) as lab:
        boot = time.perf_counter() - t

        def progress(done: int, total: int) -> None:
            if log is not None and (done % 1000 == 0 or done == total):
                log(f"  {lab.label}: {done}/{total} random cases")

        r = lab_agreement(lab, n, seed, progress=progress)
    r["boot_s"] = boot
    r["ratio"] = r["agreed"] / r["cases"] if r["cases"] else None
    return r


def measure(n: int = DEFAULT_CASES, seed: int = 1, kernels: tuple[str, ...] = KERNELS, jobs: int = 1, log=None) -> dict:
    """Figures for bench/run_all.py: per kernel, the agreement over ``n`` random cases (and every scripted one)."""
    from cpuidkit.lab import missing_requirements

    missing = missing_requirements()
    if missing:
        return {"note": "the kernel lab cannot run here: " + "; ".join(missing)}
    out: dict = {"kernels": {}, "seed": seed}
    if jobs > 1:
        with concurrent.futures.ProcessPoolExecutor(jobs) as pool:  # one Python per QEMU: the model is CPU-bound
            futures = {k: pool.submit(measure_kernel, k, n, seed, None, log) for k in kernels}
            for k, f in futures.items():
                out["kernels"][k] = f.result()
    else:
        for k in kernels:
            out["kernels"][k] = measure_kernel(k, n, seed, log=log)
    return out


def report(r: dict) -> None:
    print(
        f"\n{r['package']} {r['package_version']} (uname -r {r['kernel_release']}), kvm_amd on QEMU TCG "
        f"-cpu {r['cpu']}; model: kernel {r['kernel']}, vendor {r['vendor']}, host = the lab guest"
    )
    print(f"  scripted scenarios: {r['scripted_agreed']}/{r['scripted']} agree")
    print(
        f"  random scenarios (seed {r['seed']}): {r['agreed']}/{r['cases']} agree ({100 * r['ratio']:.2f} %) "
        f"in {r['random_seconds']:.0f} s ({r['ms_per_random_case']:.0f} ms per case, boot {r['boot_s']:.1f} s)"
    )
    print(f"  {'kernel answer':14} {'steps':>8} {'model agreed':>13}")
    for name, count in r["kernel_answers"].items():
        print(f"  {name:14} {count:8} {r['agreed_answers'].get(name, 0):13}")
    if r["disagreement_kinds"]:
        print(f"  disagreements: {r['disagreement_kinds']}")
        for e in r["examples"][:10]:
            print(f"    {e['case']}: {e['diff'][:3]}\n      steps: {e['steps']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kernels", nargs="*", default=list(KERNELS))
    parser.add_argument("-n", "--cases", type=int, default=DEFAULT_CASES, help="random cases per kernel")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="kernels run at once (each is one QEMU, one core)")
    args = parser.parse_args(argv)
    r = measure(args.cases, args.seed, tuple(args.kernels), args.jobs, log=print)
    if "note" in r:
        print(r["note"])
        return 0
    for k in args.kernels:
        report(r["kernels"][k])
    return 0


if __name__ == "__main__":
    sys.exit(main())
