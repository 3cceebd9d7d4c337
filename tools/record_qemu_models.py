"""Record QEMU's expansion of the CPU models the course and the tests use, into data/qemu-models.json.

Usage: python tools/record_qemu_models.py [MODEL ...]

Asks the real qemu-system-x86_64 (QMP query-cpu-model-expansion, type full, -accel kvm: needs /dev/kvm; no guest) through
cpuidkit.lab.qmp.expand_cpu_model, so `make lab` can show QEMU models without QEMU installed. The file names the
QEMU version it was recorded with; `cpuidkit review qemu:MODEL` asks the installed QEMU when there is one.
"""

from __future__ import annotations

import json
import sys

from cpuidkit._files import atomic_write_text, data_path
from cpuidkit.lab.qmp import expand_cpu_model

MODELS = ("Skylake-Server", "Cascadelake-Server", "Cooperlake", "Icelake-Server", "EPYC-Rome", "EPYC-Milan")


def main(argv: list[str]) -> int:
    models = argv or list(MODELS)
    out = {
        "about": "QEMU CPU model expansions (QMP query-cpu-model-expansion, type full), recorded by "
        "tools/record_qemu_models.py with Debian's qemu-system-x86",
        "models": {},
    }
    for m in models:
        exp = expand_cpu_model(m, accel="kvm")  # KVM's defaults, as on the hosts a review is about
        exp.pop("unavailable")  # what this machine's KVM lacks: not part of the model
        out["qemu_version"] = exp["qemu_version"]
        out["models"][m] = exp
        print(f"{m}: {len(exp['props'])} properties, QEMU {exp['qemu_version']}")
    atomic_write_text(data_path("qemu-models.json"), json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
