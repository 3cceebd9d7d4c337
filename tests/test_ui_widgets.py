"""Headless widget tests: set widget values as a reader would, and compare what the views show
with the core's own answer (``cpuidkit.check()``), computed independently from the test's own
copy of the configuration."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("pandas")

from cpuidkit import check  # noqa: E402
from cpuidkit.core.hosts import HostProfile  # noqa: E402
from cpuidkit.core.kernels import named_kernels  # noqa: E402
from cpuidkit.core.sources import load  # noqa: E402
from cpuidkit.core.bits import FieldRef  # noqa: E402
from cpuidkit.ui import CpuidToggler, Lab, VcpuSetup  # noqa: E402
from cpuidkit.ui import widgets as W  # noqa: E402

HOST = HostProfile.resolve("sapphire-rapids")


class Expected:
    """The test's own record of what the reader did, checked with the core directly."""

    def __init__(self, host=HOST, kernel="6.18", vendor="vmx"):
        self.host, self.kernel, self.vendor = host, kernel, vendor
        self.table = host.supported_cpuid()
        self.state: dict = {}

    def outcome(self):
        return check(self.table, kernel=self.kernel, vendor=self.vendor, host=self.host, state=dict(self.state))


def assert_panel_matches(panel: W.VerdictPanel, out) -> None:
    d = out.as_dict()
    for key in ("verdict", "errno", "rule", "explanation", "source"):
        assert panel.data[key] == d[key], key
    assert [(e["step"], e["errno"]) for e in panel.data["state_errors"]] == [(e["step"], e["errno"]) for e in d["state_errors"]]
    text = panel.text
    assert d["verdict"].upper() in text
    if d["errno"]:
        assert d["errno"] in text and d["rule"] in text


def rows_from_core(out, scope) -> list[tuple]:
    rows = []
    for o in out.fields:
        f = o.field
        if isinstance(scope, tuple) and (f.leaf, o.subleaf) != scope:
            continue
        if scope == "owned" and o.owner == "passthrough":
            continue
        rows.append((f.name, f"{f.leaf:#x}", o.subleaf, f.register, f.bits, o.value, o.owner, o.driver or ""))
    return rows


def assert_table_matches(table: W.FieldTable, out) -> None:
    if not out.accepted:
        assert "refused" in table.html.value
        return
    df = table.frame
    got = [tuple(r) for r in df[["field", "leaf", "subleaf", "register", "bits", "stored", "owner", "driver"]].itertuples(index=False)]
    assert got == rows_from_core(out, table.scope)


def assert_grid_matches(grid: W.BitGrid, table, out) -> None:
    req = table.get(grid.leaf, grid.subleaf)
    stored = out.stored.get(grid.leaf, grid.subleaf) if out.accepted else None
    for bit, btn in grid.buttons.items():
        want = 0 if req is None else req.reg(grid.register) >> bit & 1
        assert btn.description == str(want), bit
        cell = grid.stored_cells[bit].value
        if stored is None:
            assert "·" in cell
        else:
            assert f">{stored.reg(grid.register) >> bit & 1}</div>" in cell


def test_initial_views_equal_the_core():
    t = CpuidToggler(live=False)
    exp = Expected()
    out = exp.outcome()
    assert_panel_matches(t.verdict, out)
    assert_table_matches(t.table, out)
    assert_grid_matches(t.grid, exp.table, out)
    assert out.accepted


def test_linear_width_50_is_rejected_with_einval():
    t = CpuidToggler(live=False)
    t.widths.linear.value = 50
    exp = Expected()
    exp.table = exp.table.set_field("virt_addr_bits", 50)
    out = exp.outcome()
    assert out.errno == "EINVAL"
    assert_panel_matches(t.verdict, out)
    assert "REJECTED" in t.verdict.text and "EINVAL" in t.verdict.text
    assert_table_matches(t.table, out)
    t.widths.linear.value = 48
    assert t.verdict.data["verdict"] == "accepted"


def test_a_toggle_flips_one_bit_and_redraws_only_that_button():
    t = CpuidToggler(live=False)
    changes = []
    for b, btn in t.grid.buttons.items():
        btn.observe(lambda c, b=b: changes.append(b), names=["description", "tooltip"])
        btn.style.observe(lambda c, b=b: changes.append(b), names=["button_color", "font_weight"])
    before = t.lab.table.get_field("avx2")
    t.grid.show(7, 0, "ebx")
    changes.clear()
    t.grid.toggle(5)  # avx2: pass-through
    assert t.lab.table.get_field("avx2") == 1 - before
    assert set(changes) == {5}
    exp = Expected()
    exp.table = exp.table.set_field("avx2", 1 - before)
    assert_panel_matches(t.verdict, exp.outcome())


def test_runtime_trigger_updates_the_stored_view():
    t = CpuidToggler(live=False)  # shows 7.0 ebx; switch to 1.0 ecx
    t.picker.entry.value = (1, 0)
    t.picker.reg.value = "ecx"
    assert (t.grid.leaf, t.grid.register) == (1, "ecx")
    t.triggers.osxsave.value = True
    exp = Expected()
    exp.state = {"cr4": 1 << 18, "xcr0": 1, "apic_base": W.APIC_DEFAULT_BASE | (1 << 11), "misc_enable": 0,
                 "quirks_disabled": [], "hlt_exits_disabled": False}
    out = exp.outcome()
    assert out.stored.get_field("osxsave") == 1
    assert_grid_matches(t.grid, exp.table, out)
    assert ("2px solid" in t.grid.stored_cells[27].value) == (exp.table.get_field("osxsave") != 1)
    assert_table_matches(t.table, out)
    assert "stored <b>1</b>" in t.triggers.view.value


def test_kernel_vendor_host_selectors():
    t = CpuidToggler(live=False)
    t.kernel.dropdown.value = "5.16"
    t.vendor.value = "svm"
    exp = Expected(kernel="5.16", vendor="svm")
    assert_panel_matches(t.verdict, exp.outcome())
    t.host.dropdown.value = "epyc-genoa"
    genoa = HostProfile.resolve("epyc-genoa")
    exp = Expected(host=genoa, kernel="5.16", vendor="svm")
    assert t.lab.table == genoa.supported_cpuid()
    assert_panel_matches(t.verdict, exp.outcome())
    assert_table_matches(t.table, exp.outcome())


def test_host_picker_bad_file_changes_nothing(tmp_path):
    t = CpuidToggler(live=False)
    before = (t.lab.host, t.lab.table)
    t.host.path.value = str(tmp_path / "missing.json")
    t.host.load.click()
    assert (t.lab.host, t.lab.table) == before
    assert "neither a built-in host" in t.host.message.value


def test_xcr0_checkboxes_agree_with_the_core():
    from cpuidkit.kvm.vcpu import SimulatedVcpu
    from cpuidkit.kvm.xcr import evaluate_xcr0

    lab = Lab(HOST, state=VcpuSetup(cr4=1 << 18))
    x = W.Xcr0Checkboxes(lab)
    for value in (0x7, 0x67, 0xE7, 0x5, 0x20007, 0x2E7):
        x.set_value(value)
        v = SimulatedVcpu(kernel="6.18", host=HOST)
        v.set_cpuid(HOST.supported_cpuid())
        want = evaluate_xcr0(v, value, cr4_osxsave=True)
        assert f"guest XSETBV <b style=\"color:" in x.result.value
        assert f">{want['xsetbv']}</b>" in x.result.value and f">{want['set_xcrs']}</b>" in x.result.value
        out = check(HOST.supported_cpuid(), host=HOST, state={"cr4": 1 << 18, "xcr0": value})
        assert [e["step"] for e in out.state_errors] == (["xcr0"] if want["set_xcrs"] != "ok" else [])
        if want["set_xcrs"] == "ok":
            assert f"<b>{out.stored.get(0xD, 0).ebx}</b>" in x.result.value


def test_export_is_atomic_and_a_bad_import_changes_nothing(tmp_path):
    t = CpuidToggler(live=False)
    t.grid.toggle(5)
    path = tmp_path / "guest.json"
    t.files.path.value = str(path)
    t.files.export_button.click()
    assert load(path) == t.lab.table
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary file left behind"
    before_table, before_outcome, before_panel = t.lab.table, t.lab.outcome, dict(t.verdict.data)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"function": "0x1", "eax": 1}]')
    t.files.path.value = str(bad)
    t.files.import_button.click()
    assert "import failed, nothing changed" in t.files.message.value
    assert t.lab.table is before_table and t.lab.outcome is before_outcome and t.verdict.data == before_panel
    other = HOST.supported_cpuid().set_field("virt_addr_bits", 50)
    good = tmp_path / "good.json"
    good.write_text(json.dumps([e.as_dict() for e in other]))
    t.files.path.value = str(good)
    t.files.import_button.click()
    assert t.lab.table == other and t.verdict.data["errno"] == "EINVAL"


def test_run_then_change_is_einval_and_readback_is_accepted():
    t = CpuidToggler(live=False)
    t.triggers.run.click()
    assert t.verdict.data["verdict"] == "accepted"
    t.grid.toggle(5)
    assert t.verdict.data["errno"] == "EINVAL" and t.verdict.data["rule"] == "post_run_set_cpuid"
    t.grid.toggle(5)
    assert t.verdict.data["verdict"] == "accepted"
    t.triggers.reset.click()
    assert not t.lab.state.has_run


def test_seeded_random_toggles_match_the_core():
    rng = random.Random(20240611)
    t = CpuidToggler(live=False)
    exp = Expected()
    regs = [(1, 0, "ecx"), (1, 0, "edx"), (7, 0, "ebx"), (7, 0, "ecx"), (0xD, 0, "eax"), (0xD, 1, "eax"),
            (0x80000008, 0, "eax"), (6, 0, "eax")]
    kernels = sorted(named_kernels())
    cr4 = {"osxsave": False, "pke": False}
    for step in range(160):
        kind = rng.choice(["bit"] * 6 + ["linear", "maxphy", "kernel", "vendor", "cr4"])
        if kind == "bit":
            leaf, sub, reg = rng.choice(regs)
            t.picker.entry.value = (leaf, sub)
            t.picker.reg.value = reg
            bit = rng.randrange(32)
            t.grid.toggle(bit)
            old = exp.table.get_field(FieldRef(leaf, sub, reg, bit, bit)) or 0
            exp.table = exp.table.set_field(FieldRef(leaf, sub, reg, bit, bit), 1 - old)
        elif kind == "linear":
            v = rng.choice([0, 48, 50, 57, 39, 64])
            t.widths.linear.value = v
            exp.table = exp.table.set_field("virt_addr_bits", v)
        elif kind == "maxphy":
            v = rng.choice([0, 36, 46, 52, 64])
            t.widths.maxphyaddr.value = v
            exp.table = exp.table.set_field("phys_addr_bits", v)
        elif kind == "kernel":
            exp.kernel = t.kernel.dropdown.value = rng.choice(kernels)
        elif kind == "vendor":
            exp.vendor = t.vendor.value = rng.choice(["vmx", "svm"])
        else:
            which = rng.choice(["osxsave", "pke"])
            cr4[which] = not cr4[which]
            getattr(t.triggers, which).value = cr4[which]
            exp.state = {"cr4": (1 << 18 if cr4["osxsave"] else 0) | (1 << 22 if cr4["pke"] else 0), "xcr0": 1,
                         "apic_base": W.APIC_DEFAULT_BASE | (1 << 11), "misc_enable": 0, "quirks_disabled": [],
                         "hlt_exits_disabled": False}
        assert t.lab.table == exp.table, step
        out = exp.outcome()
        assert_panel_matches(t.verdict, out)
        assert_table_matches(t.table, out)
        assert_grid_matches(t.grid, exp.table, out)


def test_lint_panel_and_rejection_explorer():
    from cpuidkit.analysis.lint import lint_table

    lab = Lab(HOST)
    panel = W.LintPanel(lab)
    lab.set_field("0xd.0.eax[11]", 1)
    assert [f.rule for f in panel.findings] == [f.rule for f in lint_table(lab.table, host=HOST)]
    assert "xcr0_supervisor_component" in panel.value and "illegal" in panel.value
    r = W.RejectionExplorer(Lab(HOST))
    r.entries.value = 257
    assert r.verdict.data["errno"] == "E2BIG"
    r.entries.value = len(r.base)
    r.tiledata.value = True
    assert r.verdict.data["errno"] == "EPERM"
    r.permission.value = True
    assert r.verdict.data["verdict"] == "accepted"
    r.after_run.value = True
    assert r.verdict.data["errno"] == "EINVAL"


def test_import_cpuidkit_does_not_load_the_ui():
    import subprocess
    import sys

    code = "import sys, cpuidkit; print(any(m.startswith('cpuidkit.ui') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_derived_line_follows_maxphyaddr_while_the_verdict_stays():
    """Issue 13 item 2: the panel's "derived:" line is redrawn when only MAXPHYADDR changes."""
    t = CpuidToggler(live=False)
    before = t.verdict.data["verdict"]
    t.widths.maxphyaddr.value = 46
    assert "derived: MAXPHYADDR 46" in t.verdict.value
    t.widths.maxphyaddr.value = 40
    assert t.verdict.data["verdict"] == before
    assert "derived: MAXPHYADDR 40" in t.verdict.value
    assert "derived: MAXPHYADDR 46" not in t.verdict.value


def test_width_slider_labels_are_not_cut():
    """Issue 13 item 9: "MAXPHYADDR" gets the width it needs (not "maxphya…")."""
    t = CpuidToggler(live=False)
    assert t.widths.maxphyaddr.style.description_width == "initial"
    assert t.widths.linear.style.description_width == "initial"


def test_fleet_matrix_displays_as_an_image_without_an_inline_backend():
    """Issue 13 item 1: display(fig) in an Output widget drew "<Figure size …>"."""
    from IPython.core.formatters import DisplayFormatter

    from cpuidkit.analysis.fleet import fleet
    from cpuidkit.ui.plots import fleet_matrix

    hosts = [HOST, HostProfile.resolve("cascade-lake")]
    fig = fleet_matrix(fleet(hosts, kernel="6.18"))
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"][:4] == b"\x89PNG"


def test_amx_permission_toggle_plays_the_amx_story():
    """Issue 13 item 5: permission off → EPERM; on → accepted; TILECFG alone #GP at XSETBV, both ok."""
    lab = Lab(host="sapphire-rapids")
    w = W.AmxPermissionToggle(lab)
    r = w.rows()
    assert r["set_cpuid2_without"] == "rejected (EPERM)" and r["set_cpuid2_with"] == "accepted"
    assert "EPERM" in r["xsetbv_tilecfg"]
    w.permission.value = True
    assert lab.state.xfeature_permission == 1 << 18
    r = w.rows()
    assert r["xsetbv_tilecfg"].startswith("#GP") and r["xsetbv_both"].startswith("ok")
    assert "#GP" in w.note.value and "ok: XCR0 := 0x60003" in w.note.value
    expected = check(
        lab.table.set_field("0xd.0.eax[17]", 1).set_field("0xd.0.eax[18]", 1),
        kernel=lab.kernel, vendor=lab.vendor, host=lab.host, state=VcpuSetup(xfeature_permission=1 << 18),
    )
    assert expected.accepted
    lab.update(state=VcpuSetup())
    assert w.permission.value is False


def test_hover_on_a_multi_bit_field_names_the_bit():
    """Issue 13 item 6: each bit of 0xD.0 EAX names its XCR0 component, not only xcr0_supported_lo."""
    lab = Lab(host="sapphire-rapids")
    g = W.BitGrid(lab, 0xD, 0, "eax")
    tips = {b: cell[1] for b, cell in g.content(lab.view)["cells"].items()}
    assert tips[11].startswith("bit 11: cet_u (XSAVE component 11)") and "xcr0_supported_lo" in tips[11]
    assert tips[17].startswith("bit 17: amx_tilecfg") and tips[18].startswith("bit 18: amx_tiledata")
    assert len({t.split(" · ")[0] for t in tips.values()}) == 32
    # a single-bit flag keeps its own field name
    g1 = W.BitGrid(lab, 0x1, 0, "ecx")
    assert "xsave" in g1.content(lab.view)["cells"][26][1]
