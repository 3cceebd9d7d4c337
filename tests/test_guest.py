"""What the guest meets (issue 4): the must-show results.

* the standard XSAVE size of a CPU's full mask equals its own 0xD.0 ECX on every real dump;
  0x602e7 on a Sapphire-Rapids-class host is 11008 bytes;
* on the live kernel, `cpuidkit xcr0`'s accept set equals KVM_SET_XCRS's over bits 0-9, 17, 18;
* `cpuidkit migrate` blocks 52-bit guests on 46-bit hosts, not 46-bit guests on 52-bit hosts;
* SGX: KVM trims 0x12.1 before 6.4, checks ECREATE's XFRM from 6.4.

More detail lives in tests/test_guest_*.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import time

import pytest

from conftest import libvirt_dumps
from cpuidkit.cli.main import main
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.sources import load
from cpuidkit.core.xsave import components_of, standard_size, supported_xcr0

kvm = pytest.mark.kvm


def run_cli(*argv: str) -> tuple[int, str]:
    """``cpuidkit ARGV`` in this process: (exit code, stdout); argparse usage errors count as their exit code."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code
    return rc, buf.getvalue()


# -- XSAVE sizes against every real CPU ------------------------------------------------------


def test_there_are_28_libvirt_dumps():
    assert len(libvirt_dumps()) == 28


# The two CPUs of the corpus that predate XSAVE: no leaf 0xD, so no size to compare.
WITHOUT_XSAVE = {"Opteron-2350", "Xeon-W3520"}


def _name(p) -> str:
    return p.stem.removeprefix("x86_64-cpuid-")


def test_only_pre_xsave_cpus_lack_leaf_0xd():
    assert {_name(p) for p in libvirt_dumps() if load(p).get(0xD, 0) is None} == WITHOUT_XSAVE


@pytest.mark.parametrize("path", [p for p in libvirt_dumps() if _name(p) not in WITHOUT_XSAVE], ids=_name)
def test_standard_size_of_full_mask_is_the_cpus_own_0xd0_ecx(path):
    table = load(path)
    d0 = table.get(0xD, 0)
    mask = supported_xcr0(table)
    assert standard_size(components_of(table), mask) == d0.ecx


@pytest.mark.parametrize("name", ["sapphire-rapids", "emerald-rapids", "granite-rapids"])
def test_sapphire_rapids_class_0x602e7_is_11008_bytes(name):
    host = HostProfile.builtin(name)
    assert standard_size(host.xsave_components, 0x602E7) == 11008
    rc, out = run_cli("xcr0", "0x602e7", "--table", name, "--host", name, "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["standard_size"] == 11008 and d["xsetbv"] == "ok" and d["set_xcrs"] == "ok"


# -- the live accept set ------------------------------------------------------------------------


@kvm
def test_live_xcr0_accept_set_equals_kvm_set_xcrs_over_4096_values(tmp_path):
    from cpuidkit import KvmError
    from cpuidkit.live import LiveVcpu, supported_cpuid
    from cpuidkit.core.sources import save

    from cpuidkit.live._sys import detect_vendor, kernel_version

    started = time.perf_counter()
    supported = supported_cpuid()
    path = save(supported, tmp_path / "supported.json")
    # the running kernel and vendor module: 6.18 and pvm on the project's machines
    vendor, kernel = detect_vendor()[0] or "vmx", kernel_version()
    common = ("--table", str(path), "--host", "live", "--vendor", vendor, "--kernel", kernel, "--format", "json")

    rc, out = run_cli("xcr0", "--over", "0-9,17,18", *common)
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and len(rows) == 4096 and len({r["value"] for r in rows}) == 4096
    assert all(r["value"] & ~0x603FF == 0 for r in rows)
    model = {r["value"]: r["set_xcrs"] for r in rows}

    live = {}
    with LiveVcpu() as v:  # one vCPU for all values: a refused KVM_SET_XCRS leaves XCR0 as it was
        v.set_cpuid(supported)
        for value in model:
            try:
                v.set_xcr0(value)
                live[value] = "ok"
            except KvmError as e:
                live[value] = e.errno_name
    disagree = {hex(x): (model[x], live[x]) for x in model if model[x] != live[x]}
    assert not disagree

    rc, out = run_cli("xcr0", "--accept-set", "--over", "0-9,17,18", *common)
    doc = json.loads(out)
    assert rc == 0 and doc["evaluated"] == 4096
    assert doc["accept_set"] == sorted(x for x, r in live.items() if r == "ok")
    assert 1 in doc["accept_set"] and 0 not in doc["accept_set"]
    print(f"\n{vendor} {kernel}: 4096 XCR0 values, {doc['count']} accepted, model and kernel agree on all; "
          f"{time.perf_counter() - started:.2f} s")


# -- migration: 52 on 46 and 46 on 52 ------------------------------------------------------------


def test_migrate_blocks_a_52_bit_guest_on_a_46_bit_host():
    assert HostProfile.builtin("sapphire-rapids").maxphyaddr == 52
    assert HostProfile.builtin("cascade-lake").maxphyaddr == 46
    rc, out = run_cli("migrate", "sapphire-rapids", "--to", "cascade-lake", "--format", "json")
    d = json.loads(out)
    assert rc == 1 and d["verdict"] == "blocked"
    phys = [f for f in d["findings"] if f["rule"] == "maxphyaddr"]
    assert phys and phys[0]["severity"] == "blocker"
    assert "0x80000008.eax[7:0]" in phys[0]["fields"]
    assert "52" in phys[0]["explanation"] and "46" in phys[0]["explanation"]
    assert "#PF(RSVD)" in phys[0]["explanation"] and "memslot" in phys[0]["explanation"]


def test_migrate_does_not_block_a_46_bit_guest_on_a_52_bit_host():
    from cpuidkit.analysis.migrate import migrate

    # the narrow guest: Sapphire Rapids' own CPUID with MAXPHYADDR 46, so nothing but the width differs
    spr = HostProfile.builtin("sapphire-rapids")
    guest = spr.cpuid.set_field("phys_addr_bits", 46)
    report = migrate(guest, spr)
    assert report.verdict != "blocked", [f.as_dict() for f in report.blockers]
    phys = [f for f in report.findings if f.rule == "maxphyaddr"]
    assert [f.severity for f in phys] == ["warning"]
    assert "allow_smaller_maxphyaddr" in phys[0].explanation and "not a blocker" in phys[0].explanation

    # and the real 46-bit CPU's guest on the 52-bit host: whatever else differs, the width is not a blocker
    rc, out = run_cli("migrate", "cascade-lake", "--to", "sapphire-rapids", "--format", "json")
    d = json.loads(out)
    assert [f["severity"] for f in d["findings"] if f["rule"] == "maxphyaddr"] == ["warning"]


# -- SGX on both sides of 6.4 ---------------------------------------------------------------------


@pytest.mark.parametrize("kernel, stored_xfrm, avx512_enclave", [
    ("6.3", 0x7, "#GP"),     # KVM trimmed 0x12.1 to guest XCR0 0x7 | FP | SSE: the CPUID check fires
    ("6.4", 0xE7, "#GP"),    # stored verbatim; ECREATE's own XCR0 check (ad45413d22e6) fires
])
def test_sgx_xfrm_by_kernel(kernel, stored_xfrm, avx512_enclave):
    from test_guest_sgx import sgx_vcpu
    from cpuidkit.kvm.xcr import sgx_ecreate

    v = sgx_vcpu(kernel, guest_xcr0=0x7, xfrm=0xE7)
    s1 = v.get_cpuid().get(0x12, 1)
    assert s1.ecx == stored_xfrm
    r = sgx_ecreate(v, xfrm=0xE7)
    assert r.outcome == avx512_enclave and r.by == "kvm"
    assert r.rule == ("sgx_xfrm_cpuid" if kernel == "6.3" else "sgx_ecreate_xfrm_check")
    assert sgx_ecreate(v, xfrm=0x3).outcome == "ok"
