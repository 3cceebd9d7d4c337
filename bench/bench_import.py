"""`python -c "import cpuidkit"` minus `python -c pass`: median of alternating runs (ms)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _once(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return time.perf_counter() - t


def measure(runs: int = 30) -> dict:
    base, imp = [], []
    for _ in range(runs):  # alternate so drifts in machine load hit both equally
        base.append(_once("pass"))
        imp.append(_once("import cpuidkit"))
    diffs = [(i - b) * 1000 for i, b in zip(imp, base)]
    return {"import_over_python_ms": statistics.median(diffs), "python_ms": statistics.median(base) * 1000}


if __name__ == "__main__":
    r = measure()
    print(f"python -c pass: {r['python_ms']:.1f} ms; import cpuidkit adds {r['import_over_python_ms']:.1f} ms "
          "(median of alternating runs; goal ≤ 50)")
