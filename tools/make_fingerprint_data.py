"""Copy the CPUID part of Firecracker's fingerprints into data/fingerprints/ (run from the repo root).

The register values come from firecracker-microvm/firecracker,
tests/data/cpu_template_helper/fingerprint_<CPU>_<kernel>host.json (Apache-2.0;
copies in tests/data/cpuid-dumps/firecracker).  They are stored as KVM JSON so
the course (notebook 08) works from an installed package, without tests/data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpuidkit._files import atomic_write_text  # noqa: E402

from cpuidkit.core.sources import load  # noqa: E402
from cpuidkit.core.sources.kvm_json import dump  # noqa: E402

SRC = ROOT / "tests" / "data" / "cpuid-dumps" / "firecracker"


def main() -> None:
    out = ROOT / "data" / "fingerprints"
    out.mkdir(exist_ok=True)
    for p in sorted(SRC.glob("fingerprint_*host.json")):
        meta = json.loads(p.read_text())
        cpu_kernel = p.stem[len("fingerprint_"):-len("host")]
        cpu, kernel = cpu_kernel.rsplit("_", 1)
        doc = {
            "source": f"firecracker-microvm/firecracker tests/data/cpu_template_helper/{p.name} (Apache-2.0)",
            "cpu": cpu,
            "host_kernel": kernel,
            "host_kernel_release": meta.get("kernel_version"),
            "entries": json.loads(dump(load(p))),
        }
        atomic_write_text(out / f"{cpu}_{kernel}.json", json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
