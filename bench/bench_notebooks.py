"""The whole course executed top to bottom, each notebook in a fresh kernel (goal: ≤ 60 s in all).

Prints seconds per notebook and the total; writes nothing.  The same execution is a
test (tests/test_notebooks.py), which reports the total but never asserts a time.

    .venv/bin/python bench/bench_notebooks.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure() -> dict:
    import nbformat
    from nbclient import NotebookClient

    per = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        per[path.name] = round(time.perf_counter() - start, 2)
    return {"notebooks_total_s": round(sum(per.values()), 2), "notebooks": per}


if __name__ == "__main__":
    r = measure()
    for name, s in r["notebooks"].items():
        print(f"{name:42s} {s:6.2f} s")
    print(f"{'total':42s} {r['notebooks_total_s']:6.2f} s  (goal <= 60 s)")
