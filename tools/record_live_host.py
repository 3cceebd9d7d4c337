"""Record this machine's /dev/kvm as test data (run from the repo root, on one of our machines).

    python tools/record_live_host.py OUTDIR

Writes three files into OUTDIR:

* ``host-cpuid.json``: what the CPUID instruction returns here (KVM JSON, as tests/data/live-kvm has);
* ``supported-cpuid.json``: KVM_GET_SUPPORTED_CPUID;
* ``observed.json``: the kernel and vendor module, the XSAVE permissions (arch_prctl and
  KVM_X86_XCOMP_GUEST_SUPP), the answer to ARCH_REQ_XCOMP_GUEST_PERM(TILEDATA) in a fresh process, the
  vendor module's rewrite as ``cpuidkit.live.calibrate`` measures it, and what KVM_GET_CPUID2 returned (or
  the errno KVM_SET_CPUID2 gave) for every table of ``cpuidkit.analysis.agreement.rewrite_class_tables``,
  each set on a fresh vCPU of this process (no AMX permission), and class D's table again in a fresh
  process that asked for the permission first.

The tests read a recording as a host (``tests/live_expect.py``) and replay the model against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpuidkit._files import atomic_write_text  # noqa: E402
from cpuidkit.analysis.agreement import rewrite_class_tables  # noqa: E402
from cpuidkit.core.sources import save  # noqa: E402
from cpuidkit.core.table import CpuidTable  # noqa: E402
from cpuidkit.errors import KvmError  # noqa: E402
from cpuidkit.live import LiveVcpu, host_profile, xfeature_permissions  # noqa: E402
from cpuidkit.live._sys import detect_vendor  # noqa: E402

TILEDATA = 1 << 18

_CHILD = """
import json, sys
from cpuidkit.analysis.agreement import rewrite_class_tables
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.live import LiveVcpu
supported = CpuidTable(CpuidEntry(*row) for row in json.load(sys.stdin))  # the parent's: same APIC IDs
out = {}
try:
    with LiveVcpu() as v:
        v.grant_xfeature_permission(1 << 18)
    out["grant"] = "ok"
except KvmError as e:
    out["grant"] = e.errno_name
name, table = next((k, t) for k, t in rewrite_class_tables(supported).items() if k.startswith("D:"))
try:
    with LiveVcpu() as v:
        v.set_cpuid(table)
        out["get"] = [[e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx] for e in v.get_cpuid()]
except KvmError as e:
    out["errno"] = e.errno_name
out["name"] = name
print(json.dumps(out))
"""


FILLER = range(0x40000100, 0x40000200)  # rewrite_class_tables pads with zeroed entries of these functions


def _rows(rows: list[list[int]]) -> dict:
    """A KVM_GET_CPUID2 result: its entry count and every entry but the padding, one string each."""
    kept = [" ".join(f"{v:#x}" for v in r) for r in rows if not (r[0] in FILLER and not any(r[1:]))]
    return {"nent": len(rows), "get": kept}


def _observe(table: CpuidTable) -> dict:
    try:
        with LiveVcpu() as v:
            v.set_cpuid(table)
            got = v.get_cpuid()
    except KvmError as e:
        return {"errno": e.errno_name}
    return _rows([[e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx] for e in got])


def main(outdir: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    host = host_profile()
    assert host.supported is not None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    rows = [[e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx] for e in host.supported]
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD)],
        input=json.dumps(rows),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    granted = json.loads(child.stdout.strip().splitlines()[-1])
    observations = {name: _observe(t) for name, t in rewrite_class_tables(host.supported).items()}
    with_perm = _rows(granted["get"]) if "get" in granted else {"errno": granted["errno"]}
    observations[granted["name"] + " (with the permission)"] = {"permission": TILEDATA, **with_perm}
    vendor, module, _ = detect_vendor()
    doc = {
        "recorded_by": "tools/record_live_host.py",
        "kernel": os.uname().release,
        "vendor_module": vendor,
        "kernel_module": module,
        "cpu": host.cpuid.vendor,
        "xfeatures": xfeature_permissions(),
        "amx_grant_in_fresh_process": granted["grant"],
        "reset_misc_enable": host.reset_misc_enable,
        "vendor_rewrite": host.vendor_rewrite,
        "observations": observations,
    }
    save(host.cpuid, out / "host-cpuid.json")
    save(host.supported, out / "supported-cpuid.json")
    atomic_write_text(out / "observed.json", json.dumps(doc, indent=1) + "\n")
    print(f"recorded {len(observations)} observations into {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
