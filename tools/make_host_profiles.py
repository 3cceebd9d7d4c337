"""Regenerate data/hosts/*.json from the real CPUID dumps in tests/data (run from the repo root).

The register values are copied from the dumps named in each profile's
"source"; everything else (name, description) is ours.  A host without a
measured KVM_GET_SUPPORTED_CPUID also gets "predicted_supported": what
cpuidkit.core.supported predicts for the default kernel and the vendor module
its CPU implies (kernel and vendor named beside the table), so the raw CPUID
stays the host's CPUID and the supported table is labelled as predicted.
Re-run after the dumps in tests/data change:  python tools/make_host_profiles.py
After a change to data/kvm-supported-cpuid.csv or data/host-kernel-cpu-features.csv only:
python tools/make_host_profiles.py --predicted-only
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpuidkit._files import atomic_write_text  # noqa: E402

from cpuidkit.core.hosts import HostProfile  # noqa: E402
from cpuidkit.core.kernels import DEFAULT_KERNEL  # noqa: E402
from cpuidkit.core.sources import load  # noqa: E402
from cpuidkit.core.sources.kvm_json import dump, parse_doc  # noqa: E402
from cpuidkit.core.table import CpuidTable  # noqa: E402

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


def predicted(table) -> dict:
    """The prediction for the default kernel with the vendor module the host's CPU implies."""
    host = HostProfile.from_table(table)
    vendor = host.vendor_for(None)
    return {
        "kernel": DEFAULT_KERNEL,
        "vendor": vendor,
        "note": "predicted by cpuidkit.core.supported (data/kvm-supported-cpuid.csv), not measured",
        "cpuid": json.loads(dump(host.supported_cpuid(kernel=DEFAULT_KERNEL, vendor=vendor))),
    }


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
            "predicted_supported": predicted(table),
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


def refresh_predicted() -> None:
    """Only re-predict "predicted_supported" from each host file's stored "cpuid" (after a change to the model's
    tables), leaving every other key as it is."""
    for name, _file, _desc in HOSTS:
        path = ROOT / "data" / "hosts" / f"{name}.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["predicted_supported"] = predicted(CpuidTable(parse_doc(doc["cpuid"], f"{path}:cpuid")))
        write(name, doc)


if __name__ == "__main__":
    refresh_predicted() if "--predicted-only" in sys.argv[1:] else main()
