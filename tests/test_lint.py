"""The sanity lint: rules as data, every rule fired and not fired, real dumps, mutations, CLI, matrix.

False positives are bugs: every bare-metal dump gets zero illegal findings, and
every insane finding on one is explained below (REAL_DUMP_EXPLANATIONS) with
the reason found in the data.
"""

from __future__ import annotations

import functools
import json
import random
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from conftest import DUMPS, ROOT, firecracker_dumps, libcpuid_dumps, libvirt_dumps

from cpuidkit import InputError
from cpuidkit.analysis.lint import (
    ARCH_INDEXED_FUNCTIONS,
    CLASSES,
    Case,
    Finding,
    dependencies,
    example_cases,
    guest_ready,
    implementations,
    lint_class,
    lint_table,
    load_intended,
    matrix,
    parse_intended,
    rules,
    rules_markdown,
    summarize,
)
from cpuidkit.cli.main import main
from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.sources import load, save
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.kvm.check import check

LIBVIRT = DUMPS / "libvirt"


@functools.cache
def dump(name: str) -> CpuidTable:
    """A libvirt dump as loaded (bare metal, host OS values in runtime fields)."""
    return load(LIBVIRT / f"x86_64-cpuid-{name}.xml")


@functools.cache
def base(name: str) -> CpuidTable:
    """A libvirt dump made into a guest template (indexed-leaf flags set, runtime fields at reset values)."""
    return guest_ready(dump(name))


def rule_ids(findings) -> set[str]:
    return {f.rule for f in findings}


def keyed(findings) -> set[tuple]:
    return {(f.rule, f.fields, f.detail) for f in findings}


def xcr0_spec(bit: int) -> str:
    return f"0xd.0.eax[{bit}]" if bit < 32 else f"0xd.0.edx[{bit - 32}]"


def xss_spec(bit: int) -> str:
    return f"0xd.1.ecx[{bit}]" if bit < 32 else f"0xd.1.edx[{bit - 32}]"


def set_ref(t: CpuidTable, ref: str, value: int) -> CpuidTable:
    """Set a feature-deps.csv reference: a field name, xcr0:N or xss:N."""
    kind, _, num = ref.partition(":")
    if kind == "xcr0" and num:
        return t.set_field(xcr0_spec(int(num)), value)
    if kind == "xss" and num:
        return t.set_field(xss_spec(int(num)), value)
    return t.set_field(ref, value)


SPR, GENOA, ICX, W3520, BRONZE = "Xeon-w7-3465X", "EPYC-9334-32-Core", "Ice-Lake-Server", "Xeon-W3520", "Xeon-Bronze-3408U"
KVM_SIG = dict(ebx=0x4B4D564B, ecx=0x564B4D56, edx=0x4D)

# ---------------------------------------------------------------------------------------------------
# rules and the dependency graph are data, and every row has an implementation


def test_at_least_25_rules_in_three_classes():
    rs = rules()
    assert len(rs) >= 25
    assert {r.severity for r in rs.values()} == set(CLASSES)
    for r in rs.values():
        assert r.explanation and r.reference and r.if_ignored, r.id


def test_every_rule_row_has_an_implementation_and_back():
    assert set(implementations()) == set(rules())
    from cpuidkit.analysis.lint import checks as rule_code

    dep_rules = {d.rule for d in dependencies()}
    assert not dep_rules & set(rule_code._CHECKS), "a rule is both a function and dependency rows"
    assert set(rule_code._CHECKS) | dep_rules == set(rules())


def test_dependency_rules_are_insane_and_name_catalog_fields():
    from cpuidkit.core.catalog import catalog

    for d in dependencies():
        assert rules()[d.rule].severity == "insane", d
        for ref in (d.feature, d.requires):
            kind, _, num = ref.partition(":")
            if kind in ("xcr0", "xss") and num:
                assert 0 <= int(num) < 64
            else:
                f = catalog().resolve(ref)
                assert f.is_flag, f"{ref} is not a one-bit field"


def test_every_field_a_rule_names_resolves():
    t = CpuidTable()
    for r in rules().values():
        for f in r.fields:
            t.resolve(f)  # a catalog name or a position; raises if neither


def test_kvm_checks_column_is_only_the_linear_width():
    assert {r.id for r in rules().values() if r.kvm_checks} == {"linear_width_invalid"}


def test_bad_rule_data_is_an_input_error(monkeypatch):
    from cpuidkit.analysis.lint import model as lint

    monkeypatch.setattr(lint, "read_csv", lambda name: [
        {"id": "x", "class": "weird", "fields": "", "explanation": "e", "reference": "r", "kvm_checks": "no",
         "if_ignored": "i"}])
    lint.rules.cache_clear()
    try:
        with pytest.raises(InputError, match="class must be one of"):
            lint.rules()
    finally:
        monkeypatch.undo()
        lint.rules.cache_clear()
    assert len(lint.rules()) >= 25


# ---------------------------------------------------------------------------------------------------
# every rule fires on a table built from a real one with one change, and not on the table without it


@dataclass(frozen=True)
class RuleCase:
    rule: str
    base: str
    fire: Callable[[CpuidTable], CpuidTable]
    host: str | None = None  # a built-in host name, or a libvirt dump name prefixed "dump:"
    quiet: Callable[[CpuidTable], CpuidTable] = lambda t: t  # the table the rule must not fire on

    def host_profile(self):
        if self.host is None:
            return None
        if self.host.startswith("dump:"):
            return HostProfile.from_table(dump(self.host[5:]), name=self.host[5:])
        return HostProfile.builtin(self.host)


def _strip_flags(t: CpuidTable, function: int) -> CpuidTable:
    return CpuidTable([e.replace(flags=0) if e.function == function else e for e in t])


def _with_sgx_xfrm(t: CpuidTable, xfrm: int) -> CpuidTable:
    t = t.set_fields({"sgx": 1, "sgx1": 1})
    return t.set_field("sgx_xfrm_lo", xfrm & 0xFFFFFFFF).set_field("sgx_xfrm_hi", xfrm >> 32)


def _kvm_leaves(t: CpuidTable, hypervisor: int) -> CpuidTable:
    t = t.set_field("hypervisor", hypervisor)
    return t.appended(CpuidEntry(0x40000000, eax=0x40000001, **KVM_SIG), CpuidEntry(0x40000001, eax=0x01000AFB))


def _vendor(t: CpuidTable, vendor: str) -> CpuidTable:
    raw = vendor.encode()
    ebx, edx, ecx = (int.from_bytes(raw[i:i + 4], "little") for i in (0, 4, 8))
    return t.set_fields({"cpu_vendorid_0": ebx, "cpu_vendorid_1": edx, "cpu_vendorid_2": ecx})


HAND_CASES = [
    # illegal
    RuleCase("linear_width_invalid", SPR, lambda t: t.set_field("virt_addr_bits", 50)),
    RuleCase("xcr0_supervisor_component", SPR, lambda t: t.set_field("0xd.0.eax[11]", 1)),
    RuleCase("xcr0_reserved_bit", SPR, lambda t: t.set_field("0xd.0.edx[31]", 1)),
    RuleCase("xcr0_fp_sse_missing", SPR, lambda t: t.set_field("0xd.0.eax[0]", 0)),
    RuleCase("xcr0_ymm_without_sse", SPR, lambda t: t.set_field("0xd.0.eax[1]", 0)),
    RuleCase("xss_user_component", SPR, lambda t: t.set_field("0xd.1.ecx[2]", 1)),
    RuleCase("xsave_supervisor_flag_mismatch", SPR, lambda t: t.set_field("0xd.9.ecx[0]", 1)),
    RuleCase("xsave_max_size_too_small", SPR, lambda t: t.set_field("xsave_size_max", 0x340)),
    RuleCase("xsave_offsets_overlap", SPR, lambda t: t.set_field("0xd.9.ebx", 0x300)),
    RuleCase("maxphyaddr_out_of_range", SPR, lambda t: t.set_field("phys_addr_bits", 60)),
    # insane
    RuleCase("xcr0_amx_pair", SPR, lambda t: t.set_field("0xd.0.eax[18]", 0)),
    RuleCase("xcr0_avx512_partial", SPR, lambda t: t.set_field("0xd.0.eax[6]", 0)),
    RuleCase("xcr0_mpx_pair", "Core-i7-8700", lambda t: t.set_field("0xd.0.eax[4]", 0)),
    RuleCase("la57_width_without_flag", SPR, lambda t: t.set_field("la57", 0)),
    RuleCase("la57_flag_without_width", SPR, lambda t: t.set_field("virt_addr_bits", 48)),
    RuleCase("maxphyaddr_above_host", BRONZE, lambda t: t.set_field("phys_addr_bits", 52), host=f"dump:{BRONZE}"),
    RuleCase("xcr0_beyond_host", GENOA, lambda t: t.set_fields({"0xd.0.eax[3]": 1, "0xd.0.eax[4]": 1}),
             host="epyc-genoa"),
    RuleCase("sgx_xfrm_not_subset", ICX, lambda t: _with_sgx_xfrm(t, 0x602E7),
             quiet=lambda t: _with_sgx_xfrm(t, 0x2E7)),
    RuleCase("leaf_beyond_max_basic", SPR, lambda t: t.appended(CpuidEntry(0x2F, eax=1))),
    RuleCase("leaf_beyond_max_extended", SPR, lambda t: t.appended(CpuidEntry(0x80000021, eax=1))),
    RuleCase("subleaf_beyond_max", SPR, lambda t: t.appended(CpuidEntry(7, 5, FLAG_SIGNIFICANT_INDEX, ebx=1))),
    RuleCase("kvm_pv_without_hypervisor", SPR, lambda t: _kvm_leaves(t, 0), quiet=lambda t: _kvm_leaves(t, 1)),
    RuleCase("kvm_pv_features_without_signature", SPR,
             lambda t: t.set_field("hypervisor", 1).appended(CpuidEntry(0x40000001, eax=0xFB)),
             quiet=lambda t: _kvm_leaves(t, 1)),
    RuleCase("vendor_leaf_mismatch", SPR, lambda t: _vendor(t, "AuthenticAMD")),
    RuleCase("duplicate_entry", SPR, lambda t: t.appended(t.get(1).replace(ecx=0))),
    RuleCase("indexed_leaf_without_flag", SPR, lambda t: _strip_flags(t, 7)),
    RuleCase("flag_on_unindexed_leaf", SPR,
             lambda t: t.replace_at(t.find_position(1), t.get(1).replace(flags=FLAG_SIGNIFICANT_INDEX))),
    RuleCase("xsave_without_leaf_0xd", SPR, lambda t: t.without(0xD)),
    RuleCase("xstate_component_without_subleaf", SPR, lambda t: t.without(0xD, 9)),
    RuleCase("os_bit_without_feature", W3520, lambda t: t.set_field("osxsave", 1)),
    RuleCase("guest_phys_bits_above_maxphyaddr", SPR, lambda t: t.set_field("guest_phys_addr_bits", 57)),
    # info
    RuleCase("runtime_owned_value", SPR, lambda t: t.set_field("osxsave", 1)),
    RuleCase("maxphyaddr_below_host", SPR, lambda t: t.set_field("phys_addr_bits", 46), host="sapphire-rapids"),
    RuleCase("sgx_flag_without_leaf", SPR, lambda t: t.set_field("sgx", 1)),
    RuleCase("no_phys_addr_leaf", SPR, lambda t: t.without(0x80000008)),
]


def _dependency_cases() -> list[RuleCase]:
    """One case per dependency rule: a real dump where an edge holds, with its requirement cleared."""
    out = []
    names = [p.stem.removeprefix("x86_64-cpuid-") for p in libvirt_dumps()]
    by_rule: dict[str, list] = {}
    for d in dependencies():
        by_rule.setdefault(d.rule, []).append(d)
    for rid, edges in by_rule.items():
        found = None
        for d in edges:
            for name in names:
                t = base(name)
                from cpuidkit.analysis.lint.checks import View

                v = View(t, None)
                if v.ref(d.feature) and v.ref(d.requires) and rid not in rule_ids(lint_table(t)):
                    found = RuleCase(rid, name, lambda t, r=d.requires: set_ref(t, r, 0))
                    break
            if found:
                break
        assert found, f"no real dump has an edge of {rid} intact"
        out.append(found)
    return out


ALL_CASES = HAND_CASES + _dependency_cases()


def test_every_rule_has_a_case():
    assert {c.rule for c in ALL_CASES} == set(rules())


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.rule)
def test_rule_fires_after_one_change_and_not_before(case: RuleCase):
    host = case.host_profile()
    quiet = case.quiet(base(case.base))
    fired = case.fire(base(case.base))
    before = lint_table(quiet, host=host)
    after = lint_table(fired, host=host)
    assert case.rule not in rule_ids(before), [str(f) for f in before if f.rule == case.rule]
    assert case.rule in rule_ids(after)
    f = next(f for f in after if f.rule == case.rule)
    r = rules()[case.rule]
    assert (f.severity, f.explanation, f.reference) == (r.severity, r.explanation, r.reference)
    assert f.fields and f.detail


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.host is None], ids=lambda c: c.rule)
def test_kvm_checks_column_agrees_with_the_model(case: RuleCase):
    """KVM (the model) rejects the firing table exactly for the rules whose kvm_checks is yes."""
    fired = case.fire(base(case.base))
    out = check(fired, state={"xfeature_permission": 1 << 18})
    expected = "rejected" if rules()[case.rule].kvm_checks else "accepted"
    assert out.verdict == expected, (case.rule, out.errno)


@pytest.mark.parametrize("name", [SPR, GENOA, ICX, W3520, BRONZE, "Core-i7-8700"])
def test_case_bases_are_sane(name):
    fs = lint_table(base(name))
    assert [str(f) for f in fs if f.severity != "info"] == []


def test_linear_width_rule_knows_long_mode():
    t = base(SPR)
    assert "linear_width_invalid" in rule_ids(lint_table(t.set_field("virt_addr_bits", 0)))
    no_lm = t.set_field("lm", 0).set_field("virt_addr_bits", 32)
    assert "linear_width_invalid" not in rule_ids(lint_table(no_lm))


def test_leaves_above_the_maximum_are_invisible_to_feature_rules():
    # AVX-512F without its state, but leaf 7 is above the maximum basic leaf: no guest sees the flag
    t = base(SPR).set_fields({"0xd.0.eax[5]": 0, "0xd.0.eax[6]": 0, "0xd.0.eax[7]": 0})
    assert "avx512f_without_xcr0" in rule_ids(lint_table(t))
    hidden = t.set_field("max_std_leaf", 6)
    ids = rule_ids(lint_table(hidden))
    assert "avx512f_without_xcr0" not in ids and "leaf_beyond_max_basic" in ids


def test_lone_harmless_unflagged_entries_are_not_reported():
    t = base(SPR)
    zero = t.appended(CpuidEntry(0x80000020))  # vendor leaf aside, an all-zero lone entry is harmless
    assert "indexed_leaf_without_flag" not in rule_ids(lint_table(zero))
    lone_nonzero = t.without(0x1F).appended(CpuidEntry(0x1F, ecx=0x100))  # level type 1: enumeration continues
    assert "indexed_leaf_without_flag" in rule_ids(lint_table(lone_nonzero))


# ---------------------------------------------------------------------------------------------------
# real dumps: zero illegal findings, every insane finding explained

_KVM_UNLISTED = (
    "0x1B (PCONFIG), 0x23 (architectural PMU extensions), 0x80000020 (AMD PQoS) and 0x80000026 (AMD "
    "extended topology) have subleaves on the CPU, but KVM's cpuid_function_is_indexed() does not list "
    "them, and the importer (sources/_common.py raw_entry) sets the significant-index flag from KVM's "
    "list. Read as a KVM table, every subleaf after the first is unreachable (or a lone subleaf 0 is "
    "returned for every subleaf although it announces more). On the bare-metal CPU the leaves are fine; "
    "the finding is about the dump used as a guest table, and goes away with guest_ready() or an "
    "importer that flags these leaves."
)

_ZEN2_PKRU = (
    "Zen 2 enumerates PKRU as an XSAVE component (0xD.0 EAX bit 9, subleaf 0xD.9: 64 bytes at offset "
    "832) but not PKU (7.0.ECX[3] = 0); AMD first enumerates PKU on Zen 3. It is not an OS effect: PKU "
    "is a capability bit (only OSPKE mirrors CR4.PKE), and CR4.PKE cannot be set while PKU is 0. The dump "
    "itself shows the host OS leaving PKRU out of XCR0: 0xD.0 EBX = 832 = x87+SSE+AVX, while ECX = 896 "
    "includes PKRU, as Linux does when PKU is absent (xsave_cpuid_features). libcpuid's Ryzen 9 3900X "
    "dump (Zen 2, another machine and OS) shows the same 7.0.ECX and 0xD values."
)

_I5_6600_PT = (
    "0xD.1 ECX lists processor trace (XSS bit 8), but the libvirt file has no 0xD.8 subleaf; the "
    "i7-8700 file (same core generation, identical 0xD.0/0xD.1 values) has 0xD.8 = 128 bytes, "
    "supervisor. The subleaf is missing from this dump (the gathering run did not record it), not from "
    "the CPU; read as a guest table the gap is real."
)

REAL_DUMP_EXPLANATIONS: dict[str, dict[str, str]] = {
    "Atom-P5362": {},
    "Core-i5-6600": {"xstate_component_without_subleaf": _I5_6600_PT},
    "Core-i7-1270P": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "Core-i7-1365U": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "EPYC-7502-32-Core": {"indexed_leaf_without_flag": _KVM_UNLISTED, "pkru_without_pku": _ZEN2_PKRU},
    "EPYC-7713-64-Core": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "EPYC-9334-32-Core": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "Ice-Lake-Server": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "Ryzen-9-9950X-16-Core": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "Xeon-6731E": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "Xeon-6788P": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "Xeon-Bronze-3408U": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "Xeon-Gold-6530": {"indexed_leaf_without_flag": _KVM_UNLISTED},
    "Xeon-w7-3465X": {"indexed_leaf_without_flag": _KVM_UNLISTED},
}
# Findings that may disappear without the explanation going stale: a fixed importer removes them.
_MAY_VANISH = {"indexed_leaf_without_flag"}

_REAL = [pytest.param(p, id=p.stem.removeprefix("x86_64-cpuid-")) for p in libvirt_dumps()]


def test_the_corpus_is_there():
    assert len(libvirt_dumps()) == 28


@pytest.mark.parametrize("path", _REAL)
def test_real_dump_has_no_illegal_finding(path):
    fs = lint_table(load(path))
    assert [str(f) for f in fs if f.severity == "illegal"] == []


@pytest.mark.parametrize("path", _REAL)
def test_every_insane_finding_on_a_real_dump_is_explained(path):
    name = path.stem.removeprefix("x86_64-cpuid-")
    found = {f.rule for f in lint_table(load(path)) if f.severity == "insane"}
    explained = REAL_DUMP_EXPLANATIONS.get(name, {})
    assert found <= set(explained), f"unexplained insane finding(s) on {name}: {sorted(found - set(explained))}"
    stale = set(explained) - found - _MAY_VANISH
    assert not stale, f"explanations for findings that no longer fire on {name}: {sorted(stale)}"
    for reason in explained.values():
        assert len(reason) > 80


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in firecracker_dumps() + libcpuid_dumps()])
def test_guest_and_zhaoxin_dumps_have_no_illegal_finding(path):
    assert [str(f) for f in lint_table(load(path)) if f.severity == "illegal"] == []


def test_firecracker_guest_tables_have_no_insane_finding():
    """What KVM plus a VMM really hand to guests is sane by these rules (lone zero leaves are fine)."""
    for p in firecracker_dumps():
        assert [str(f) for f in lint_table(load(p)) if f.severity != "info"] == [], p.name


def test_epyc_7502_pkru_without_pku_is_what_zen2_does():
    """The evidence behind _ZEN2_PKRU, read from the dumps themselves."""
    rome = dump("EPYC-7502-32-Core")
    f = next(f for f in lint_table(rome) if f.rule == "pkru_without_pku")
    assert f.fields == ("0xd.0.eax[9]", "pku")
    assert rome.get_field("pku") == 0 and rome.get_field("ospke") == 0
    d0, d9 = rome.get(0xD, 0), rome.get(0xD, 9)
    assert d0.eax >> 9 & 1 and (d9.eax, d9.ebx) == (64, 832)
    assert d0.ebx == 576 + 256 and d0.ecx == 832 + 64  # OS enabled x87|SSE|AVX; PKRU supported, not enabled
    # every other AMD/Hygon dump that lists PKRU also has PKU (Zen 3 and later); Zen 1 lists neither
    for p in libvirt_dumps():
        t = load(p)
        if t.vendor in ("AuthenticAMD", "HygonGenuine") and p != LIBVIRT / "x86_64-cpuid-EPYC-7502-32-Core.xml":
            pkru = bool(t.get(0xD, 0) and t.get(0xD, 0).eax >> 9 & 1)
            assert pkru == bool(t.get_field("pku")), p.name
    # the firecracker guests on Milan/Genoa hosts list PKRU with PKU too: KVM passes both through
    assert all("pkru_without_pku" not in rule_ids(lint_table(load(p))) for p in firecracker_dumps())


def test_real_dump_info_findings_are_runtime_values_sgx_and_nothing_else():
    seen = set()
    for p in libvirt_dumps():
        seen |= {f.rule for f in lint_table(load(p)) if f.severity == "info"}
    assert seen <= {"runtime_owned_value", "sgx_flag_without_leaf"}


# ---------------------------------------------------------------------------------------------------
# tables nobody has seen: random dumps, one random insanity each, a new finding of the expected rule


@dataclass(frozen=True)
class Mutator:
    name: str
    rule: str
    apply: Callable  # (table, rng) -> CpuidTable | (CpuidTable, host) | None when it does not apply


def _has_0xd(t):
    return t.get(0xD, 0) is not None


def _has_leaf7(t):
    """Leaf 7 exists and is within the maximum basic leaf (else a guest never reads its flags)."""
    return (t.max_basic_leaf or 0) >= 7 and t.get(7, 0) is not None


def _m_width(t, rng):
    return t.set_field("virt_addr_bits", rng.choice([w for w in range(256) if w not in (0, 32, 48, 57)]))


def _m_supervisor_in_xcr0(t, rng):
    return t.set_field(xcr0_spec(rng.choice([8, 10, 11, 12, 13, 14, 15, 16])), 1) if _has_0xd(t) else None


def _m_ymm_without_sse(t, rng):
    return t.set_fields({xcr0_spec(2): 1, xcr0_spec(1): 0}) if _has_0xd(t) else None


def _m_tile_pair(t, rng):
    have, lack = rng.choice([(17, 18), (18, 17)])
    return t.set_fields({xcr0_spec(have): 1, xcr0_spec(lack): 0}) if _has_0xd(t) else None


def _m_avx512f_without_state(t, rng):
    if not _has_leaf7(t):
        return None
    return t.set_fields({"avx512f": 1, xcr0_spec(5): 0, xcr0_spec(6): 0, xcr0_spec(7): 0})


def _m_avx_without_xsave(t, rng):
    return t.set_fields({"avx": 1, "xsave": 0})


def _m_avx2_without_avx(t, rng):
    if not _has_leaf7(t):
        return None
    return t.set_fields({"avx2": 1, "avx": 0})


def _m_pku_without_pkru(t, rng):
    if not _has_leaf7(t):
        return None
    t = t.set_field("pku", 1)
    return t.set_field(xcr0_spec(9), 0) if _has_0xd(t) else t


def _m_pkru_without_pku(t, rng):
    return t.set_fields({xcr0_spec(9): 1, "pku": 0}) if _has_0xd(t) else None


def _m_la57_width(t, rng):
    return t.set_fields({"virt_addr_bits": 57, "la57": 0})


def _m_la57_flag(t, rng):
    if not _has_leaf7(t):
        return None
    return t.set_fields({"la57": 1, "virt_addr_bits": 48})


def _m_maxphyaddr_above_host(t, rng):
    host = HostProfile.from_table(t, name="itself")
    if host.maxphyaddr >= 52:
        return None
    return t.set_field("phys_addr_bits", rng.randint(host.maxphyaddr + 1, 52)), host


def _m_beyond_basic(t, rng):
    return t.appended(CpuidEntry(t.max_basic_leaf + rng.randint(1, 0x40), eax=rng.randint(1, 0xFFFF)))


def _m_beyond_extended(t, rng):
    return t.appended(CpuidEntry(t.max_extended_leaf + rng.randint(1, 0x40), ebx=rng.randint(1, 0xFFFF)))


def _m_subleaf_beyond(t, rng):
    if not _has_leaf7(t):
        return None
    e0 = t.get(7, 0)
    return t.appended(CpuidEntry(7, e0.eax + rng.randint(1, 4), FLAG_SIGNIFICANT_INDEX, ebx=1))


def _m_pv_without_hypervisor(t, rng):
    base_leaf = 0x40000000 + 0x100 * rng.randint(0, 3)
    return t.set_field("hypervisor", 0).appended(
        CpuidEntry(base_leaf, eax=base_leaf + 1, **KVM_SIG), CpuidEntry(base_leaf + 1, eax=rng.randint(1, 0xFFFF)))


def _m_vendor_swap(t, rng):
    from cpuidkit.analysis.lint.checks import View
    from cpuidkit.analysis.lint.model import AMD_ONLY_LEAVES, INTEL_ONLY_LEAVES

    if t.vendor in ("AuthenticAMD", "HygonGenuine"):
        own, other = AMD_ONLY_LEAVES, "GenuineIntel"
    else:
        own, other = INTEL_ONLY_LEAVES, "AuthenticAMD"
    v = View(t, None)
    if not any(v.in_range(e.function) and e.function in own and (e.eax or e.ebx or e.ecx or e.edx) for e in t):
        return None
    return _vendor(t, other)


def _m_duplicate(t, rng):
    e = rng.choice([e for e in t if e.function < 0x20000000])
    return t.appended(e.replace(eax=e.eax ^ 1))


def _m_strip_flags(t, rng):
    counts = {}
    for e in t:
        counts[e.function] = counts.get(e.function, 0) + 1
    multi = sorted(f for f, n in counts.items() if n > 1 and f in ARCH_INDEXED_FUNCTIONS
                   and all(e.significant_index for e in t if e.function == f))
    return _strip_flags(t, rng.choice(multi)) if multi else None


def _m_flag_on_plain_leaf(t, rng):
    f = rng.choice([1, 0x80000001])
    return t.replace_at(t.find_position(f), t.get(f).replace(flags=FLAG_SIGNIFICANT_INDEX))


def _m_drop_0xd(t, rng):
    return t.without(0xD).set_field("xsave", 1)


def _m_drop_component(t, rng):
    comps = sorted(e.index for e in t if e.function == 0xD and e.index >= 2)
    return t.without(0xD, rng.choice(comps)) if comps else None


def _m_small_area(t, rng):
    if not _has_0xd(t):
        return None
    return t.set_field("xsave_size_max", rng.randint(0, 575))


def _m_maxphyaddr_range(t, rng):
    return t.set_field("phys_addr_bits", rng.choice([*range(0, 32), *range(53, 256)]))


def _m_xss_user(t, rng):
    return t.set_field(xss_spec(rng.choice([2, 5, 9, 17])), 1) if t.get(0xD, 1) is not None else None


def _m_sgx_xfrm(t, rng):
    if (t.max_basic_leaf or 0) < 0x12 or not _has_0xd(t):
        return None
    xcr0 = t.get(0xD, 0).eax | t.get(0xD, 0).edx << 32
    extra = [b for b in (2, 5, 6, 7, 9, 17, 18) if not xcr0 >> b & 1]
    if not extra:
        return None
    t = t.without(0x12).appended(CpuidEntry(0x12, 0, FLAG_SIGNIFICANT_INDEX, eax=1),
                                 CpuidEntry(0x12, 1, FLAG_SIGNIFICANT_INDEX, ecx=(xcr0 | 1 << rng.choice(extra)) & 0xFFFFFFFF))
    return t.set_field("sgx", 1)


def _m_osxsave_without_xsave(t, rng):
    return t.set_fields({"osxsave": 1, "xsave": 0})


def _m_guest_phys_bits(t, rng):
    pa = t.get_field("phys_addr_bits")
    return t.set_field("guest_phys_addr_bits", rng.randint(pa + 1, 255)) if pa is not None and pa < 255 else None


MUTATORS = [
    Mutator("linear width", "linear_width_invalid", _m_width),
    Mutator("supervisor component in 0xD.0", "xcr0_supervisor_component", _m_supervisor_in_xcr0),
    Mutator("YMM without SSE", "xcr0_ymm_without_sse", _m_ymm_without_sse),
    Mutator("TILECFG without TILEDATA or the reverse", "xcr0_amx_pair", _m_tile_pair),
    Mutator("AVX-512F without its XCR0 components", "avx512f_without_xcr0", _m_avx512f_without_state),
    Mutator("AVX without XSAVE", "avx_without_xsave", _m_avx_without_xsave),
    Mutator("AVX2 without AVX", "avx_extension_without_avx", _m_avx2_without_avx),
    Mutator("PKU without PKRU", "pku_without_pkru", _m_pku_without_pkru),
    Mutator("PKRU without PKU", "pkru_without_pku", _m_pkru_without_pku),
    Mutator("57-bit width without LA57", "la57_width_without_flag", _m_la57_width),
    Mutator("LA57 without 57-bit width", "la57_flag_without_width", _m_la57_flag),
    Mutator("guest MAXPHYADDR above the host's", "maxphyaddr_above_host", _m_maxphyaddr_above_host),
    Mutator("leaf beyond the max basic leaf", "leaf_beyond_max_basic", _m_beyond_basic),
    Mutator("leaf beyond the max extended leaf", "leaf_beyond_max_extended", _m_beyond_extended),
    Mutator("leaf-7 subleaf beyond its maximum", "subleaf_beyond_max", _m_subleaf_beyond),
    Mutator("KVM PV leaves without the hypervisor bit", "kvm_pv_without_hypervisor", _m_pv_without_hypervisor),
    Mutator("vendor string against vendor-only leaves", "vendor_leaf_mismatch", _m_vendor_swap),
    Mutator("duplicate entry", "duplicate_entry", _m_duplicate),
    Mutator("indexed leaf without the flag", "indexed_leaf_without_flag", _m_strip_flags),
    Mutator("flag on a leaf without subleaves", "flag_on_unindexed_leaf", _m_flag_on_plain_leaf),
    Mutator("XSAVE without leaf 0xD", "xsave_without_leaf_0xd", _m_drop_0xd),
    Mutator("component without its subleaf", "xstate_component_without_subleaf", _m_drop_component),
    Mutator("XSAVE area size too small", "xsave_max_size_too_small", _m_small_area),
    Mutator("MAXPHYADDR out of range", "maxphyaddr_out_of_range", _m_maxphyaddr_range),
    Mutator("user component in IA32_XSS", "xss_user_component", _m_xss_user),
    Mutator("SGX XFRM not a subset of 0xD.0", "sgx_xfrm_not_subset", _m_sgx_xfrm),
    Mutator("OSXSAVE without XSAVE", "os_bit_without_feature", _m_osxsave_without_xsave),
    Mutator("GuestPhysBits above MAXPHYADDR", "guest_phys_bits_above_maxphyaddr", _m_guest_phys_bits),
]


def test_mutators_cover_the_issue_examples():
    wanted = {"xcr0_amx_pair", "avx512f_without_xcr0", "avx_without_xsave", "pku_without_pkru", "pkru_without_pku",
              "la57_width_without_flag", "la57_flag_without_width", "maxphyaddr_above_host", "sgx_xfrm_not_subset",
              "leaf_beyond_max_basic", "leaf_beyond_max_extended", "kvm_pv_without_hypervisor",
              "vendor_leaf_mismatch", "duplicate_entry", "indexed_leaf_without_flag", "linear_width_invalid",
              "xcr0_supervisor_component", "xcr0_ymm_without_sse"}
    assert wanted <= {m.rule for m in MUTATORS}


def test_random_dumps_made_insane_in_one_way_get_the_expected_new_finding():
    rng = random.Random(20240517)
    paths = libvirt_dumps()
    applied: dict[str, int] = {}
    for _ in range(300):
        path, m = rng.choice(paths), rng.choice(MUTATORS)
        table = load(path)
        out = m.apply(table, rng)
        if out is None:
            continue
        mutated, host = out if isinstance(out, tuple) else (out, None)
        before = keyed(lint_table(table, host=host))
        new = [f for f in lint_table(mutated, host=host) if (f.rule, f.fields, f.detail) not in before]
        assert any(f.rule == m.rule for f in new), (path.name, m.name, [str(f) for f in new])
        assert all(f.severity in ("insane", "illegal") for f in new if f.rule == m.rule)
        applied[m.name] = applied.get(m.name, 0) + 1
    assert set(applied) == {m.name for m in MUTATORS}, "some mutator never applied; raise the iteration count"


# ---------------------------------------------------------------------------------------------------
# insane on purpose


def test_intended_findings_are_still_reported_and_marked():
    rome = dump("EPYC-7502-32-Core")
    fs = lint_table(rome, intended={"pkru_without_pku": "Zen 2 template, on purpose"})
    f = next(f for f in fs if f.rule == "pkru_without_pku")
    assert f.intended and f.note == "Zen 2 template, on purpose"
    assert f.as_dict()["intended"] is True and f.as_dict()["note"] == "Zen 2 template, on purpose"
    assert not any(g.intended for g in fs if g.rule != "pkru_without_pku")
    assert summarize(fs)["intended"] == 1


def test_intended_by_rule_and_field():
    # the import flags every indexed leaf; a table built by KVM's list alone leaves 0x80000020/26 unflagged
    genoa = CpuidTable(e.replace(flags=0) if e.function in (0x80000020, 0x80000026) else e for e in dump(GENOA))
    fs = lint_table(genoa, intended={"indexed_leaf_without_flag@0x80000020.*"})
    marks = {f.fields: f.intended for f in fs if f.rule == "indexed_leaf_without_flag"}
    assert marks == {("0x80000020.*",): True, ("0x80000026.*",): False}
    assert [f.note for f in fs if f.intended] == [""]


def test_lint_class_for_the_matrix():
    t = base(SPR).set_field("la57", 0)
    assert lint_class(lint_table(base(SPR))) == "clean"
    assert lint_class(lint_table(base(SPR).set_field("osxsave", 1))) == "info"
    assert lint_class(lint_table(t)) == "insane"
    assert lint_class(lint_table(t, intended=["la57_width_without_flag"])) == "insane on purpose"
    assert lint_class(lint_table(t.set_field("virt_addr_bits", 50), intended=["la57_width_without_flag"])) == "illegal"


def test_unknown_intended_rule_is_an_input_error():
    with pytest.raises(InputError, match="unknown lint rule 'no_such_rule'"):
        lint_table(base(SPR), intended={"no_such_rule": "x"})
    with pytest.raises(InputError, match="note"):
        parse_intended({"pkru_without_pku": 3})


def test_load_intended_file(tmp_path):
    good = tmp_path / "ok.json"
    good.write_text(json.dumps({"comment": "test VM", "intended": {"pkru_without_pku": "Zen 2", "duplicate_entry": ""}}))
    assert load_intended(good) == {"pkru_without_pku": "Zen 2", "duplicate_entry": ""}
    for text, msg in ((" {", "not valid JSON"), ('["pkru_without_pku"]', "expected"), ('{"intended": ["x"]}', "expected"),
                      ('{"intended": {"nope": ""}}', "unknown lint rule"), ('{"intended": {}, "x": 1}', "expected")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(InputError, match=msg):
            load_intended(bad)
    with pytest.raises(InputError, match="no such file"):
        load_intended(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------------
# the matrix: KVM's verdict x lint class


@pytest.mark.parametrize("host", [None, "epyc-genoa"])
def test_matrix_examples_fill_every_cell(host):
    m = matrix(example_cases(host), host=host)
    assert m.empty_cells() == [], m.as_markdown()
    cells = m.cells
    assert cells[("rejected", "illegal")] == ["linear-width-50"]
    assert "avx512-without-state" in cells[("accepted", "insane")]
    assert "zen2-pkru-intended" in cells[("accepted", "insane on purpose")]
    assert "supervisor-in-xcr0" in cells[("accepted", "illegal")]
    row = next(r for r in m.rows if r.name == "linear-width-50")
    assert (row.errno, row.kvm_rule) == ("EINVAL", "vaddr_width_values")
    assert "| accepted |" in m.as_markdown() and m.as_dict()["cells"]["rejected/illegal"] == ["linear-width-50"]


def test_matrix_takes_tuples_and_mappings():
    t = base(GENOA)  # on the default host (Sapphire Rapids): accepted, and clean
    m = matrix({"plain": t, "no-la57": t.set_field("la57", 0)})
    assert m.cells[("accepted", "clean")] == ["plain"] and m.cells[("accepted", "insane")] == ["no-la57"]
    m2 = matrix([("intended", t.set_field("la57", 0), {"la57_width_without_flag": "test"}),
                 Case("wide", t.set_field("virt_addr_bits", 50))])
    assert m2.cells[("accepted", "insane on purpose")] == ["intended"]
    assert m2.cells[("rejected", "illegal")] == ["wide"]
    with pytest.raises(InputError):
        matrix([("only-a-name",)])


# ---------------------------------------------------------------------------------------------------
# the command line


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["lint", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_clean_dump_exits_0_with_text(capsys):
    code, out, _ = run_cli(capsys, LIBVIRT / "x86_64-cpuid-EPYC-7502-32-Core.xml")
    assert code == 0
    # pkru_without_pku; the 0x80000020 subleaves are flagged on import (issue 15), so no indexed-leaf finding
    assert "0 illegal, 1 insane" in out and "pkru_without_pku" in out and "why:" in out
    assert "indexed_leaf_without_flag" not in out


def test_cli_json_one_object_per_table(capsys):
    paths = [LIBVIRT / "x86_64-cpuid-EPYC-7502-32-Core.xml", LIBVIRT / "x86_64-cpuid-Xeon-W3520.xml"]
    code, out, _ = run_cli(capsys, "--format", "json", *paths)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    docs = [json.loads(ln) for ln in lines]
    assert [d["table"] for d in docs] == [str(p) for p in paths]
    f = next(f for f in docs[0]["findings"] if f["rule"] == "pkru_without_pku")
    assert {"rule", "severity", "fields", "explanation", "reference", "intended", "note"} <= set(f)
    assert f["severity"] == "insane" and f["fields"] == ["0xd.0.eax[9]", "pku"] and f["intended"] is False
    assert docs[0]["summary"]["insane"] == 1 and docs[0]["host"] is None


def test_cli_illegal_exits_1_and_intended_illegal_does_not(tmp_path, capsys):
    bad = tmp_path / "wide.json"
    save(base(SPR).set_field("virt_addr_bits", 50), bad)
    code, out, _ = run_cli(capsys, bad)
    assert code == 1 and "ILLEGAL linear_width_invalid" in out
    marks = tmp_path / "intended.json"
    marks.write_text(json.dumps({"intended": {"linear_width_invalid@virt_addr_bits": "probing KVM's EINVAL"}}))
    code, out, _ = run_cli(capsys, "--format", "json", "--intended", marks, bad)
    f = json.loads(out)["findings"][0]
    assert code == 0 and f["intended"] is True and f["note"] == "probing KVM's EINVAL"


def test_cli_host_enables_host_rules(capsys):
    code, out, _ = run_cli(capsys, "--format", "json", "--host", "epyc-milan", LIBVIRT / f"x86_64-cpuid-{GENOA}.xml")
    d = json.loads(out)
    assert code == 0 and d["host"] == "epyc-milan"
    assert {"maxphyaddr_above_host", "xcr0_beyond_host"} <= {f["rule"] for f in d["findings"]}


@pytest.mark.parametrize("args, msg", [
    (["missing.json"], "no such file"),
    (["--host", "no-such-host", str(LIBVIRT / "x86_64-cpuid-Xeon-W3520.xml")], "no-such-host"),
    (["--intended", "missing-intended.json", str(LIBVIRT / "x86_64-cpuid-Xeon-W3520.xml")], "no such file"),
])
def test_cli_bad_input_exits_2(capsys, args, msg):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and msg in err and out == ""


def test_cli_bad_table_exits_2_before_any_output(tmp_path, capsys):
    junk = tmp_path / "junk.txt"
    junk.write_text("this is no CPUID dump\n")
    code, out, err = run_cli(capsys, LIBVIRT / "x86_64-cpuid-Xeon-W3520.xml", junk)
    assert code == 2 and out == "" and "junk.txt" in err


def test_check_json_carries_the_lint_list(capsys):
    code = main(["check", "--format", "json", str(LIBVIRT / "x86_64-cpuid-EPYC-7502-32-Core.xml")])
    d = json.loads(capsys.readouterr().out)
    assert code == 0
    assert "pkru_without_pku" in {f["rule"] for f in d["lint"]}
    assert all({"rule", "severity", "fields", "explanation", "reference"} <= set(f) for f in d["lint"])


def test_cli_runs_as_a_program(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cpuidkit", "lint", "--format", "json",
                          str(LIBVIRT / "x86_64-cpuid-Xeon-W3520.xml")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["summary"] == {"illegal": 0, "insane": 0, "info": 0, "intended": 0}


# ---------------------------------------------------------------------------------------------------
# packaging promises and docs


def test_lint_imports_only_on_use_and_stays_light():
    code = ("import sys, cpuidkit; assert 'cpuidkit.analysis.lint' not in sys.modules; "
            "import cpuidkit.analysis.lint as l; l.lint_table(cpuidkit.CpuidTable()); "
            "print(','.join(m for m in sys.modules if m.split('.')[0] in ('pandas', 'matplotlib', 'ipywidgets', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_docs_rules_table_is_the_data():
    text = (ROOT / "docs" / "lint.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- rules:begin -->\n(.*?)\n<!-- rules:end -->", text, re.S)
    assert m, "docs/lint.md lacks the generated rules table markers"
    assert m.group(1) == rules_markdown(), "regenerate: python -c 'from cpuidkit.analysis.lint import rules_markdown; print(rules_markdown())'"
    for name, reasons in REAL_DUMP_EXPLANATIONS.items():
        if reasons:
            assert name in text, f"docs/lint.md does not explain the findings on {name}"


def test_docs_matrix_is_the_example_matrix():
    text = (ROOT / "docs" / "lint.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- matrix:begin -->\n(.*?)\n<!-- matrix:end -->", text, re.S)
    assert m and m.group(1) == matrix(example_cases()).as_markdown()


def test_finding_str_and_empty_table():
    assert lint_table(CpuidTable()) == []
    f = Finding("r", "insane", ("a",), "why", "ref", "detail")
    assert str(f) == "insane r: detail"
    with pytest.raises(InputError):
        lint_table([])  # type: ignore[arg-type]
