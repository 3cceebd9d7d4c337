"""MAXPHYADDR: reserved bits, CR3, APIC base, and what each access meets for guest vs host widths.

Facts: arch/x86/kvm/mmu/mmu.c __reset_rsvds_bits_mask (6.12.117), cpuid.c cpuid_query_maxphyaddr,
regs.c kvm_set_cr3/pdptr_rsvd_bits, mmu.h kvm_mmu_max_gfn (host width under TDP, 52 without),
vmx.c handle_ept_violation/vmx.h vmx_need_pf_intercept, svm.c allow_smaller_maxphyaddr = !npt_enabled.
"""

from __future__ import annotations

import json

import pytest

from test_guest import run_cli
from cpuidkit import CpuidEntry, CpuidTable, InputError
from cpuidkit.analysis.addressing import (
    MISSED,
    MMIO,
    RESERVED,
    UNMAPPABLE,
    WORKS,
    Region,
    apic_base_reserved_bits,
    classify,
    cr3_check,
    guest_linear_bits,
    guest_maxphyaddr,
    guest_phys_bits_field,
    guest_phys_bits_history,
    memslot_limit_check,
    paging_reserved_bits,
    smaller_maxphyaddr,
)
from cpuidkit.core.hosts import HostProfile

GiB, TiB = 1 << 30, 1 << 40


def set_bits(lo, hi):
    return ((1 << (hi - lo + 1)) - 1) << lo


# -- what a table says ------------------------------------------------------------------------


def test_maxphyaddr_defaults_to_36():
    assert guest_maxphyaddr(CpuidTable()) == 36
    t = CpuidTable([CpuidEntry(0x80000000, eax=0x80000007), CpuidEntry(0x80000008, eax=0x3030)])
    assert guest_maxphyaddr(t) == 36  # 0x80000008 not reachable through 0x80000000.EAX
    t = CpuidTable([CpuidEntry(0x80000000, eax=0x80000008), CpuidEntry(0x80000008, eax=0x30392E)])
    assert guest_maxphyaddr(t) == 46 and guest_linear_bits(t) == 57 and guest_phys_bits_field(t) == 48
    assert guest_maxphyaddr(HostProfile.builtin("sapphire-rapids").cpuid) == 52
    assert guest_linear_bits(HostProfile.builtin("cascade-lake").cpuid) == 48


# -- reserved bits ---------------------------------------------------------------------------------


def test_four_level_reserved_bits():
    m = paging_reserved_bits(46, "4-level")
    high = set_bits(46, 51)
    assert m["PTE"] == m["PDE"] == m["PDPTE"] == high
    assert m["PML4E"] == high | 1 << 7  # PS must be 0 in a PML4E
    assert m["PDE (2 MiB page)"] == high | set_bits(13, 20)
    assert m["PDPTE (1 GiB page)"] == high | set_bits(13, 29)
    assert "PML5E" not in m and paging_reserved_bits(46, "5-level")["PML5E"] == m["PML4E"]


def test_reserved_bits_options():
    assert paging_reserved_bits(46, nx=False)["PTE"] == set_bits(46, 51) | 1 << 63
    assert paging_reserved_bits(46, gbpages=False)["PDPTE"] == set_bits(46, 51) | 1 << 7
    amd = paging_reserved_bits(46, amd=True)
    assert amd["PML4E"] & 1 << 8 and not amd["PDPTE"] & 1 << 8  # KVM adds bit 8 to PML4E/PML5E only


def test_no_maxphyaddr_bits_at_52_and_above():
    assert paging_reserved_bits(52)["PTE"] == 0
    assert paging_reserved_bits(64)["PTE"] == 0
    assert paging_reserved_bits(0)["PTE"] == set_bits(0, 51)  # degenerate: every address bit reserved


def test_pae_reserves_up_to_bit_62():
    m = paging_reserved_bits(36, "pae")
    assert m["PTE"] == set_bits(36, 62)
    pdpte = [v for k, v in m.items() if k.startswith("PDPTE")][0]
    assert pdpte == set_bits(36, 63) | set_bits(5, 8) | set_bits(1, 2)


def test_cr3():
    assert cr3_check(1 << 45, 46) is None
    assert "bits 0x400000000000" in cr3_check(1 << 46, 46)
    assert cr3_check(1 << 63 | 0x1000, 46) is not None
    assert cr3_check(1 << 63 | 0x1000, 46, pcide=True) is None  # bit 63 is "no flush" with PCIDE
    assert cr3_check(1 << 62 | 0x1000, 46, lam=True) is None  # LAM_U48/U57 ignored with LAM
    assert cr3_check(1 << 46, 46, long_mode=False) is None


def test_apic_base_reserved_bits():
    assert apic_base_reserved_bits(36) == set_bits(36, 63) | 0x2FF
    assert apic_base_reserved_bits(36, x2apic=False) == set_bits(36, 63) | 0x2FF | 1 << 10
    assert apic_base_reserved_bits(64) == 0x2FF


# -- host-side facts -------------------------------------------------------------------------------


def test_smaller_maxphyaddr_by_vendor():
    assert not smaller_maxphyaddr("vmx")["available"]
    assert smaller_maxphyaddr("vmx", module_param=True)["available"]
    assert not smaller_maxphyaddr("svm", module_param=True)["available"]  # never with NPT
    assert smaller_maxphyaddr("svm", tdp=False)["available"]
    assert smaller_maxphyaddr("pvm")["available"]
    assert "emulat" in smaller_maxphyaddr("vmx", module_param=True)["cost"]
    with pytest.raises(InputError):
        smaller_maxphyaddr("hvf")


@pytest.mark.parametrize("kernel, rule", [("5.10", "accepted"), ("5.17", "accepted"), ("5.19", "unknown"),
                                          ("6.1", "refused"), ("6.18", "refused")])
def test_memslot_limit_by_kernel(kernel, rule):
    assert memslot_limit_check(kernel) == rule


@pytest.mark.parametrize("kernel, reported, consumed", [("6.9", False, "false"), ("6.10", True, "false"),
                                                        ("6.16", True, "tdx_only")])
def test_guest_phys_bits_history(kernel, reported, consumed):
    h = guest_phys_bits_history(kernel)
    assert (h["reported_in_supported_cpuid"], h["consumed"]) == (reported, consumed)


# -- the classification ---------------------------------------------------------------------------

LOW_RAM = Region("low RAM", 0, 2 * GiB)
HIGH_RAM = Region("high RAM", 4 * GiB, 60 * GiB)
BAR_TOP52 = Region("pci64 at 2^51", 1 << 51, TiB, "bar64")  # where a 52-bit guest's firmware may put it
BAR_BELOW46 = Region("pci64 below 2^46", (1 << 46) - TiB, TiB, "bar64")
RAM_ABOVE46 = Region("RAM above 2^46", 1 << 46, 64 * GiB)


def by_target(results):
    return {a.target: a for a in results}


def test_52_bit_guest_on_46_bit_host_with_tdp():
    r = by_target(classify(52, 46, "4-level", [LOW_RAM, HIGH_RAM, BAR_TOP52, RAM_ABOVE46], [40, 45, 46, 51],
                           kernel="6.18"))
    assert r["low RAM"].outcome == r["high RAM"].outcome == WORKS and r["low RAM"].memslot == "ok"
    bar = r["pci64 at 2^51"]
    assert (bar.outcome, bar.faithful, bar.memslot) == (RESERVED, False, "none")
    assert "no VM exit" in bar.explanation
    ram = r["RAM above 2^46"]
    assert (ram.outcome, ram.faithful, ram.memslot) == (RESERVED, False, "refused")
    assert "EINVAL" in ram.explanation
    assert r["PTE bit 40"].outcome == r["PTE bit 45"].outcome == WORKS
    for k in (46, 51):
        assert (r[f"PTE bit {k}"].outcome, r[f"PTE bit {k}"].faithful) == (RESERVED, False)


def test_memslot_above_the_host_by_kernel():
    old = by_target(classify(52, 46, layout=[RAM_ABOVE46], kernel="5.15"))["RAM above 2^46"]
    assert old.memslot == "accepted (unusable)" and old.outcome == RESERVED


def test_enumerating_52_on_46_in_anticipation_of_migration():
    """The seed's idea: give the guest 52 bits on a 46-bit host so it can later move to 52-bit hosts.

    On the 46-bit host it works only while every region stays below 2^46 (e.g. firmware told through
    GuestPhysBits, or a VMM that caps its PCI hole); guest PTE bits 46-51 still fault where real
    hardware would not. On a 52-bit host the same guest is faithful everywhere.
    """
    layout = [LOW_RAM, HIGH_RAM, BAR_BELOW46]
    on46 = classify(52, 46, "4-level", layout, range(40, 52))
    assert all(a.outcome in (WORKS, MMIO) for a in on46 if a.kind == "region")
    assert [a.bit for a in on46 if a.kind == "pte" and not a.faithful] == list(range(46, 52))
    on52 = classify(52, 52, "4-level", layout + [BAR_TOP52], range(40, 52))
    assert all(a.faithful for a in on52)
    assert by_target(on52)["pci64 at 2^51"].outcome == MMIO
    # a firmware that uses the full 52 bits breaks on the 46-bit host
    assert by_target(classify(52, 46, layout=[BAR_TOP52]))["pci64 at 2^51"].outcome == RESERVED


def test_46_bit_guest_on_52_bit_host():
    ptes = [45, 46, 51]
    plain = by_target(classify(46, 52, "4-level", [], ptes))
    assert plain["PTE bit 45"].outcome == WORKS
    assert (plain["PTE bit 46"].outcome, plain["PTE bit 46"].faithful) == (MISSED, False)
    assert "MMIO exit" in plain["PTE bit 51"].explanation
    fixed = by_target(classify(46, 52, "4-level", [], ptes, allow_smaller_maxphyaddr=True))
    assert (fixed["PTE bit 46"].outcome, fixed["PTE bit 46"].faithful) == (RESERVED, True)
    assert "emulates" in fixed["PTE bit 46"].explanation
    svm = by_target(classify(46, 52, "4-level", [], ptes, vendor="svm", allow_smaller_maxphyaddr=True))
    assert svm["PTE bit 46"].outcome == MISSED  # NPT: not available at all


@pytest.mark.parametrize("kw", [{"tdp": False}, {"vendor": "pvm"}])
def test_shadow_paging_is_faithful_both_ways(kw):
    wide = classify(52, 46, "4-level", [LOW_RAM, RAM_ABOVE46, BAR_TOP52], [46, 51], **kw)
    assert all(a.faithful for a in wide)
    assert by_target(wide)["RAM above 2^46"].memslot == "ok"  # kvm_mmu_max_gfn is 52 bits without TDP
    narrow = by_target(classify(46, 52, "4-level", [], [45, 46, 51], **kw))
    assert narrow["PTE bit 46"].outcome == RESERVED and narrow["PTE bit 46"].faithful


def test_regions_crossing_a_boundary_are_split():
    straddle = Region("straddling RAM", (1 << 46) - 4 * GiB, 8 * GiB)
    parts = classify(52, 46, layout=[straddle])
    assert [p.outcome for p in parts] == [WORKS, RESERVED]
    assert parts[0].end == parts[1].start == 1 << 46


def test_52_bit_host_without_5_level_tdp():
    # Sierra Forest: 52-bit MAXPHYADDR, no LA57 and no 5-level EPT: KVM maps GPAs below 2^48 only
    r = by_target(classify(52, 52, layout=[Region("RAM above 2^48", 1 << 48, GiB)], ptes=[47, 49],
                           five_level_tdp=False))
    assert r["RAM above 2^48"].outcome == UNMAPPABLE
    assert r["PTE bit 49"].outcome == UNMAPPABLE and r["PTE bit 47"].outcome == WORKS


def test_mmio_and_backed_bars_and_holes():
    r = by_target(classify(46, 46, layout=[
        Region("emulated BAR", 1 << 40, GiB, "bar64"),
        Region("assigned BAR", 1 << 41, GiB, "bar64", memslot=True),
        Region("hole", 1 << 42, GiB, "hole"),
    ]))
    assert (r["emulated BAR"].outcome, r["emulated BAR"].memslot) == (MMIO, "none")
    assert (r["assigned BAR"].outcome, r["assigned BAR"].memslot) == (WORKS, "ok")
    assert r["hole"].outcome == MMIO
    assert "KVM_EXIT_MMIO" in r["hole"].explanation


def test_paging_modes_differ_above_bit_51():
    assert by_target(classify(46, 46, "pae", [], [55]))["PTE bit 55"].outcome == RESERVED
    four = by_target(classify(46, 46, "4-level", [], [55, 63]))
    assert four["PTE bit 55"].outcome == WORKS and four["PTE bit 63"].outcome == WORKS
    with pytest.raises(InputError):
        classify(46, 46, "pae", [], [63])
    with pytest.raises(InputError):
        classify(46, 46, "3-level")
    with pytest.raises(InputError):
        Region("bad", -1, 10)


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_maxphyaddr(tmp_path):
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps([{"name": "ram", "start": 0, "size": "0x80000000"},
                                  {"name": "pci64", "kind": "bar64", "start": hex(1 << 51), "size": hex(TiB)}]))
    rc, out = run_cli("maxphyaddr", "--guest-bits", "52", "--host", "cascade-lake", "--layout", str(layout),
                      "--pte", "40,46", "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["host_bits"] == 46
    assert [(a["target"], a["outcome"]) for a in d["accesses"]] == [
        ("ram", WORKS), ("pci64", RESERVED), ("PTE bit 40", WORKS), ("PTE bit 46", RESERVED)]
    rc, out = run_cli("maxphyaddr", "--guest-bits", "46", "--host", "52", "--pte", "47",
                      "--layout", "ram:ram:0:0x1000000")
    assert rc == 0 and "silently not faulted" in out


@pytest.mark.parametrize("argv", [
    ["maxphyaddr", "--guest-bits", "46", "--host", "46", "--layout", "ram:ram:0"],
    ["maxphyaddr", "--guest-bits", "46", "--host", "46", "--layout", "ram:disk:0:1"],
    ["maxphyaddr", "--guest-bits", "46", "--host", "nowhere"],
    ["maxphyaddr", "--guest-bits", "0", "--host", "46"],
])
def test_cli_maxphyaddr_bad_input(argv, capsys):
    assert run_cli(*argv)[0] == 2
    assert "Traceback" not in capsys.readouterr().err


# -- live ---------------------------------------------------------------------------------------------


@pytest.mark.kvm
@pytest.mark.parametrize("width", [36, 40, 46, 48, 52])
def test_live_apic_base_reserved_bits_follow_guest_maxphyaddr(width):
    from cpuidkit import KvmError
    from cpuidkit.kvm.interface import MSR_IA32_APICBASE
    from cpuidkit.live import LiveVcpu, supported_cpuid

    table = supported_cpuid().set_field("phys_addr_bits", width)
    reserved = apic_base_reserved_bits(width)
    for bit in (width - 1, width):
        value = (1 << bit) | 0x900  # enabled, BSP
        with LiveVcpu() as v:
            v.set_cpuid(table)
            try:
                v.set_msr(MSR_IA32_APICBASE, value)
                accepted = True
            except KvmError:
                accepted = False
        assert accepted == (not value & reserved), (width, bit)
