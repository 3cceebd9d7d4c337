"""Regenerate data/hosts/*.json from the real CPUID dumps in tests/data (run from the repo root).

The register values are copied from the dumps named in each profile's
"source"; everything else (name, description) is ours.  Re-run after the
dumps in tests/data change:  python tools/make_host_profiles.py
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

TEST_DATA = ROOT / "tests" / "data"
LIBVIRT = "libvirt/libvirt tests/cputestdata/{} (copy in shared/data/cpuid-dumps/libvirt)"

HOSTS = [
    ("skylake-client", "x86_64-cpuid-Core-i5-6600.xml", "Intel Core i5-6600 (Skylake client): 39-bit MAXPHYADDR, MPX, no AVX-512"),
    ("cascade-lake", "x86_64-cpuid-Xeon-Platinum-8268.xml", "Intel Xeon Platinum 8268 (Cascade Lake): 46-bit MAXPHYADDR, AVX-512, MPX"),
    ("ice-lake", "x86_64-cpuid-Ice-Lake-Server.xml", "Intel Ice Lake server (pre-production sample): 52-bit MAXPHYADDR, LA57"),
    ("sapphire-rapids", "x86_64-cpuid-Xeon-w7-3465X.xml", "Intel Xeon w7-3465X (Sapphire Rapids): AMX (XCR0 0x602e7), 52-bit MAXPHYADDR, LA57"),
    ("emerald-rapids", "x86_64-cpuid-Xeon-Gold-6530.xml", "Intel Xeon Gold 6530 (Emerald Rapids): AMX, 52-bit MAXPHYADDR, LA57"),
    ("granite-rapids", "x86_64-cpuid-Xeon-6788P.xml", "Intel Xeon 6788P (Granite Rapids): AMX, 52-bit MAXPHYADDR, LA57"),
    ("sierra-forest", "x86_64-cpuid-Xeon-6731E.xml", "Intel Xeon 6731E (Sierra Forest, E-cores): 52-bit MAXPHYADDR but 48-bit linear (4-level EPT only)"),
    ("epyc-rome", "x86_64-cpuid-EPYC-7502-32-Core.xml", "AMD EPYC 7502 (Zen 2, Rome): 48-bit MAXPHYADDR, PKRU listed in 0xD.0 while CPUID.7.ECX.PKU is 0"),
    ("epyc-milan", "x86_64-cpuid-EPYC-7713-64-Core.xml", "AMD EPYC 7713 (Zen 3, Milan): 48-bit MAXPHYADDR, PKU, PKRU at offset 2432"),
    ("epyc-genoa", "x86_64-cpuid-EPYC-9334-32-Core.xml", "AMD EPYC 9334 (Zen 4, Genoa): AVX-512, 52-bit MAXPHYADDR, LA57"),
]


def write(name: str, doc: dict) -> None:
    atomic_write_text(ROOT / "data" / "hosts" / f"{name}.json", json.dumps(doc, indent=1) + "\n")


def main() -> None:
    for name, file, desc in HOSTS:
        table = load(TEST_DATA / "cpuid-dumps" / "libvirt" / file)
        write(name, {
            "name": name,
            "description": desc,
            "source": LIBVIRT.format(file),
            "tdp": True,
            "allow_smaller_maxphyaddr": False,
            "cpuid": json.loads(dump(table)),
        })
    host = load(TEST_DATA / "live-kvm" / "host-cpuid.json")
    supported = load(TEST_DATA / "live-kvm" / "supported-cpuid.json")
    write("live-kvm-epyc", {
        "name": "live-kvm-epyc",
        "description": "One of our machines (AMD EPYC family 19h, kernel 6.18 with kvm_pvm): raw CPUID and "
                       "KVM_GET_SUPPORTED_CPUID as recorded in shared/data/live-kvm",
        "source": "shared/data/live-kvm/host-cpuid.json and supported-cpuid.json",
        "tdp": True,
        "allow_smaller_maxphyaddr": False,
        "cpuid": json.loads(dump(host)),
        "supported": json.loads(dump(supported)),
    })


if __name__ == "__main__":
    main()
