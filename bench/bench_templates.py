"""CPU templates (issue 16): how long a template review takes, and asking QEMU for a model.

    python bench/bench_templates.py [ROUNDS]

Prints the median time of applying each Firecracker template in data/firecracker-templates to a built-in host's
predicted KVM_GET_SUPPORTED_CPUID and reviewing the result (what `cpuidkit review T --host H` and the notebook's
TemplatePanel do per host, without rendering), and of one QMP query-cpu-model-expansion (when QEMU is installed).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cpuidkit.analysis.review import review  # noqa: E402
from cpuidkit.analysis.templates import apply_on_host, shipped_template, template_choices  # noqa: E402
from cpuidkit.core.hosts import HostProfile  # noqa: E402
from cpuidkit.lab import LabUnavailable  # noqa: E402
from cpuidkit.lab.qmp import expand_cpu_model  # noqa: E402


def measure(rounds: int = 5) -> dict:
    hosts = [HostProfile.builtin(n) for n in ("cascade-lake", "epyc-milan")]
    names = [n for n in template_choices() if not n.startswith("qemu:")]
    times = []
    for name in names:
        t = shipped_template(name)
        for h in hosts:
            apply_on_host(t, h, kernel="6.18")  # warm the host's prediction once
            for _ in range(rounds):
                start = time.perf_counter()
                a = apply_on_host(t, h, kernel="6.18")
                review(a.table, h, kernel="6.18", applied=a)
                times.append(time.perf_counter() - start)
    out = {"template_review_ms": 1000 * statistics.median(times), "reviews": len(times)}
    try:
        start = time.perf_counter()
        expand_cpu_model("Cascadelake-Server")
        out["qmp_expansion_s"] = time.perf_counter() - start
    except LabUnavailable as e:
        out["qmp_expansion_s"] = None
        out["note"] = str(e)
    return out


if __name__ == "__main__":
    r = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    print(f"template review (apply + review, median of {r['reviews']}): {r['template_review_ms']:.1f} ms")
    q = r["qmp_expansion_s"]
    print(f"QMP query-cpu-model-expansion: {'n/a (' + r['note'] + ')' if q is None else f'{q:.2f} s'}")
