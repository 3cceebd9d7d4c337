"""`cpuidkit migrate` and cpuidkit.analysis.migrate: findings between a guest table and a destination host."""

from __future__ import annotations

import json

import pytest

from test_guest import run_cli
from cpuidkit.core.hosts import HostProfile
from cpuidkit.analysis.migrate import SEVERITIES, migrate

SPR = HostProfile.builtin("sapphire-rapids")


def rules(report, severity=None):
    return {f.rule for f in report.findings if severity is None or f.severity == severity}


def test_same_cpu_is_ok():
    r = migrate(SPR.cpuid, SPR)
    assert r.verdict == "ok" and not r.blockers
    assert rules(r) >= {"xcr0_components", "xsave_size", "maxphyaddr", "amx_permission"}
    assert all(f.severity == "info" for f in r.findings)


def test_every_finding_has_the_four_keys():
    r = migrate(SPR.cpuid, "cascade-lake").as_dict()
    assert r["verdict"] == "blocked" and r["blockers"] == sum(f["severity"] == "blocker" for f in r["findings"])
    for f in r["findings"]:
        assert set(f) == {"severity", "rule", "fields", "explanation"}
        assert f["severity"] in SEVERITIES and f["rule"] and f["explanation"] and isinstance(f["fields"], list)
    order = [SEVERITIES.index(f["severity"]) for f in r["findings"]]
    assert order == sorted(order)


def test_sapphire_rapids_to_cascade_lake():
    r = migrate(SPR.cpuid, "cascade-lake")
    assert {"feature_missing", "xcr0_components", "maxphyaddr", "linear_width", "amx_permission"} <= rules(r, "blocker")
    missing = next(f for f in r.findings if f.rule == "feature_missing").fields
    assert {"avx512_fp16", "amx_tile", "sha_ni"} <= set(missing)
    assert "x2apic" not in missing and "hypervisor" not in missing  # KVM provides them anyway
    xcr0 = next(f for f in r.findings if f.rule == "xcr0_components")
    assert xcr0.fields == ["xcr0[17]", "xcr0[18]"] and "EINVAL" in xcr0.explanation


def test_power_management_leaves_do_not_count():
    # leaf 6 (HWP, turbo) and most of 0x80000007 never reach a KVM guest: not blockers
    r = migrate(SPR.cpuid, "emerald-rapids")
    assert r.verdict == "ok", [f.as_dict() for f in r.blockers]


def test_xsave_layout_differs_between_zen2_and_zen3():
    r = migrate(HostProfile.builtin("epyc-rome").cpuid, "epyc-milan")
    layout = next(f for f in r.findings if f.rule == "xsave_layout")
    assert layout.severity == "blocker" and "64@832 -> 8@2432" in layout.explanation
    size = next(f for f in r.findings if f.rule == "xsave_size")
    assert size.severity == "blocker" and "2440" in size.explanation and "896" in size.explanation


def test_xsave_size_without_component_subleaves_uses_the_source():
    from cpuidkit import CpuidTable

    stripped = CpuidTable(e for e in SPR.cpuid if not (e.function == 0xD and e.index >= 2))
    r = migrate(stripped, SPR)
    assert any(f.rule == "xsave_layout" and f.severity == "info" for f in r.findings)
    r = migrate(stripped, SPR, source=SPR)
    assert not any(f.rule == "xsave_layout" for f in r.findings)


def test_narrower_guest_costs_depend_on_the_destination():
    guest = SPR.cpuid.set_field("phys_addr_bits", 46)
    vmx = next(f for f in migrate(guest, SPR).findings if f.rule == "maxphyaddr")
    assert vmx.severity == "warning"
    faithful = HostProfile.from_table(SPR.cpuid, name="spr-asm", allow_smaller_maxphyaddr=True)
    f = next(f for f in migrate(guest, faithful).findings if f.rule == "maxphyaddr")
    assert f.severity == "info" and "emulat" in f.explanation
    genoa = HostProfile.builtin("epyc-genoa")
    f = next(f for f in migrate(genoa.cpuid.set_field("phys_addr_bits", 46), genoa).findings if f.rule == "maxphyaddr")
    assert f.severity == "warning" and "NPT" in f.explanation


def test_wider_guest_with_shadow_paging_is_a_warning():
    shadow = HostProfile.from_table(HostProfile.builtin("cascade-lake").cpuid, name="cl-shadow", tdp=False)
    guest = shadow.cpuid.set_field("phys_addr_bits", 52)
    f = next(f for f in migrate(guest, shadow).findings if f.rule == "maxphyaddr")
    assert f.severity == "warning" and "shadow paging" in f.explanation


def test_52_bit_guest_on_a_52_bit_host_without_5_level_ept():
    sierra = HostProfile.builtin("sierra-forest")
    guest = sierra.cpuid  # its own CPUID says 52 bits
    r = migrate(guest, sierra)
    f = [f for f in r.findings if f.rule == "maxphyaddr" and f.severity == "blocker"]
    assert f and "2^48" in f[0].explanation
    assert migrate(guest.set_field("phys_addr_bits", 48), sierra).verdict != "blocked"


def test_guest_phys_bits_field():
    guest = SPR.cpuid.set_field("guest_phys_addr_bits", 52)
    r = migrate(guest.set_field("phys_addr_bits", 46), "cascade-lake")
    assert any(f.rule == "guest_phys_bits" for f in r.findings)


def test_vendor_and_linear_width():
    r = migrate(HostProfile.builtin("epyc-milan").cpuid, "cascade-lake")
    assert "vendor" in rules(r, "warning")
    r = migrate(HostProfile.builtin("ice-lake").cpuid, "cascade-lake")
    assert "linear_width" in rules(r, "blocker")


def test_sgx_xfrm_against_the_destination():
    from test_guest_sgx import sgx_table

    guest = sgx_table(guest_xcr0=0x602E7, xfrm=0x602E7)
    dest = HostProfile.builtin("ice-lake")  # no AMX
    new = next(f for f in migrate(guest, dest, kernel="6.18").findings if f.rule == "sgx_xfrm")
    assert "ECREATE" in new.explanation
    old = next(f for f in migrate(guest, dest, kernel="6.1").findings if f.rule == "sgx_xfrm")
    assert "trims" in old.explanation


def test_explicit_xcr0():
    r = migrate(HostProfile.builtin("cascade-lake").cpuid, SPR, guest_xcr0=0x2E7)
    assert "xcr0_components" not in rules(r, "blocker")


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_exit_codes_and_table_format(tmp_path):
    from cpuidkit.core.sources import save

    rc, out = run_cli("migrate", "sapphire-rapids", "--to", "emerald-rapids")
    assert rc == 0 and "OK" in out.splitlines()[0]
    rc, out = run_cli("migrate", "sapphire-rapids", "--to", "cascade-lake")
    assert rc == 1 and "BLOCKED" in out and "[blocker] maxphyaddr" in out
    path = save(SPR.cpuid.set_field("phys_addr_bits", 46), tmp_path / "guest.json")
    rc, out = run_cli("migrate", str(path), "--to", "sapphire-rapids", "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["guest"] == str(path) and d["verdict"] == "ok-with-warnings"


@pytest.mark.parametrize("argv", [
    ["migrate", "sapphire-rapids"],
    ["migrate", "nowhere", "--to", "cascade-lake"],
    ["migrate", "sapphire-rapids", "--to", "nowhere"],
    ["migrate", "sapphire-rapids", "--to", "cascade-lake", "--kernel", "x"],
    ["migrate", "sapphire-rapids", "--to", "cascade-lake", "--xcr0", "lots"],
])
def test_cli_bad_input_exits_2(argv, capsys):
    assert run_cli(*argv)[0] == 2
    assert "Traceback" not in capsys.readouterr().err


def test_cli_bad_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "guest.json"
    bad.write_text("{ not json")
    assert run_cli("migrate", str(bad), "--to", "cascade-lake")[0] == 2


def test_a_bit_kvm_never_offers_blocks_nothing(monkeypatch):
    """A Skylake-SP guest carrying TSX_FORCE_ABORT (its TAA microcode sets 7.0 EDX[13]) moves to Cascade Lake,
    which lacks the bit: KVM never offers it (never_offered in data/kvm-behaviours.csv), so nothing is lost.
    The rule is the data: take the bit out of the row and the move is blocked over it again."""
    from conftest import DUMPS

    from cpuidkit._files import read_csv
    from cpuidkit.core import kernels
    from cpuidkit.core.sources import load

    skx = load(DUMPS / "libvirt" / "x86_64-cpuid-Xeon-Gold-6148.xml").set_field("tsx_force_abort", 1)
    clx = HostProfile.from_file(DUMPS / "libvirt" / "x86_64-cpuid-Xeon-Platinum-8268.xml")
    assert not clx.cpuid.get_field("tsx_force_abort")
    rep = migrate(skx, clx, kernel="6.18")
    assert not rep.blockers, rep.as_dict()
    # a bit KVM does offer and the destination lacks is still a blocker
    assert [f.fields for f in migrate(skx.set_field("serialize", 1), clx, kernel="6.18").blockers] == [["serialize"]]
    rows = [
        dict(r, value=r["value"].replace(";tsx_force_abort", "")) if r["id"] == "never_offered" else r
        for r in read_csv("kvm-behaviours.csv")
    ]
    try:
        monkeypatch.setattr(kernels, "read_csv", lambda name: rows)
        kernels._behaviours.cache_clear()
        kernels.kernel_profile.cache_clear()
        blocked = migrate(skx, clx, kernel="6.18").blockers
        assert [(f.rule, f.fields) for f in blocked] == [("feature_missing", ["tsx_force_abort"])]
    finally:
        monkeypatch.undo()
        kernels._behaviours.cache_clear()
        kernels.kernel_profile.cache_clear()
