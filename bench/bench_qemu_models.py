"""QEMU CPU models: QEMU's expansion against the CPUID a guest of the model really sees (issue 16).

    python bench/bench_qemu_models.py [MODEL ...]

For each model (default: cpuidkit.analysis.qemu_agreement.AGREEMENT_MODELS) the kernel lab boots its Debian
6.12 kernel under `-cpu MODEL,-svm` (QEMU TCG) and reads the guest's CPUID instruction; every QEMU feature
name mapped by data/qemu-cpu-features.csv is one comparison (features TCG cannot give count as off).
Prints one line per model; `measure()` feeds bench/run_all.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cpuidkit.analysis.qemu_agreement import AGREEMENT_MODELS, expansion_vs_guest  # noqa: E402


def measure(models=AGREEMENT_MODELS, log=None) -> dict:
    out = {}
    for m in models:
        t = time.perf_counter()
        r = expansion_vs_guest(m, log=log)
        r["seconds"] = round(time.perf_counter() - t, 1)
        out[m] = r
        if log:
            log(f"{m}: {r['agree']}/{r['compared']} feature bits agree ({r['kernel']}, QEMU {r['qemu_version']})")
    return out


if __name__ == "__main__":
    res = measure(tuple(sys.argv[1:]) or AGREEMENT_MODELS, log=print)
    bad = {m: r["disagreements"] for m, r in res.items() if r["disagreements"]}
    for m, d in bad.items():
        print(m, d)
