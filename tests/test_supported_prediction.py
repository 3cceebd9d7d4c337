"""Predicting KVM_GET_SUPPORTED_CPUID (cpuidkit.core.supported) and checking the prediction on real kernels.

Tests marked ``lab`` compare the prediction with the lab kernels' own answer, register by register, on five
QEMU CPU models: EPYC-Rome through the session's ``lab`` fixture and four more through ``lab_cpu_model`` (one
boot per kernel and model, shared by the session; tests/conftest.py).  The ``kvm`` test does the same with this
machine's kernel, its CPUID measured at test time.  The rest need nothing: they check the two data tables'
consistency, the version semantics, and the prediction against answers real kernels gave and that were recorded
in tests/data (lab-supported/: Debian 6.1.192 and 6.12.118 on the five models, by
tools/record_lab_supported.py; live-kvm/: an AMD EPYC host's 6.18 with kvm_pvm).
"""

from __future__ import annotations

import json

import pytest

from conftest import TEST_DATA
from cpuidkit import CpuidEntry, CpuidTable, InputError
from cpuidkit.analysis.supported_agreement import (
    LAB_CPU_MODELS,
    compare_supported,
    lab_supported_agreement,
    live_supported_agreement,
)
from cpuidkit.core.hosts import HostProfile, builtin_hosts
from cpuidkit.core.kernels import MODELLED_KERNELS, kernel_profile
from cpuidkit.core.sources import load
from cpuidkit.core.sources.kvm_json import parse_doc
from cpuidkit.core.supported import (
    PVM_OWNED_LEAVES,
    KvmSetup,
    _applies,
    _parse,
    host_kernel_xcr0,
    leaf_rule,
    predict_supported_cpuid,
    rows_for,
    supported_rows,
)
from cpuidkit.core.xsave import XFEATURE_MASK_XTILE_CFG, XFEATURE_MASK_XTILE_DATA

RECORDED = sorted((TEST_DATA / "lab-supported").glob("*.json"))
VENDORS = ("vmx", "svm", "pvm")


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


# -- the data tables --------------------------------------------------------------------------


def test_every_leaf_rule_has_at_most_one_mainline_row_per_kernel():
    by_id: dict[str, list] = {}
    for r in supported_rows():
        if r.part == "leaf":
            by_id.setdefault(r.name, []).append(r)
    assert len(by_id) > 25
    for rid, rows in by_id.items():
        for k in MODELLED_KERNELS:
            holding = [r.line for r in rows if _applies(r.versions, _version(k), None)]
            assert len(holding) <= 1, f"leaf rule {rid}: rows {holding} all hold for {k}"


def test_cap_bits_have_one_deciding_row_per_kernel():
    """A capability bit is decided by one cap row per mainline kernel (stable-only rows aside)."""
    for k in MODELLED_KERNELS:
        seen: dict[tuple, int] = {}
        for r in supported_rows():
            if r.part == "cap" and r.applies(_version(k), None, "all"):
                key = (r.leaf, r.subleaf, r.register, r.bit)
                assert key not in seen, f"{k}: rows {seen[key]} and {r.line} both decide {r.name}"
                seen[key] = r.line


def _all_ones_host(vendor: str) -> CpuidTable:
    """A host whose every register of every leaf has every bit set (leaf ranges kept plausible)."""
    ident = {"GenuineIntel": (0x756E6547, 0x6C65746E, 0x49656E69), "AuthenticAMD": (0x68747541, 0x444D4163, 0x69746E65)}
    ebx, ecx, edx = ident[vendor]
    entries = [CpuidEntry(0, 0, 0, 0x24, ebx, ecx, edx), CpuidEntry(0x80000000, 0, 0, 0x80000028, ebx, ecx, edx)]
    ones = 0xFFFFFFFF
    for leaf in [*range(1, 0x25), *range(0x80000001, 0x80000029)]:
        for sub in range(0, 4):
            # leaf 7 reports two subleaves, 0x14 and 0x1D one (an all-ones EAX there would ask for 2^32 subleaves)
            eax = {7: 2, 1: 0x1F, 0x14: 1, 0x1D: 1}.get(leaf, ones) if sub == 0 else ones
            entries.append(CpuidEntry(leaf, sub, 1, eax, ones, ones, ones))
    return CpuidTable(entries)


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("kernel", MODELLED_KERNELS)
def test_never_bits_stay_clear_unless_a_row_sets_them(kernel, vendor):
    """NEVER rows document bits common code never offers: on a host that has every bit, they stay clear
    unless another row of the same kernel (a vendor hook, a later EMULATED row) decides that bit."""
    host = _all_ones_host("AuthenticAMD" if vendor == "svm" else "GenuineIntel")
    table = predict_supported_cpuid(host, kernel, vendor, setup=KvmSetup.for_vendor(vendor, sev=True, sev_es=True))
    rows = rows_for(kernel, vendor)
    deciders = {
        (r.leaf, r.subleaf, r.register, r.bit) for r in rows if r.part in ("set", "cap", "pv") and r.rule != "NEVER"
    }
    never = [r for r in rows if r.rule == "NEVER" and (r.leaf, r.subleaf, r.register, r.bit) not in deciders]
    assert never, "the table lists bits KVM never offers"
    for r in never:
        e = table.get(r.leaf, r.subleaf)
        if e is not None:
            assert not e.reg(r.register) >> r.bit & 1, f"{kernel}/{vendor}: {r.name} ({r.note}) offered"


def test_conditions_are_checked_when_read():
    assert _parse("A & (B | !c)") == ("and", ("atom", "A"), ("or", ("atom", "B"), ("not", ("atom", "c"))))
    for bad in ("A & (B", "A |", "& A", "A B"):
        with pytest.raises(InputError):
            _parse(bad)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"part": "capp"}, "part must be one of"),
        ({"rule": "FF"}, "a cap rule is one of"),
        ({"part": "set", "rule": "XMM2 & (SSE"}, "unbalanced parentheses"),
        ({"since": "six"}, "kernel version"),
        ({"stable": "6.1"}, "point releases"),
        ({"bit": "40"}, "bit 0..31"),
    ],
)
def test_a_bad_data_row_names_the_file_and_row(monkeypatch, change, words):
    import cpuidkit.core.supported as sup

    good = sup.read_csv("kvm-supported-cpuid.csv")
    rows = [dict(r) for r in good[:3]]
    rows[2].update(change)
    monkeypatch.setattr(sup, "read_csv", lambda name: rows)
    sup.supported_rows.cache_clear()
    try:
        with pytest.raises(InputError, match=words) as info:
            sup.supported_rows()
        assert "kvm-supported-cpuid.csv" in str(info.value) and "data row 3" in str(info.value)
    finally:
        monkeypatch.undo()
        sup.supported_rows.cache_clear()


def test_stable_rows_apply_to_point_releases_of_their_series_only():
    # TSA_FILL_NO: in no mainline release read, backported to 6.12.y (seen in 6.12.117)
    def has(kernel):
        return any(r.name == "TSA_FILL_NO" and r.part == "cap" for r in rows_for(kernel, "svm"))

    assert has("6.12.117") and has("6.12.118-1~deb12u1")
    assert not has("6.12") and not has("6.12.100") and not has("6.13") and not has("6.16.1")
    # leaf 7 reports subleaf 2 from 6.8, and on 6.1.y (backport), not on 6.1 itself
    assert leaf_rule("6.8", "leaf7_subleaves") == leaf_rule("6.1.192", "leaf7_subleaves") == "2"
    assert leaf_rule("6.1", "leaf7_subleaves") == leaf_rule("6.6", "leaf7_subleaves") == "1"


def test_bad_input_is_refused_clearly():
    host = HostProfile.builtin("epyc-rome").cpuid
    with pytest.raises(InputError, match="modelled range"):
        predict_supported_cpuid(host, "5.4")
    with pytest.raises(InputError, match="vendor"):
        predict_supported_cpuid(host, "6.1", "kvm")
    with pytest.raises(InputError, match="CpuidTable"):
        predict_supported_cpuid([], "6.1")  # type: ignore[arg-type]
    # an AMX host whose palette leaf claims 400 subleaves: more than KVM_MAX_CPUID_ENTRIES, the kernel says E2BIG
    spr = HostProfile.builtin("sapphire-rapids").cpuid
    huge = spr.set_field("0x1d.0.eax", 400)
    with pytest.raises(InputError, match="E2BIG"):
        predict_supported_cpuid(huge, "6.12", "vmx")


# -- what KVM does, by version (on a real host's CPUID) ---------------------------------------


@pytest.mark.parametrize("kernel", MODELLED_KERNELS)
def test_guest_phys_bits_follow_the_kernel_behaviour(kernel):
    """0x80000008.EAX[23:16] is reported exactly where data/kvm-behaviours.csv says (guest_phys_bits_reported)."""
    table = predict_supported_cpuid(HostProfile.builtin("sapphire-rapids").cpuid, kernel, "vmx")
    reported = table.get(0x80000008).eax >> 16 & 0xFF
    assert bool(reported) == kernel_profile(kernel).flag("guest_phys_bits_reported")


@pytest.mark.parametrize(
    "kernel, cfg, data", [("5.10", 0, 0), ("5.17", 1, 0), ("6.3", 1, 0), ("6.4", 0, 0), ("6.18", 0, 0)]
)
def test_amx_is_hidden_without_permission_as_each_kernel_does(kernel, cfg, data):
    spr = HostProfile.builtin("sapphire-rapids")
    eax = predict_supported_cpuid(spr.cpuid, kernel, "vmx").get(0xD, 0).eax
    assert (bool(eax & XFEATURE_MASK_XTILE_CFG), bool(eax & XFEATURE_MASK_XTILE_DATA)) == (bool(cfg), bool(data))
    allowed = KvmSetup(xfeature_perm=spr.xcr0_mask)
    eax = predict_supported_cpuid(spr.cpuid, kernel, "vmx", setup=allowed).get(0xD, 0).eax
    amx = XFEATURE_MASK_XTILE_CFG | XFEATURE_MASK_XTILE_DATA
    assert eax & amx == (0 if kernel == "5.10" else amx)  # no AMX in KVM before 5.17


def test_the_vendor_module_decides_its_own_bits():
    rome = HostProfile.builtin("epyc-rome").cpuid
    svm = predict_supported_cpuid(rome, "6.12", "svm")
    assert svm.get(0x80000001).ecx >> 2 & 1  # SVM, nested=1
    assert svm.get(0x8000000A).edx & 1  # NPT
    no_nested = predict_supported_cpuid(rome, "6.12", "svm", setup=KvmSetup(nested=False))
    assert not no_nested.get(0x80000001).ecx >> 2 & 1 and no_nested.get(0x8000000A).eax == 0
    skx = HostProfile.builtin("cascade-lake").cpuid
    vmx = predict_supported_cpuid(skx, "6.12", "vmx")
    assert vmx.get(1).ecx >> 5 & 1 and vmx.get(7).ebx >> 14 & 1  # VMX (nested) and MPX offered on vmx
    assert not predict_supported_cpuid(skx, "6.12", "svm").get(7).ebx >> 14 & 1  # never on svm


# -- recorded answers of real kernels ------------------------------------------------------------


def test_recordings_cover_five_models_on_both_lab_kernels():
    names = {p.name for p in RECORDED}
    assert len(RECORDED) == 2 * len(LAB_CPU_MODELS) >= 10, names


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_prediction_matches_recorded_lab_kernels(path):
    doc = json.loads(path.read_text())
    guest = CpuidTable(parse_doc(doc["guest_cpuid"], f"{path}:guest_cpuid"))
    measured = CpuidTable(parse_doc(doc["supported_cpuid"], f"{path}:supported_cpuid"))
    setup = KvmSetup.for_vendor(doc["vendor"], mitigations="mitigations=off" not in doc["command_line"].split())
    predicted = predict_supported_cpuid(guest, doc["package_version"], doc["vendor"], setup=setup)
    agreement = compare_supported(measured, predicted, kernel=doc["package_version"], vendor=doc["vendor"])
    assert agreement.registers >= 5 * len(measured)
    assert agreement.agrees, str(agreement)


def test_prediction_matches_a_recorded_pvm_kernel():
    """tests/data/live-kvm: an AMD EPYC host, 6.18 with kvm_pvm; the leaves the pvm module decides are left out."""
    host = load(TEST_DATA / "live-kvm" / "host-cpuid.json")
    measured = load(TEST_DATA / "live-kvm" / "supported-cpuid.json")
    predicted = predict_supported_cpuid(host, "6.18", "pvm")
    agreement = compare_supported(measured, predicted, skip_leaves=PVM_OWNED_LEAVES)
    assert agreement.registers > 200
    assert agreement.agrees, str(agreement)


# -- host profiles -----------------------------------------------------------------------------


def test_builtin_hosts_carry_the_prediction_for_their_kernel():
    hosts = builtin_hosts()
    predicted = [h for h in hosts.values() if h.supported is None]
    assert len(predicted) >= 10
    for h in predicted:
        kernel, vendor = h.predicted_for
        assert h.predicted is not None and vendor == h.vendor_for(None)
        fresh = h.supported_cpuid(kernel=kernel, vendor=vendor)
        assert list(h.predicted) == list(fresh), f"{h.name}: stored prediction is stale (tools/make_host_profiles.py)"
        assert "predicted" in h.supported_label and kernel in h.supported_label
        assert "predicted" in fresh.source and kernel in fresh.source and vendor in fresh.source
        raw1 = h.cpuid.get(1)
        assert raw1 is not None and raw1.ecx >> 27 & 1 == h.has_xsave  # the raw table keeps OSXSAVE as the CPU reports
        assert not fresh.get(1).ecx >> 27 & 1  # KVM never offers OSXSAVE


def test_kvm_supported_xcr0_is_the_host_kernels_xcr0_not_the_raw_0xd():
    """kvm_caps.supported_xcr0 starts from the XCR0 the host kernel enabled: a component whose CPUID feature
    the kernel lacks (PKRU without PKU, as the EPYC 7502 enumerates it) is not there, on every built-in host
    the model and the predictor give the same answer."""
    rome = HostProfile.builtin("epyc-rome")
    assert rome.cpuid.get(0xD, 0).eax & 1 << 9 and not rome.has_pku  # the CPU lists PKRU without PKU
    assert not host_kernel_xcr0(rome.cpuid) & 1 << 9
    assert not rome.kvm_supported_xcr0("svm") & 1 << 9
    # the same CPU with PKU: PKRU comes back
    with_pku = CpuidTable(
        [
            CpuidEntry(
                e.function,
                e.index,
                e.flags,
                e.eax,
                e.ebx,
                e.ecx | (1 << 3 if (e.function, e.index) == (7, 0) else 0),
                e.edx,
            )
            for e in rome.cpuid
        ]
    )
    assert host_kernel_xcr0(with_pku) & 1 << 9
    for h in builtin_hosts().values():
        if h.supported is not None:
            continue
        kernel, vendor = h.predicted_for
        pred = h.supported_cpuid(kernel=kernel, vendor=vendor).get(0xD, 0)
        offered = (pred.eax | pred.edx << 32) if pred else 0
        mine = h.kvm_supported_xcr0(vendor) & ~(XFEATURE_MASK_XTILE_CFG | XFEATURE_MASK_XTILE_DATA | 0x18)
        assert offered & ~(XFEATURE_MASK_XTILE_CFG | XFEATURE_MASK_XTILE_DATA | 0x18) == mine, h.name


def test_a_measured_table_wins_over_the_prediction():
    h = HostProfile.builtin("live-kvm-epyc")
    assert h.supported is not None and h.supported_cpuid() is h.supported
    assert "measured" in h.supported_label


# -- the real kernels ---------------------------------------------------------------------------


@pytest.mark.lab
def test_prediction_matches_the_lab_kernel(lab):
    agreement, measured, _ = lab_supported_agreement(lab)
    assert len(measured) > 20
    assert agreement.agrees, str(agreement)


@pytest.mark.lab
def test_prediction_matches_the_lab_kernel_on_other_cpu_models(lab_cpu_model):
    agreement, measured, _ = lab_supported_agreement(lab_cpu_model)
    assert len(measured) > 20
    assert agreement.agrees, str(agreement)


@pytest.mark.kvm
def test_prediction_matches_this_machine():
    agreement, measured, _ = live_supported_agreement()
    assert agreement.registers > 100
    assert agreement.agrees, str(agreement)
