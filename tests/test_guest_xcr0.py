"""XCR0 as the guest meets it: guest XSETBV, KVM_SET_XCRS, the accept set, `cpuidkit xcr0`; checked live.

Facts (arch/x86/kvm/x86.c in 5.10.0, 6.12.117 and 6.18.2): kvm_emulate_xsetbv injects #GP(0) for CPL>0
or a __kvm_set_xcr failure, after the CPU's own #UD for CR4.OSXSAVE=0; __kvm_set_xcr refuses XCR
numbers other than 0; kvm_vcpu_ioctl_x86_set_xcrs returns EINVAL for nr_xcrs > 16 or flags != 0,
processes only the first entry with xcr == 0 and succeeds without one.
"""

from __future__ import annotations

import json
import struct

import pytest

from test_guest import run_cli
from cpuidkit import CpuidTable, KvmError
from cpuidkit.live import host_profile
from cpuidkit.core.hosts import HostProfile
from cpuidkit.kvm.interface import CR4_OSXSAVE
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.xcr import accept_set, evaluate_xcr0, set_xcrs, values_over, xsetbv
from cpuidkit.core.xsave import parse_bits

kvm = pytest.mark.kvm
SPR = HostProfile.builtin("sapphire-rapids")


def spr_vcpu(kernel="6.18", table=None) -> SimulatedVcpu:
    v = SimulatedVcpu(kernel, "vmx", SPR)
    v.grant_xfeature_permission(1 << 18)
    v.set_cpuid(SPR.cpuid if table is None else table)
    return v


# -- guest XSETBV ------------------------------------------------------------------------------


def test_xsetbv_fault_priority():
    v = spr_vcpu()
    assert v.state.cr4 & CR4_OSXSAVE == 0  # after reset
    r = xsetbv(v, 0x0, cpl=3, index=5)  # every fault at once: #UD wins (the CPU, before the intercept)
    assert (r.outcome, r.rule) == ("#UD", "xsetbv_cr4_osxsave")
    r = xsetbv(v, 0x0, cr4_osxsave=True, cpl=3, index=5)
    assert (r.outcome, r.rule) == ("#GP", "xsetbv_cpl")
    r = xsetbv(v, 0x0, cr4_osxsave=True, index=5)
    assert (r.outcome, r.rule) == ("#GP", "xsetbv_xcr_index")
    r = xsetbv(v, 0x0, cr4_osxsave=True)
    assert (r.outcome, r.rule) == ("#GP", "xcr0_rules") and "bit 0" in r.explanation
    assert v.get_xcr0() == 1  # nothing was written


def test_xsetbv_writes_xcr0_and_kvm_updates_the_size():
    v = spr_vcpu()
    v.set_cr4(CR4_OSXSAVE)
    r = xsetbv(v, 0x602E7)
    assert r.ok and v.get_xcr0() == 0x602E7
    assert v.get_cpuid().get(0xD, 0).ebx == 11008
    assert xsetbv(v, 0x7, apply=False).ok and v.get_xcr0() == 0x602E7


def test_xsetbv_is_ud_when_guest_cpuid_has_no_xsave():
    v = spr_vcpu(table=SPR.cpuid.set_field("xsave", 0).set_field("0xd.0.eax[18]", 0))
    r = xsetbv(v, 0x3, cr4_osxsave=True)
    assert r.outcome == "#UD" and "cannot be 1" in r.explanation


# -- KVM_SET_XCRS ---------------------------------------------------------------------------------


def test_set_xcrs_header_and_entries():
    v = spr_vcpu()
    assert set_xcrs(v, [(0, 0x7)], flags=1).rule == "set_xcrs_header"
    assert set_xcrs(v, [(0, 0x7)], nr_xcrs=17).rule == "set_xcrs_header"
    assert set_xcrs(v, [(0, 0x7)], nr_xcrs=16).ok  # 15 zero entries after the first XCR0 entry: never read
    assert v.get_xcr0() == 0x7
    r = set_xcrs(v, [(1, 0x3), (7, 0)])  # no XCR0 entry: success, nothing changes
    assert r.ok and r.rule is None and v.get_xcr0() == 0x7
    assert set_xcrs(v, [(1, 0xFFFF), (0, 0x3), (0, 0x0)]).ok and v.get_xcr0() == 0x3  # only the first XCR0 entry
    r = set_xcrs(v, [(0, 0x0), (0, 0x7)])
    assert r.outcome == "EINVAL" and v.get_xcr0() == 0x3
    assert set_xcrs(v, [], nr_xcrs=1).outcome == "EINVAL"  # the zeroed entry is "XCR0 = 0"
    assert set_xcrs(v, [], nr_xcrs=0).ok
    assert set_xcrs(v, [(0, 0x7)], protected_state=True).rule == "set_xcrs_protected_state"
    no_xsave = HostProfile.from_table(SPR.cpuid.set_field("xsave", 0), name="no-xsave")
    assert set_xcrs(SimulatedVcpu("6.18", "vmx", no_xsave), [(0, 1)]).rule == "set_xcrs_no_host_xsave"


def test_set_xcrs_ignores_cr4_and_cpl():
    v = spr_vcpu()
    d = evaluate_xcr0(v, 0x7, cr4_osxsave=False, cpl=3)
    assert (d["xsetbv"], d["set_xcrs"], d["rule"], d["xsetbv_rule"]) == ("#UD", "ok", "xsetbv_cr4_osxsave",
                                                                          "xsetbv_cr4_osxsave")


def test_before_set_cpuid_only_fp_is_accepted():
    v = SimulatedVcpu("6.18", "vmx", SPR)
    assert accept_set(v) == [1]
    assert accept_set(v, over=0x7) == [1]


# -- accept sets ----------------------------------------------------------------------------------


def test_accept_set_of_sapphire_rapids():
    acc = accept_set(spr_vcpu())
    # x87 always; SSE optional; AVX needs SSE; AVX-512 needs AVX; PKRU free; AMX as a pair
    fp_sse_avx = [0x1, 0x3, 0x7, 0xE7]
    want = sorted(b | p | a for b in fp_sse_avx for p in (0, 0x200) for a in (0, 0x60000))
    assert acc == want and len(acc) == 16
    assert 0x60001 in acc  # AMX without SSE: KVM has no rule against it


def test_accept_set_follows_0xd0_only():
    # 0xD.0 without AVX-512 and PKRU; leaf 7 still says AVX-512F and PKU: only 0xD.0 counts
    t = SPR.cpuid.set_field("0xd.0.eax", 0x7)
    assert t.get_field("avx512f") == 1 and t.get_field("pku") == 1
    assert accept_set(spr_vcpu(table=t)) == [0x1, 0x3, 0x7]


def test_accept_set_on_svm_has_no_mpx():
    host = HostProfile.builtin("cascade-lake")
    vmx = SimulatedVcpu("6.18", "vmx", host)
    vmx.set_cpuid(host.cpuid)
    assert 0x1F in accept_set(vmx) and 0x0F not in accept_set(vmx)  # MPX as a pair
    svm = SimulatedVcpu("6.18", "svm", host)
    svm.set_cpuid(host.cpuid)
    assert all(not x & 0x18 for x in accept_set(svm))


def test_accept_set_refuses_too_many_bits():
    from cpuidkit import InputError

    with pytest.raises(InputError):
        accept_set(spr_vcpu(), over=(1 << 21) - 1)


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_json_lines_have_the_promised_keys():
    rc, out = run_cli("xcr0", "0x7", "0x6", "--table", "sapphire-rapids", "--format", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rc == 1  # 0x6 is refused
    for r in rows:
        assert {"value", "xsetbv", "set_xcrs", "rule", "standard_size", "compacted_size"} <= set(r)
    assert [(r["value"], r["xsetbv"], r["set_xcrs"]) for r in rows] == [(7, "ok", "ok"), (6, "#GP", "EINVAL")]
    assert rows[0]["rule"] is None and rows[1]["rule"] == "xcr0_rules"
    assert rows[0]["standard_size"] == 832


def test_cli_options_reach_the_xsetbv_path():
    rc, out = run_cli("xcr0", "0x7", "--table", "sapphire-rapids", "--cr4-osxsave", "0", "--format", "json")
    d = json.loads(out)
    assert rc == 1 and d["xsetbv"] == "#UD" and d["set_xcrs"] == "ok"
    _, out = run_cli("xcr0", "0x7", "--table", "sapphire-rapids", "--cpl", "3", "--format", "json")
    assert json.loads(out)["xsetbv"] == "#GP"
    _, out = run_cli("xcr0", "0x7", "--table", "sapphire-rapids", "--xcr-index", "1", "--format", "json")
    assert json.loads(out)["xsetbv_rule"] == "xsetbv_xcr_index"


def test_cli_accept_set_and_table_format():
    rc, out = run_cli("xcr0", "--table", "sapphire-rapids", "--accept-set", "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["count"] == 16 and d["evaluated"] == 512 and d["over"] == 0x602E7
    rc, out = run_cli("xcr0", "0x602e7", "--table", "sapphire-rapids")
    assert rc == 0 and "11008" in out and "amx_tiledata" in out
    rc, out = run_cli("xcr0", "--table", "sapphire-rapids", "--accept-set")
    assert rc == 0 and "16 of 512" in out


def test_cli_vendor_and_kernel_and_host():
    _, out = run_cli("xcr0", "0x1f", "--table", "cascade-lake", "--host", "cascade-lake", "--format", "json")
    assert json.loads(out)["vendor"] == "vmx" and json.loads(out)["set_xcrs"] == "ok"
    _, out = run_cli("xcr0", "0x1f", "--table", "cascade-lake", "--host", "cascade-lake", "--vendor", "svm",
                     "--format", "json")
    assert json.loads(out)["set_xcrs"] == "EINVAL"  # no MPX on SVM
    _, out = run_cli("xcr0", "0x7", "--table", "epyc-rome", "--host", "epyc-rome", "--format", "json")
    assert json.loads(out)["vendor"] == "svm"
    # before 5.17 KVM ignored the 64-byte alignment flag in the compacted size (xstate_compacted_alignment)
    _, new = run_cli("xcr0", "0x602e7", "--table", "sapphire-rapids", "--kernel", "6.1", "--format", "json")
    assert json.loads(new)["compacted_size"] == 10752
    _, old = run_cli("xcr0", "0x602e7", "--table", "sapphire-rapids", "--kernel", "5.10", "--format", "json")
    assert json.loads(old)["compacted_size"] == 2440 + 64 + 8192


def test_cli_without_permission_reports_eperm(capsys):
    from cpuidkit.cli.main import main

    assert main(["xcr0", "0x7", "--table", "sapphire-rapids", "--no-xfeature-permission"]) == 1
    assert "EPERM" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["xcr0", "--table", "sapphire-rapids"],
    ["xcr0", "0x7", "--table", "no-such-host-or-file"],
    ["xcr0", "seven", "--table", "sapphire-rapids"],
    ["xcr0", "0x7", "--table", "sapphire-rapids", "--host", "nowhere"],
    ["xcr0", "--over", "0-25", "--table", "sapphire-rapids"],
    ["xcr0", "0x7", "--table", "sapphire-rapids", "--kernel", "six"],
])
def test_cli_bad_input_exits_2(argv, capsys):
    assert run_cli(*argv)[0] == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err


# -- live -------------------------------------------------------------------------------------------


def _xsetbv_program(value: int, ecx: int = 0) -> bytes:
    """Real-mode code: point #UD (6) and #GP (13) at handlers, XSETBV, report in BX (0 ok, 6, 13), HLT."""
    base = 0x1000
    body = (b"\x66\xB8" + struct.pack("<I", value & 0xFFFFFFFF)  # mov eax, lo
            + b"\x66\xBA" + struct.pack("<I", value >> 32)       # mov edx, hi
            + b"\x66\xB9" + struct.pack("<I", ecx)               # mov ecx, index
            + b"\x0F\x01\xD1"                                     # xsetbv
            + b"\xBB\x00\x00\xF4")                                # mov bx, 0; hlt
    ivt_len = 24
    ud = base + ivt_len + len(body)
    gp = ud + 4
    ivt = (b"\xC7\x06\x18\x00" + struct.pack("<H", ud) + b"\xC7\x06\x1A\x00\x00\x00"
           + b"\xC7\x06\x34\x00" + struct.pack("<H", gp) + b"\xC7\x06\x36\x00\x00\x00")
    assert len(ivt) == ivt_len
    return ivt + body + b"\xBB\x06\x00\xF4" + b"\xBB\x0D\x00\xF4"


def live_sim() -> SimulatedVcpu:
    """The model for this machine: its kernel version, its vendor module, its measured host profile."""
    from cpuidkit.live._sys import detect_vendor, kernel_version

    return SimulatedVcpu(kernel_version(), detect_vendor()[0] or "vmx", host_profile())


@pytest.fixture
def live_model():
    from cpuidkit.live import supported_cpuid

    supported = supported_cpuid()
    model = live_sim()
    model.set_cpuid(supported)
    return supported, model


@kvm
def test_live_guest_xsetbv_agrees_with_the_model_over_4096_values(live_model):
    """A real-mode guest executes XSETBV (KVM emulates it: em_xsetbv / __kvm_set_xcr) for every value."""
    from cpuidkit.live import LiveVcpu

    supported, model = live_model
    outcome = {0: "ok", 6: "#UD", 13: "#GP"}
    disagree = []
    with LiveVcpu() as v:
        v.set_cpuid(supported)
        for cr4 in (0, CR4_OSXSAVE):
            v.set_cr4(cr4)
            values = values_over(parse_bits("0-9,17,18")) if cr4 else [0x1, 0x3, 0x7, 0x0]
            for x in values:
                v.run(code=_xsetbv_program(x))
                got = outcome[v.get_regs().rbx & 0xFFFF]
                want = xsetbv(model, x, cr4_osxsave=bool(cr4), apply=False).outcome
                if got != want:
                    disagree.append((hex(cr4), hex(x), got, want))
        v.run(code=_xsetbv_program(0x3, ecx=1))
        assert outcome[v.get_regs().rbx & 0xFFFF] == xsetbv(model, 0x3, index=1, cr4_osxsave=True).outcome == "#GP"
    assert not disagree


@kvm
def test_live_set_xcrs_header_rules_agree_with_the_model(live_model):
    import ctypes

    from cpuidkit.live import LiveVcpu, _abi
    from cpuidkit.live._sys import ioctl_errno

    supported, model = live_model
    cases = [
        ({"flags": 1}, [(0, 0x3)]),
        ({"nr_xcrs": 17}, [(0, 0x3)]),
        ({"nr_xcrs": 16}, [(0, 0x7)]),
        ({}, [(1, 0x3)]),
        ({}, [(1, 0x3), (0, 0x7), (0, 0x0)]),
        ({}, [(0, 0x0), (0, 0x7)]),
        ({"nr_xcrs": 0}, []),
        ({"nr_xcrs": 1}, []),
    ]
    with LiveVcpu() as v:
        v.set_cpuid(supported)
        fd = v._vcpu("KVM_SET_XCRS")
        for kw, entries in cases:
            x = _abi.kvm_xcrs()
            x.flags = kw.get("flags", 0)
            x.nr_xcrs = kw.get("nr_xcrs", len(entries))
            for i, (xcr, value) in enumerate(entries):
                x.xcrs[i].xcr, x.xcrs[i].value = xcr, value
            before = v.get_xcr0()
            err = ioctl_errno(fd, _abi.KVM_SET_XCRS, x)
            live = "ok" if err == 0 else ("EINVAL" if err == 22 else err)
            want = set_xcrs(model, entries, **kw)
            assert live == want.outcome, (kw, entries, live, want)
            assert v.get_xcr0() == (model.get_xcr0() if want.ok else before)
            ctypes.memset(ctypes.addressof(x), 0, ctypes.sizeof(x))


@kvm
@pytest.mark.parametrize("variant", ["0xd.0=0x3", "no 0xd", "leaves 0 and 1 only", "no cpuid", "0xd.0 with amx cfg"])
def test_live_accept_set_for_other_tables(variant):
    """PVM rewrites leaves 1 and 0xD after SET; the model applies the measured rewrite and must agree."""
    from cpuidkit.live import LiveVcpu, supported_cpuid

    s = supported_cpuid()
    table = {
        "0xd.0=0x3": s.set_field("0xd.0.eax", 0x3),
        "no 0xd": s.without(0xD),
        "leaves 0 and 1 only": CpuidTable(e for e in s if e.function in (0, 1)),
        "no cpuid": CpuidTable(),
        "0xd.0 with amx cfg": s.set_field("0xd.0.eax[17]", 1),
    }[variant]
    model = live_sim()
    if len(table):
        model.set_cpuid(table)
    values = values_over(parse_bits("0-9,17,18"))
    with LiveVcpu() as v:
        if len(table):
            v.set_cpuid(table)
        live = []
        for x in values:
            try:
                v.set_xcr0(x)
                live.append(x)
            except KvmError:
                pass
    assert live == accept_set(model, over=parse_bits("0-9,17,18"))
