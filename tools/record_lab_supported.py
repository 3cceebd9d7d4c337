"""Record what the kernel lab's real kernels answer to KVM_GET_SUPPORTED_CPUID on each QEMU CPU model.

For every lab kernel (6.1, 6.12) and every model of cpuidkit.analysis.supported_agreement.LAB_CPU_MODELS this
boots the lab once and writes tests/data/lab-supported/<series>_<model>.json: the Debian package and version,
the guest kernel's release and command line, the QEMU CPU model, the guest's CPUID (what the CPUID instruction
returns there: the host its KVM sees) and the kernel's KVM_GET_SUPPORTED_CPUID.  tests/test_supported_prediction.py
checks the predictor against these recordings without a lab; the lab tests check it against the kernels
themselves.  Run from the repo root (about 10-15 s per boot):  python tools/record_lab_supported.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpuidkit._files import atomic_write_text  # noqa: E402
from cpuidkit.analysis.supported_agreement import LAB_CPU_MODELS  # noqa: E402
from cpuidkit.core.sources.kvm_json import dump  # noqa: E402
from cpuidkit.lab import KernelLab  # noqa: E402

OUT = ROOT / "tests" / "data" / "lab-supported"
SERIES = ("6.1", "6.12")


def file_name(series: str, cpu: str) -> str:
    return f"{series}_{re.sub(r'[^A-Za-z0-9.-]+', '_', cpu)}.json"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for series in SERIES:
        for cpu in LAB_CPU_MODELS:
            with KernelLab(series, cpu=cpu, log=print) as lab:
                doc = {
                    "package": lab.package,
                    "package_version": lab.package_version,
                    "kernel_release": lab.kernel_release,
                    "vendor": lab.vendor,
                    "cpu": cpu,
                    "command_line": " ".join(p for p in lab.command_line.split() if not p.startswith("CPUIDKIT_")),
                    "guest_cpuid": json.loads(dump(lab.guest_cpuid())),
                    "supported_cpuid": json.loads(dump(lab.supported_cpuid())),
                }
            path = OUT / file_name(series, cpu)
            atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
            print(f"{path.relative_to(ROOT)}: {len(doc['supported_cpuid'])} supported entries ({lab.label})")


if __name__ == "__main__":
    main()
