"""What the live tests expect of the machine they run on, derived from that machine alone.

Our machines are not always the same CPU (an AMD EPYC one day, an Intel Xeon with AVX-512 and AMX another;
both kernel 6.18 with kvm_pvm), so no live test may carry one host's values.  :func:`expect` derives every
host-dependent expectation from a :class:`~cpuidkit.core.hosts.HostProfile`: the host CPU's own CPUID and
KVM_GET_SUPPORTED_CPUID (never the vendor module's measured rewrite, which the model uses: an expectation
from it would let the model check itself).  The live tests call it with ``host_profile()``, measured at
test time; ``tests/test_pvm_rewrite.py`` calls the same function with two recorded hosts, one Intel and one
AMD, and checks it against what was observed on each.

Recorded hosts (sources in tests/data/README.md): ``xeon`` (tests/data/live-kvm-xeon, recorded with
tools/record_live_host.py) and ``epyc`` (tests/data/live-kvm and tests/data/live-kvm-epyc/observed.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.sources import load
from cpuidkit.core.table import CpuidEntry, CpuidTable

TEST_DATA = Path(__file__).resolve().parent / "data"
TILEDATA = 1 << 18
MAX_ENTRIES = 256


@dataclass(frozen=True)
class Expect:
    amx_grant: str  # ARCH_REQ_XCOMP_GUEST_PERM(TILEDATA) in a fresh process: "ok" or the errno
    pvm_xcr0: int  # 0xD.0 EDX:EAX the vendor module leaves after KVM_SET_CPUID2
    appended_subleaves: tuple[int, ...]  # the 0xD subleaves appended to a table with leaf 1 and no 0xD.0
    append_edge: int  # the largest table (as set) they are still appended to
    tiledata_with_permission: str  # KVM_SET_CPUID2 of 0xD.0 with TILEDATA once permitted: "kept", "cleared" or errno


def expect(host: HostProfile) -> Expect:
    """Expectations from the host CPU's CPUID (AMX in hardware) and KVM_GET_SUPPORTED_CPUID (what KVM offers)."""
    supported = host.supported if host.supported is not None else host.supported_cpuid()
    d0 = supported.get(0xD, 0)
    xcr0 = 0 if d0 is None else d0.eax | d0.edx << 32
    appended = (0, 1, *(n for n in range(2, 64) if xcr0 >> n & 1)) if xcr0 else ()
    grant = "ok" if host.xcr0_mask & TILEDATA else "EOPNOTSUPP"
    return Expect(
        amx_grant=grant,
        pvm_xcr0=xcr0,
        appended_subleaves=appended,
        append_edge=MAX_ENTRIES - len(appended),
        tiledata_with_permission=("kept" if xcr0 & TILEDATA else "cleared") if grant == "ok" else "EPERM",
    )


# -- the recorded hosts ---------------------------------------------------------------------------------------


def _doc(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def recorded_host(name: str) -> tuple[HostProfile, dict]:
    """A recorded host as the model sees it, and what was observed on it."""
    if name == "xeon":
        folder = TEST_DATA / "live-kvm-xeon"
        obs = _doc(folder / "observed.json")
        host = HostProfile(
            name="live-kvm-xeon",
            cpuid=load(folder / "host-cpuid.json"),
            supported=load(folder / "supported-cpuid.json"),
            source=str(folder),
            vendor_rewrite=obs["vendor_rewrite"],
            guest_perm_xcr0=obs["xfeatures"]["guest"],
            supported_xcr0=obs["xfeatures"]["kvm_guest_supp"],
            vendor_module=obs["vendor_module"],
            reset_misc_enable=obs["reset_misc_enable"],
        )
        return host, obs
    if name == "epyc":
        obs = _doc(TEST_DATA / "live-kvm-epyc" / "observed.json")
        host = HostProfile(
            name="live-kvm-epyc",
            cpuid=load(TEST_DATA / "live-kvm" / "host-cpuid.json"),
            supported=load(TEST_DATA / "live-kvm" / "supported-cpuid.json"),
            source=str(TEST_DATA / "live-kvm"),
            guest_perm_xcr0=obs["xfeatures"]["guest"],
            supported_xcr0=obs["xfeatures"]["kvm_guest_supp"],
            vendor_module=obs["vendor_module"],
        )
        return host, obs
    raise ValueError(name)


def parse_rows(rows: list[str]) -> CpuidTable:
    """A recorded KVM_GET_CPUID2 result (one ``"function index flags eax ebx ecx edx"`` string per entry)."""
    return CpuidTable(CpuidEntry(*(int(v, 16) for v in r.split())) for r in rows)


def observed_facts(name: str) -> dict:
    """What was observed on a recorded host, in :class:`Expect`'s terms (only what was observed)."""
    host, obs = recorded_host(name)
    facts = {"amx_grant": obs["amx_grant_in_fresh_process"]}
    if "facts" in obs:  # noted by hand from the findings on that machine
        f = obs["facts"]
        facts["pvm_xcr0"] = f["pvm_xcr0"]
        facts["appended_subleaves"] = tuple(f["appended_subleaves"])
        return facts
    o = obs["observations"]
    plain = parse_rows(o["C: 7.0 unflagged"]["get"])  # leaf 0xD as set: the module's own 0xD.0
    d0 = plain.get(0xD, 0)
    facts["pvm_xcr0"] = d0.eax | d0.edx << 32
    at_edge = parse_rows(o["B: no 0xD, at the edge"]["get"])
    past_edge = parse_rows(o["B: no 0xD, one past the edge"]["get"])
    facts["appended_subleaves"] = tuple(e.index for e in at_edge if e.function == 0xD)
    assert not any(e.function == 0xD for e in past_edge)  # the edge really is one: nothing appended past it
    facts["append_edge"] = obs["vendor_rewrite"]["append_limit"]  # measured by bisection (calibrate)
    granted = next(v for k, v in o.items() if k.startswith("D:") and "permission" in v)
    if "errno" in granted:
        facts["tiledata_with_permission"] = granted["errno"]
    else:
        g = parse_rows(granted["get"]).get(0xD, 0)
        facts["tiledata_with_permission"] = "kept" if g.eax & TILEDATA else "cleared"
    return facts
