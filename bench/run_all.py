"""`make bench`: measure every speed figure, print each against its goal, write bench/results.json.

    python bench/run_all.py [N]     # N random model-vs-kernel agreement cases (default 2000)

Each figure comes from one bench/bench_*.py module's ``measure()``; a module
that is missing or cannot run on this machine (no /dev/kvm, no chromium)
gives null with the reason.  Benchmarks report; they never fail the build.
"""

from __future__ import annotations

import importlib.util
import json
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
]


def _load(name: str):
    path = HERE / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    n_agreement = int(args[0]) if args else 2000
    results: dict = {}
    notes: dict = {}
    cache: dict = {}
    for key, module, field, goal in FIGURES:
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
    # the model-vs-kernel agreement over N seeded random scenarios (and every scripted one): no goal, a figure
    results.update(agreement_cases=None, agreement_agreed=None, agreement_ratio=None)
    ag = _load("bench_agreement")
    if ag is None:
        notes["agreement"] = "bench/bench_agreement.py does not exist"
    else:
        t = time.perf_counter()
        try:
            a = ag.measure(n_agreement, 1)
            if a.get("cases"):
                results["agreement_cases"] = a["cases"]
                results["agreement_agreed"] = a["agreed"]
                results["agreement_ratio"] = a["agreed"] / a["cases"]
                results["agreement_scripted"] = a.get("scripted")
                results["agreement_scripted_agreed"] = a.get("scripted_agreed")
            else:
                notes["agreement"] = a.get("note") or "no case could run here"
        except Exception as e:
            notes["agreement"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        print(f"[bench_agreement took {time.perf_counter() - t:.1f} s]")
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
    for key, why in notes.items():
        print(f"  {key}: {why}")
    atomic_write_text(HERE / "results.json", json.dumps(results, indent=1, sort_keys=True) + "\n")
    print("\nwrote bench/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
