"""The XSAVE component table (data/xsave-components.csv), area sizes and layouts, and AMX.

Expected values are facts from real CPUs (the libvirt dumps in tests/data) and from the SDM/kernel sources
named in the data file, never read back from the module under test.
"""

from __future__ import annotations

import itertools

import pytest

from conftest import libvirt_dumps
from cpuidkit import KvmError
from cpuidkit.live import host_profile
from cpuidkit.core.hosts import HostProfile
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.core.sources import load
from cpuidkit.core.xsave import (
    XFEATURE_NAMES,
    area_sizes,
    compacted_layout,
    compacted_size,
    component_table,
    components_of,
    groups,
    mask_names,
    parse_bits,
    standard_layout,
    standard_size,
    supported_xcr0,
    supported_xss,
)
from cpuidkit.kvm.xcr import amx_report

DUMPS = {p.stem.removeprefix("x86_64-cpuid-"): p for p in libvirt_dumps()}
SPR = HostProfile.builtin("sapphire-rapids")


def dump(name):
    return load(DUMPS[name])


# -- the table -----------------------------------------------------------------------------------


def test_table_rows_and_columns():
    t = component_table()
    assert set(range(0, 20)) <= set(t) and 62 in t
    for bit, c in t.items():
        assert c.bit == bit
        assert c.kind in ("user", "supervisor")
        assert c.size_status in ("verified", "legacy", "variable", "unverified")
        assert c.source, bit
        if c.supervisor:
            assert c.std_offset is None, f"supervisor component {bit} has no standard-format offset"
        if c.size_status == "legacy":
            assert c.size is None and bit in (0, 1)
        else:
            assert c.size and c.size > 0
    assert {b for b, c in t.items() if c.size_status == "unverified"} == {13}
    assert {b for b, c in t.items() if c.xfd} == {18}  # TILEDATA is the only XFD-capable component
    assert [t[b].kind for b in (8, 10, 11, 12, 13, 14, 15, 16)] == ["supervisor"] * 8
    assert t[18].size == 8192 and t[18].std_offset == 2816 and t[18].align64  # amx_test's numbers
    assert t[9].std_offset == 2688 and "2432" in t[9].notes  # Intel's value, AMD's in the notes
    assert t[19].std_offset is None and "UNVERIFIED" in t[19].notes


def test_names_agree_with_the_module():
    t = component_table()
    for bit, name in XFEATURE_NAMES.items():
        assert t[bit].name == name


def test_groups_are_kvms_all_or_none_rules():
    # __kvm_set_xcr: BNDREGS==BNDCSR; AVX-512 all or none; XTILECFG==XTILEDATA
    assert groups() == {"mpx": 0b11 << 3, "avx512": 0b111 << 5, "amx": 0b11 << 17}
    t = component_table()
    assert t[2].requires == 1 << 1 and all(t[b].requires == 1 << 2 for b in (5, 6, 7))


def test_groups_match_what_the_model_refuses():
    # a host that enumerates every user component KVM supports: MPX (Cascade Lake) lacks AMX, so build one
    host = HostProfile.builtin("cascade-lake")
    v = SimulatedVcpu("6.18", "vmx", host)
    v.set_cpuid(host.cpuid)
    full = v.derived.guest_supported_xcr0 | 1
    assert full == 0x2FF
    for name, mask in groups().items():
        if mask & ~full:
            continue
        for sub in range(1, mask.bit_count()):
            for bits in itertools.combinations([b for b in range(64) if mask >> b & 1], sub):
                partial = sum(1 << b for b in bits)
                assert v.xcr0_violation(full & ~mask | partial), (name, hex(partial))
        assert v.xcr0_violation(full) is None
    for bit, c in component_table().items():
        if c.requires and full >> bit & 1:
            assert v.xcr0_violation(full & ~c.requires), bit


@pytest.mark.parametrize("name", sorted(DUMPS))
def test_table_sizes_match_every_cpu_that_reports_the_component(name):
    t = component_table()
    for bit, c in components_of(dump(name)).items():
        ref = t.get(bit)
        assert ref is not None, f"{name} enumerates component {bit}, which the table lacks"
        assert c.supervisor == ref.supervisor, (name, bit)
        if ref.size_status == "verified" and not (bit == 9 and name == "EPYC-7502-32-Core"):
            assert c.size == ref.size, (name, bit)
        if ref.size_status == "variable":
            assert (c.size - 40) % 24 == 0, (name, bit)  # Arch LBR: 40 + 24 x depth
        if c.supervisor:
            assert c.offset == 0
        assert c.xfd == ref.xfd, (name, bit)
        if ref.align64 is not None:
            assert c.aligned64 == ref.align64, (name, bit)


def test_intel_reports_the_table_offsets_and_amd_does_not():
    t = component_table()
    for name in ("Xeon-Gold-6148", "Ice-Lake-Server", "Xeon-w7-3465X", "Core-i7-1270P"):
        for bit, c in components_of(dump(name)).items():
            if not c.supervisor:
                assert c.offset == t[bit].std_offset, (name, bit)
    genoa = components_of(dump("EPYC-9334-32-Core"))
    assert (genoa[5].offset, genoa[6].offset, genoa[7].offset, genoa[9].offset) == (832, 896, 1408, 2432)
    rome = components_of(dump("EPYC-7502-32-Core"))
    assert (rome[9].size, rome[9].offset) == (64, 832)  # Zen 2: PKRU right after AVX
    milan = components_of(dump("EPYC-7713-64-Core"))
    assert (milan[9].size, milan[9].offset) == (8, 2432)


# -- sizes ---------------------------------------------------------------------------------------


def test_sizes_for_classic_masks_on_sapphire_rapids():
    comps = SPR.xsave_components
    assert standard_size(comps, 0x1) == standard_size(comps, 0x3) == 576
    assert standard_size(comps, 0x7) == 832
    assert standard_size(comps, 0xE7) == 2688
    assert standard_size(comps, 0x2E7) == 2696
    assert standard_size(comps, 0x602E7) == 11008
    # compacted: 576 + 256 + 64 + 512 + 1024 + 8 = 2440; TILECFG is 64-byte aligned -> 2496 + 64 = 2560;
    # TILEDATA 2560 + 8192
    assert compacted_size(comps, 0x2E7) == 2440
    assert compacted_size(comps, 0x602E7) == 10752
    assert compacted_size(comps, 0x602E7, honour_alignment=False) == 2440 + 64 + 8192
    s = area_sizes(comps, 0x602E7, xss=1 << 11 | 1 << 12)
    # CET_U + CET_S (40 bytes) fit in the padding before the 64-byte aligned TILECFG: no growth
    assert (s.standard, s.compacted, s.compacted_unaligned) == (11008, 10752, 2440 + 40 + 64 + 8192)


def test_compacted_size_with_xss_in_bit_order():
    comps = SPR.xsave_components
    # CET_U (11, 16 bytes) and CET_S (12, 24 bytes) sit between PKRU and TILECFG in bit order
    assert compacted_size(comps, 0x2E7 | 0x1800) == 2440 + 16 + 24
    assert compacted_size(comps, 0x602E7 | 0x1800) == ((2440 + 40 + 63) // 64) * 64 + 64 + 8192


def _xcr0_candidates(full: int):
    from cpuidkit.core.xsave import set_bits

    bits = [b for b in set_bits(full) if b >= 2]
    for combo in itertools.product((0, 1), repeat=len(bits)):
        m = 0b11 | sum(1 << b for b, on in zip(bits, combo) if on)
        if all(m & g in (0, g) for g in groups().values()):
            yield m


def _compacting(name: str) -> bool:
    d1 = dump(name).get(0xD, 1)
    return d1 is not None and bool(d1.eax & 0b1010)


# Dumps whose CPU has neither XSAVEC nor XSAVES: 0xD.1 EBX is then not a compacted size (checked below).
NOT_COMPACTING = {"A10-5800K", "Core-i7-2600", "Opteron-2350", "Opteron-6234", "Xeon-E5-2609-v3", "Xeon-E5-2650-v4",
                  "Xeon-W3520"}


def test_which_dumps_have_a_compacted_size():
    assert {n for n in DUMPS if not _compacting(n)} == NOT_COMPACTING


@pytest.mark.parametrize("name", sorted(n for n in DUMPS if _compacting(n)))
def test_the_cpus_own_compacted_size_is_explained(name):
    """0xD.1 EBX is the compacted size for the XCR0|XSS the dumped OS had enabled: some subset must give it."""
    table = dump(name)
    d1 = table.get(0xD, 1)
    comps = components_of(table)
    xss_bits = [b for b in range(64) if supported_xss(table) >> b & 1]
    found = []
    for xcr0 in _xcr0_candidates(supported_xcr0(table)):
        for r in range(len(xss_bits) + 1):
            for sub in itertools.combinations(xss_bits, r):
                if compacted_size(comps, xcr0 | sum(1 << b for b in sub)) == d1.ebx:
                    found.append((xcr0, sub))
    assert found, f"no XCR0|XSS subset gives {name}'s 0xD.1 EBX {d1.ebx}"


def test_layouts():
    comps = SPR.xsave_components
    std = {d["name"]: (d["offset"], d["size"]) for d in standard_layout(comps, 0x602E7)}
    assert std["pkru"] == (2688, 8) and std["amx_tiledata"] == (2816, 8192) and std["x87"] == (0, None)
    cmp = {d["name"]: d["offset"] for d in compacted_layout(comps, 0x602E7)}
    assert cmp["avx"] == 576 and cmp["pkru"] == 2432 and cmp["amx_tilecfg"] == 2496 and cmp["amx_tiledata"] == 2560
    assert compacted_layout(comps, 0x602E7)[-1]["offset"] + 8192 == compacted_size(comps, 0x602E7)


def test_mask_helpers():
    assert mask_names(0x7) == ["x87", "sse", "avx"]
    assert mask_names(1 << 40) == ["xfeature40"]
    assert parse_bits("0-9,17,18") == 0x603FF
    assert parse_bits("x87,sse,amx_tiledata") == 0x40003
    assert parse_bits("0x602e7") == 0x602E7
    from cpuidkit import InputError

    for bad in ("", "64", "3-1", "nonsense", "0xzz"):
        with pytest.raises(InputError):
            parse_bits(bad)


# -- AMX -----------------------------------------------------------------------------------------


def test_amx_report_on_an_amx_host():
    r = amx_report("sapphire-rapids")
    assert r["host_has_amx"] and r["guest_0xd0_has_tiledata"]
    assert r["components"]["amx_tiledata"] == {"bit": 18, "size": 8192, "offset": 2816, "xfd": True,
                                               "reported_by_host": True}
    assert r["components"]["amx_tilecfg"]["xfd"] is False
    assert r["without_permission"]["set_cpuid"] == "EPERM"
    w = r["with_permission"]
    assert w["set_cpuid"] == "ok" and w["guest_supported_xcr0"] == 0x602E7
    assert w["xsetbv"] == {"0x60007": "ok", "0x20007": "#GP", "0x40007": "#GP"}
    assert w["ia32_xfd_allowed"] == 1 << 18
    assert any("#NM" in rule for rule in r["rules"])


def test_amx_report_on_a_host_without_amx():
    r = amx_report("cascade-lake", table=SPR.cpuid)
    assert not r["host_has_amx"]
    assert r["with_permission"]["permission"] == "EOPNOTSUPP"
    assert r["components"]["amx_tiledata"]["reported_by_host"] is False
    assert r["components"]["amx_tiledata"]["size"] == 8192  # from the table, since the host does not say


def test_tilecfg_alone_passes_kvm_set_cpuid2_but_tiledata_needs_permission():
    v = SimulatedVcpu("6.18", "vmx", SPR)
    v.set_cpuid(SPR.cpuid.set_field("0xd.0.eax[18]", 0))  # bit 17 alone: no EPERM
    assert v.derived.guest_supported_xcr0 & (1 << 17)
    assert v.xcr0_violation(0x20007)  # but XCR0 can never hold it without 18
    with pytest.raises(KvmError) as e:
        SimulatedVcpu("6.18", "vmx", SPR).set_cpuid(SPR.cpuid)
    assert e.value.errno_name == "EPERM"
    old = SimulatedVcpu("5.16", "vmx", SPR)
    old.set_cpuid(SPR.cpuid)  # no dynamic-feature check before 5.17


@pytest.mark.kvm
def test_live_amx_permission_and_set_cpuid2_agree_with_the_model():
    """Permission is per process and must come before the first vCPU: each case runs in a fresh interpreter."""
    from test_live import _child

    from cpuidkit.live import supported_cpuid
    from cpuidkit.kvm.xcr import amx_report

    code = """
        import json, sys
        from cpuidkit import KvmError
        from cpuidkit.live import LiveVcpu, supported_cpuid
        out = {}
        t = supported_cpuid().set_field("0xd.0.eax[18]", 1).set_field("0xd.0.eax[17]", 1)
        with LiveVcpu() as v:
            if PERM:
                try:
                    v.grant_xfeature_permission(1 << 18); out["permission"] = "granted"
                except KvmError as e:
                    out["permission"] = e.errno_name
            try:
                v.set_cpuid(t); out["set_cpuid"] = "ok"
            except KvmError as e:
                out["set_cpuid"] = e.errno_name
            if out["set_cpuid"] == "ok":
                out["xsetbv_ok"] = []
                for x in (0x60007, 0x20007, 0x40007):
                    try:
                        v.set_xcr0(x); out["xsetbv_ok"].append(hex(x))
                    except KvmError:
                        pass
        print(json.dumps(out))
    """
    from cpuidkit.live._sys import detect_vendor, kernel_version

    table = supported_cpuid().set_field("0xd.0.eax[18]", 1).set_field("0xd.0.eax[17]", 1)
    model = amx_report(host_profile(), kernel=kernel_version(), vendor=detect_vendor()[0] or "vmx", table=table)
    without = _child(code.replace("PERM", "False"))
    assert without["set_cpuid"] == model["without_permission"]["set_cpuid"] == "EPERM"
    with_ = _child(code.replace("PERM", "True"))
    m = model["with_permission"]
    if with_.get("permission") != "granted":
        assert m["permission"] == with_["permission"]
        return
    assert with_["set_cpuid"] == m["set_cpuid"]
    if m["set_cpuid"] == "ok":
        assert with_["xsetbv_ok"] == [x for x, r in m["xsetbv"].items() if r == "ok"]
