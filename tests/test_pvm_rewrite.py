"""The pvm module's rewrite, modelled the way the module does it (issue 15, item 2).

It finds the entries it rewrites with KVM's lookup (first match; the index counts only on flagged entries),
appends its 0xD entries while they fit in 256, hides XSAVE and the AVX family where there is no XSAVE state,
and clears AMX TILEDATA even with the guest's permission.  Each behaviour is a row of data/pvm-behaviours.csv;
the live tests below check every modelled row on the machine they run on, with expectations derived from that
machine (tests/live_expect.py), and compare the model with the kernel on every register.  The offline tests
replay the model against a recorded Intel host and check the expectations against a recorded Intel and a
recorded AMD host through the same code path.
"""

from __future__ import annotations

import random

import pytest
from live_expect import expect, observed_facts, parse_rows, recorded_host
from test_live import _child

from cpuidkit._files import read_csv
from cpuidkit.analysis.agreement import (
    PERMISSION_STATES,
    compare,
    measure,
    measure_in_process,
    random_scenario,
    rewrite_class_tables,
    run_steps,
)
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.vendors import pvm_context, pvm_rewrite

kvm = pytest.mark.kvm
XSAVE, AVX = 1 << 26, 1 << 28  # leaf 1 ECX
FILLER = range(0x40000100, 0x40000200)
N_RANDOM = 400  # per permission state, on top of tests/test_differential.py's 2,000


def _model(host, table: CpuidTable, permission: int | None = None):
    v = SimulatedVcpu(kernel="6.18", vendor="pvm", host=host)
    if permission:
        v.grant_xfeature_permission(permission)
    v.set_cpuid(table)
    return v.get_cpuid()


def _no_filler(t: CpuidTable) -> CpuidTable:
    return CpuidTable(e for e in t if not (e.function in FILLER and not (e.index or e.flags or e.eax or e.ebx or e.ecx or e.edx)))


# -- offline: two recorded hosts, one Intel, one AMD -------------------------------------------------------


@pytest.mark.parametrize("name", ["xeon", "epyc"])
def test_expectations_come_from_the_host(name):
    """The function the live tests take their expectations from, on two recorded hosts: it predicts what was
    observed on each, from that host's own CPUID and KVM_GET_SUPPORTED_CPUID."""
    host, _ = recorded_host(name)
    got, seen = expect(host), observed_facts(name)
    assert seen, name
    for key, value in seen.items():
        assert getattr(got, key) == value, (name, key)


def test_the_two_recorded_hosts_expect_different_things():
    xeon, epyc = expect(recorded_host("xeon")[0]), expect(recorded_host("epyc")[0])
    assert xeon.amx_grant == "ok" and epyc.amx_grant == "EOPNOTSUPP"
    assert xeon.appended_subleaves != epyc.appended_subleaves
    assert xeon.append_edge != epyc.append_edge


def test_the_model_replays_the_recorded_xeon():
    """Every table of rewrite_class_tables, set on the recorded Intel host: the model's KVM_GET_CPUID2 is what the
    kernel returned there, entry for entry, every register (class D also in a process with AMX permission)."""
    host, obs = recorded_host("xeon")
    assert host.supported is not None
    tables = rewrite_class_tables(host.supported)
    seen = obs["observations"]
    assert {k.removesuffix(" (with the permission)") for k in seen} == set(tables)
    for name, want in seen.items():
        table = tables[name.removesuffix(" (with the permission)")]
        try:
            got = _model(host, table, want.get("permission"))
        except KvmError as e:
            assert want.get("errno") == e.errno_name, name
            continue
        assert "errno" not in want, name
        assert len(got) == want["nent"], name
        assert list(_no_filler(got)) == list(parse_rows(want["get"])), name


def test_classes_on_the_recorded_xeon():
    """What makes each class differ from an exact-key rewrite, on the recorded Intel host."""
    host, _ = recorded_host("xeon")
    s = host.supported
    assert s is not None
    rw = host.vendor_rewrite
    t = rewrite_class_tables(s)
    plain = pvm_rewrite(s, host)
    # A: duplicates: every 0xD subleaf as set, then all the appended ones
    a = pvm_rewrite(t["A: no 0xD.0, other 0xD subleaves"], host)
    assert [e.index for e in a if e.function == 0xD] == [e.index for e in s if e.function == 0xD and e.index] + [
        e["index"] for e in rw["appended"]
    ]
    # B: one past the edge nothing is appended and XSAVE goes; at the edge it is appended
    b = pvm_rewrite(t["B: no 0xD, one past the edge"], host)
    assert b.get_any(0xD) is None and not b.get(1).ecx & XSAVE
    assert pvm_rewrite(t["B: no 0xD, at the edge"], host).get(0xD, 0) is not None
    # C: an unflagged 7.0 ends with 7.1's data; a flagged 7.1 behind it is left as set
    c = pvm_rewrite(t["C: 7.0 unflagged"], host)
    assert c.get(7, 0).eax == plain.get(7, 1).eax and c.get(7, 0).ebx == plain.get(7, 1).ebx
    assert next(e for e in c if e.key() == (7, 1)) == s.get(7, 1)
    assert pvm_context(t["C: 0xD.0 unflagged"], host) == "no_ymm"
    # D: TILEDATA is accepted with the permission, and cleared
    d = _model(host, t["D: 0xD.0 with TILECFG and TILEDATA"], 1 << 18)
    assert not d.get(0xD, 0).eax & (0b11 << 17)


def test_every_modelled_row_has_a_live_check():
    rows = read_csv("pvm-behaviours.csv")
    assert rows and all(r["verified"] == "live" and r["modelled"] in ("yes", "no") and r["evidence"] for r in rows)
    modelled = {r["id"] for r in rows if r["modelled"] == "yes"}
    assert modelled == set(LIVE_CHECKS), modelled ^ set(LIVE_CHECKS)


# -- live: this machine ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live():
    from cpuidkit.live import host_profile

    host = host_profile()
    if host.vendor_module != "pvm":
        pytest.skip("the pvm module is not the vendor module here")
    return host


def _kernel(table: CpuidTable) -> CpuidTable:
    from cpuidkit.live import LiveVcpu

    with LiveVcpu() as v:
        v.set_cpuid(table)
        return v.get_cpuid()


def _both(host, table: CpuidTable) -> CpuidTable:
    """The kernel's KVM_GET_CPUID2 after ``table``; the model must give the same, every register."""
    real = _kernel(table)
    assert list(_model(host, table)) == list(real)
    return real


def check_lookup(host):
    s = host.supported
    plain = _both(host, s)
    t = rewrite_class_tables(s)
    c = _both(host, t["C: 7.0 unflagged"])
    assert (c.get(7, 0).eax, c.get(7, 0).ebx, c.get(7, 0).ecx, c.get(7, 0).edx) == (
        plain.get(7, 1).eax, plain.get(7, 1).ebx, plain.get(7, 1).ecx, plain.get(7, 1).edx
    )
    unflagged = _both(host, t["C: leaf 1 with index 5, unflagged"]).get_any(1)
    flagged = _both(host, t["C: leaf 1 with index 5, flagged"]).get_any(1)
    assert unflagged.ecx == plain.get(1).ecx  # found by the lookup for 1.0: rewritten
    assert flagged.ecx == s.get(1).ecx  # flagged with index 5: not found, left as set


def check_rewrite_keys(host):
    s = host.supported
    mine = (1, 7, 0xD, 0x8000_0008)  # 0x80000008 EAX holds the linear width KVM checks
    pattern = CpuidTable(
        e if e.function in mine else e.replace(eax=e.eax ^ 0x5A5A5A5A, ebx=e.ebx ^ 0xA5A5A5A5, ecx=~e.ecx & 0xFFFFFFFF)
        for e in s
    )
    got = _both(host, pattern)
    dropped = set(host.vendor_rewrite["dropped"])
    assert [e for e in got if e.function not in mine] == [e for e in pattern if e.function not in mine + tuple(dropped)]
    assert got.get(7, 2) == s.get(7, 2)  # 7.2 is not the module's


def check_rewrite_order(host):
    s = host.supported.appended(CpuidEntry(0xD, 63, 1, 0x5A5A5A5A))
    last = _both(host, s).get(0xD, 63)
    got = _both(host, rewrite_class_tables(s)["C: 0xD.0 unflagged"]).get(0xD, 0)
    assert (got.eax, got.ecx, got.edx) == (last.eax, last.ecx, last.edx)  # the last subleaf's data wins


def check_dropped_leaves(host):
    for fn in host.vendor_rewrite["dropped"]:
        got = _both(host, host.supported.without(fn).appended(CpuidEntry(fn, 0, 1, 1), CpuidEntry(fn, 1, 1, 2)))
        assert got.get_any(fn) is None  # every entry of the function, not just the first


def check_append_when(host):
    s, e = host.supported, expect(host)
    no_d = s.without(0xD)
    assert not any(x.function == 0xD for x in _both(host, no_d.without(1)))  # no leaf 1: nothing
    leaf13 = no_d.replace_at(no_d.find_position(1), no_d.get(1).replace(index=3, flags=1))
    assert not any(x.function == 0xD for x in _both(host, leaf13))  # leaf 1 not found by the lookup: nothing
    got = _both(host, no_d.appended(CpuidEntry(0xD, 64, 1, 7)))  # a flagged 0xD.64 is no 0xD.0: appended
    assert [x.index for x in got if x.function == 0xD] == [64, *e.appended_subleaves]
    got = _both(host, rewrite_class_tables(s)["C: unflagged 0xD.3 in place of 0xD.0"])
    assert len([x for x in got if x.function == 0xD]) == len([x for x in s if x.function == 0xD])  # nothing added


def check_append_entries(host):
    s, e = host.supported, expect(host)
    table = rewrite_class_tables(s)["A: no 0xD.0, other 0xD subleaves"]
    got = _both(host, table)
    before = [x.index for x in table if x.function == 0xD]
    assert [x.index for x in got if x.function == 0xD] == before + list(e.appended_subleaves)
    if 1 in before:  # the appended duplicate of 0xD.1 is the host CPU's own 0xD.1
        dup = [x for x in got if x.key() == (0xD, 1)][1]
        mine = host.cpuid.get(0xD, 1)
        assert (dup.eax, dup.ecx, dup.edx) == (mine.eax, mine.ecx, mine.edx)


def check_append_limit(host):
    e = expect(host)
    tables = rewrite_class_tables(host.supported)
    assert any(x.function == 0xD for x in _both(host, tables["B: no 0xD, at the edge"]))
    assert not any(x.function == 0xD for x in _both(host, tables["B: no 0xD, one past the edge"]))
    assert len(tables["B: no 0xD, at the edge"]) == e.append_edge
    # the count is the table as set: without the leaves the module drops, the edge is the same
    bare = host.supported.without(0xD)
    for fn in host.vendor_rewrite["dropped"]:
        bare = bare.without(fn)
    fill = [CpuidEntry(0x40000100 + i) for i in range(256)]
    at = bare.appended(*fill[: e.append_edge - len(bare)])
    assert any(x.function == 0xD for x in _both(host, at))
    assert not any(x.function == 0xD for x in _both(host, at.appended(fill[-1])))


def check_append_refused(host):
    got = _both(host, rewrite_class_tables(host.supported)["B: no 0xD, one past the edge"])  # accepted, no 0xD
    assert got.get_any(0xD) is None


def check_subleaves_follow_xcr0(host):
    e = expect(host)
    got = _both(host, rewrite_class_tables(host.supported)["C: unflagged 0xD.3 in place of 0xD.0"])
    flagged = [x for x in got if x.function == 0xD and x.flags & 1 and x.index >= 2]
    assert flagged and all(x.eax == x.ebx == x.ecx == x.edx == 0 for x in flagged)
    assert {x.index for x in flagged} <= set(e.appended_subleaves)  # the host's own components, cleared


def check_hidden_absent(host):
    s = host.supported
    plain = _both(host, s).get(1)
    got = _both(host, rewrite_class_tables(s)["B: no 0xD, one past the edge"]).get(1)
    assert plain.ecx & XSAVE and not got.ecx & XSAVE
    assert not got.ecx & AVX


def check_hidden_no_ymm(host):
    got = _both(host, rewrite_class_tables(host.supported)["C: 0xD.0 unflagged"])
    assert not (got.get(0xD, 0).eax & 0b100)  # no AVX state in the XCR0 it ends with
    assert got.get(1).ecx & XSAVE and not got.get(1).ecx & AVX


def check_tiledata_with_permission(host):
    e = expect(host)
    out = _child(
        """
        import json
        from cpuidkit.analysis.agreement import rewrite_class_tables
        from cpuidkit.errors import KvmError
        from cpuidkit.live import LiveVcpu, supported_cpuid
        res = {}
        try:
            with LiveVcpu() as v:
                v.grant_xfeature_permission(1 << 18)
            res["grant"] = "ok"
        except KvmError as x:
            res["grant"] = x.errno_name
        t = rewrite_class_tables(supported_cpuid())["D: 0xD.0 with TILECFG and TILEDATA"]
        try:
            with LiveVcpu() as v:
                v.set_cpuid(t)
                res["eax"] = v.get_cpuid().get(0xD, 0).eax
        except KvmError as x:
            res["errno"] = x.errno_name
        print(json.dumps(res))
        """
    )
    assert out["grant"] == e.amx_grant
    t = rewrite_class_tables(host.supported)["D: 0xD.0 with TILECFG and TILEDATA"]
    model = SimulatedVcpu(kernel="6.18", vendor="pvm", host=host)
    try:
        model.grant_xfeature_permission(1 << 18)
        model.set_cpuid(t)
        m = model.get_cpuid().get(0xD, 0).eax
    except KvmError as x:
        m = x.errno_name
    if "errno" in out:
        assert out["errno"] == e.tiledata_with_permission == m
    else:
        assert out["eax"] == m
        assert ("kept" if out["eax"] & 1 << 18 else "cleared") == e.tiledata_with_permission


LIVE_CHECKS = {
    "lookup": check_lookup,
    "rewrite_keys": check_rewrite_keys,
    "rewrite_order": check_rewrite_order,
    "dropped_leaves": check_dropped_leaves,
    "append_when": check_append_when,
    "append_entries": check_append_entries,
    "append_limit": check_append_limit,
    "append_refused": check_append_refused,
    "subleaves_follow_xcr0": check_subleaves_follow_xcr0,
    "hidden_absent": check_hidden_absent,
    "hidden_no_ymm": check_hidden_no_ymm,
    "tiledata_with_permission": check_tiledata_with_permission,
}


@kvm
@pytest.mark.parametrize("row", sorted(LIVE_CHECKS))
def test_each_modelled_row_holds_on_this_host(live, row):
    LIVE_CHECKS[row](live)


@kvm
@pytest.mark.parametrize("state", sorted(PERMISSION_STATES))
def test_random_cases_agree_on_every_register(live, state):
    """N_RANDOM seeded cases per permission state (AMX asked for in a fresh interpreter), the final table compared
    on every register; the mix must hold classes A, B and C (and D where this host can grant AMX)."""
    perm = PERMISSION_STATES[state]
    r = measure(N_RANDOM, 15, scripted=False) if perm is None else measure_in_process(N_RANDOM, 16, perm)
    assert r["cases"] == N_RANDOM
    assert r["agreed"] == r["cases"], r["failures"]
    want = {"A", "B", "C"} | ({"D"} if perm and expect(live).amx_grant == "ok" else set())
    assert want <= set(r["mix"]), r["mix"]
    if perm:
        assert r["permission_refused"] == (None if expect(live).amx_grant == "ok" else expect(live).amx_grant)


@kvm
def test_every_rewrite_class_table_agrees(live):
    for name, table in rewrite_class_tables(live.supported).items():
        try:
            real = _kernel(table)
        except KvmError as e:
            with pytest.raises(KvmError) as info:
                _model(live, table)
            assert info.value.errno_name == e.errno_name, name
            continue
        assert list(_model(live, table)) == list(real), name


@kvm
def test_a_scenario_with_runtime_steps_agrees(live):
    """The rewrite then KVM's runtime update: XCR0, CR4 and a re-set after KVM_RUN on a class-A table."""
    from cpuidkit.analysis.agreement import Step
    from cpuidkit.live import LiveVcpu

    t = rewrite_class_tables(live.supported)["A: no 0xD.0, other 0xD subleaves"]
    steps = [Step("set_cpuid", (t,)), Step("set_cr4", (1 << 18,)), Step("set_xcr0", (0x7,)), Step("run"),
             Step("set_cpuid_readback", ("same",))]
    model = run_steps(SimulatedVcpu(kernel="6.18", vendor="pvm", host=live), steps)
    with LiveVcpu() as lv:
        real = run_steps(lv, steps)
    assert compare(model, real) == []
    rng = random.Random(3)
    assert random_scenario(rng, live.supported, 1 << 18)[0].op == "grant_xfeature_permission"
