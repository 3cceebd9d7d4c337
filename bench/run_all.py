"""`make bench`: measure every speed figure, print each against its goal, write bench/results.json.

    python bench/run_all.py [N] [--lab-cases M] [--only GROUP,...]
        N   random model-vs-kernel agreement cases on this machine's /dev/kvm (default 2000)
        M   random cases per lab kernel (Debian 6.1 and 6.12 with kvm_amd in QEMU; default 10000)
        --only: run only these groups (bench module names, ``agreement``, ``lab_agreement``, ``supported``,
            ``qemu_models``)
            and keep the other entries of an existing results.json

Each figure comes from one bench/bench_*.py module's ``measure()``; a module
that is missing or cannot run on this machine (no /dev/kvm, no chromium)
gives null with the reason.  Benchmarks report; they never fail the build.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cpuidkit._files import atomic_write_text  # noqa: E402

# (result key, module, key in its measure() result, goal, "lower is better" sense)
FIGURES = [
    ("check_vs_live_ratio", "bench_check", "check_vs_live_ratio", 0.1),
    ("annotated_vs_live_ratio", "bench_check", "annotated_vs_live_ratio", 1.0),
    ("widget_p95_ms", "bench_widgets", "widget_p95_ms", 16),
    ("notebooks_total_s", "bench_notebooks", "notebooks_total_s", 60),
    ("import_over_python_ms", "bench_import", "import_over_python_ms", 50),
    ("fleet_1000_s", "bench_fleet", "fleet_1000_s", 2),
    ("cli_fuzz_tracebacks", "bench_cli_fuzz", "tracebacks", 0),
    ("cli_fuzz_hangs", "bench_cli_fuzz", "hangs", 0),
    # the kernel lab (bench/bench_lab.py): the slowest call's median after boot, and the boot itself
    ("lab_call_ms", "bench_lab", "lab_call_ms", 100),
    ("lab_boot_s", "bench_lab", "lab_boot_s", 30),
]
LAB_AGREEMENT_CASES = 10_000


def _load(name: str):
    path = HERE / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _agreement(n: int, results: dict, notes: dict) -> None:
    """The model-vs-kernel agreement over N seeded random scenarios (and every scripted one) on /dev/kvm."""
    results.update(agreement_cases=None, agreement_agreed=None, agreement_ratio=None)
    ag = _load("bench_agreement")
    if ag is None:
        notes["agreement"] = "bench/bench_agreement.py does not exist"
        return
    t = time.perf_counter()
    try:
        a = ag.measure(n, 1)
        if a.get("cases"):
            results["agreement_cases"] = a["cases"]
            results["agreement_agreed"] = a["agreed"]
            results["agreement_ratio"] = a["agreed"] / a["cases"]
            results["agreement_scripted"] = a.get("scripted")
            results["agreement_scripted_agreed"] = a.get("scripted_agreed")
            # which kernel answered (tools/update_kernel_runs.py records it in data/kernel-runs.csv)
            results["agreement_kernel"] = a.get("kernel")
            results["agreement_vendor"] = a.get("vendor")
            results["agreement_release"] = a.get("release") or platform.release()
        else:
            notes["agreement"] = a.get("note") or "no case could run here"
    except Exception as e:
        notes["agreement"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    print(f"[bench_agreement took {time.perf_counter() - t:.1f} s]")


def _group(key: str, module: str, run, results: dict, notes: dict):
    """Run one group's ``measure`` (``run(mod)``): None and a note when the module is missing or fails."""
    results[key] = None
    mod = _load(module)
    if mod is None:
        notes[key] = f"bench/{module}.py does not exist"
        return None
    t = time.perf_counter()
    try:
        return run(mod)
    except Exception as e:
        notes[key] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
        return None
    finally:
        print(f"[{module} took {time.perf_counter() - t:.1f} s]")


def _lab_agreement(n: int, results: dict, notes: dict) -> None:
    """Per lab kernel: the model's agreement with Debian's real kernel (bench/bench_lab_agreement.py)."""
    r = _group("lab_agreement", "bench_lab_agreement", lambda la: la.measure(n, 1, log=print), results, notes)
    if r is None:
        return
    if "note" in r:
        notes["lab_agreement"] = r["note"]
        return
    keep = (
        "package", "package_version", "kernel_release", "cpu", "kernel", "vendor", "seed", "cases", "agreed",
        "ratio", "scripted", "scripted_agreed", "kernel_answers", "agreed_answers", "disagreement_kinds",
        "ms_per_random_case", "boot_s", "seconds",
    )  # fmt: skip
    results["lab_agreement"] = {k: {f: v.get(f) for f in keep} for k, v in r["kernels"].items()}


def _supported(results: dict, notes: dict) -> None:
    """KVM_GET_SUPPORTED_CPUID predicted vs the lab kernels (five CPU models each) and /dev/kvm
    (bench/bench_supported.py): registers compared and agreeing, per comparison."""
    results["supported_prediction"] = _group(
        "supported_prediction", "bench_supported", lambda sp: sp.measure(log=print), results, notes
    )


def _qemu_models(results: dict, notes: dict) -> None:
    """QEMU's expansion vs the CPUID a guest of the model sees in the lab (bench/bench_qemu_models.py)."""
    results["qemu_models"] = _group(
        "qemu_models", "bench_qemu_models", lambda qm: qm.measure(log=print), results, notes
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=2000, help="random agreement cases on /dev/kvm")
    parser.add_argument("--lab-cases", type=int, default=LAB_AGREEMENT_CASES, help="random cases per lab kernel")
    parser.add_argument("--only", default="", help="comma-separated groups to run; other entries are kept")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    n_agreement = args.n
    only = {g.strip() for g in args.only.split(",") if g.strip()}
    out_path = HERE / "results.json"
    results: dict = {}
    notes: dict = {}
    if only and out_path.exists():  # a partial run updates the figures it measures and keeps the others
        try:
            results = json.loads(out_path.read_text(encoding="utf-8"))
        except ValueError:
            results = {}
        notes = results.pop("notes", {}) or {}
        for key in only | {key for key, module, _, _ in FIGURES if module in only}:
            notes.pop(key, None)
    cache: dict = {}
    for key, module, field, _goal in FIGURES:
        if only and module not in only:
            continue
        if module not in cache:
            mod = _load(module)
            if mod is None:
                cache[module] = ("missing", f"bench/{module}.py does not exist yet")
            else:
                t = time.perf_counter()
                try:
                    cache[module] = ("ok", mod.measure())
                except Exception as e:  # a bench that cannot run here reports why
                    cache[module] = ("error", f"{type(e).__name__}: {e}")
                    traceback.print_exc()
                print(f"[{module} took {time.perf_counter() - t:.1f} s]")
        status, value = cache[module]
        results[key] = value.get(field) if status == "ok" else None
        if status != "ok":
            notes[key] = value
        elif results[key] is None:
            notes[key] = value.get("live_note") or value.get("note") or "not measurable here"
    if not only or "lab_agreement" in only:
        _lab_agreement(args.lab_cases, results, notes)
    if not only or "agreement" in only:
        _agreement(n_agreement, results, notes)
    if not only or "supported" in only:
        _supported(results, notes)
    if not only or "qemu_models" in only:
        _qemu_models(results, notes)
    if notes:
        results["notes"] = notes
    print()
    print(f"{'figure':<26} {'value':>12} {'goal':>8}")
    for key, _, _, goal in FIGURES:
        v = results.get(key)
        shown = "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
        verdict = "" if v is None else ("  ok" if v <= goal else "  over goal")
        print(f"{key:<26} {shown:>12} {'≤ ' + str(goal):>8}{verdict}")
    if results.get("agreement_cases"):
        print(f"{'model-vs-kernel agreement':<26} {results['agreement_agreed']:>5}/{results['agreement_cases']:<6} "
              f"random cases ({100 * results['agreement_ratio']:.2f} %), "
              f"{results.get('agreement_scripted_agreed')}/{results.get('agreement_scripted')} scripted")
    else:
        print(f"{'model-vs-kernel agreement':<26} {'n/a':>12}")
    for series, r in (results.get("lab_agreement") or {}).items():
        label = f"lab {series} agreement"
        print(
            f"{label:<26} {r['agreed']:>5}/{r['cases']:<6} random cases ({100 * r['ratio']:.2f} %), "
            f"{r['scripted_agreed']}/{r['scripted']} scripted  [{r['package']} {r['package_version']}]"
        )
        print(f"{'':<26} kernel answers (agreed/steps): "
              + ", ".join(f"{e} {r['agreed_answers'].get(e, 0)}/{c}" for e, c in r["kernel_answers"].items()))
    sp = results.get("supported_prediction") or {}
    if sp.get("registers"):
        print(f"{'supported CPUID predicted':<26} {sp['agreeing']:>5}/{sp['registers']:<6} registers agree "
              f"({len([k for k, v in sp['lab'].items() if isinstance(v, dict)])} lab comparisons + live)")
    for model, r in (results.get("qemu_models") or {}).items():
        label = f"QEMU {model}"
        print(f"{label:<26} {r['agree']:>5}/{r['compared']:<6} feature bits ({r.get('on')} on): expansion = guest "
              "CPUID (lab, TCG)")
    for key, why in notes.items():
        print(f"  {key}: {why}")
    atomic_write_text(out_path, json.dumps(results, indent=1, sort_keys=True) + "\n")
    print("\nwrote bench/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
