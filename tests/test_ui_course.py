"""The course's worked examples return what the core says, and the live lab skips cleanly."""

from __future__ import annotations

import pytest
from conftest import ROOT, libvirt_dumps

from cpuidkit.analysis.review import Review, render_html, render_markdown
from cpuidkit.analysis.review import review as analysis_review
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import kernel_profile
from cpuidkit.ui import course, livelab
from cpuidkit.ui.lab import Lab, VcpuSetup

HOST = HostProfile.resolve("sapphire-rapids")


def test_life_story_follows_the_triggers():
    story = {s["event"]: s for s in course.life_story(HOST)}
    assert story["KVM_SET_CPUID2"]["fields"]["osxsave"] == 0
    assert story["KVM_SET_CPUID2"]["fields"]["xsave_size_enabled"] == 576
    assert story["CR4.OSXSAVE=1"]["fields"]["osxsave"] == 1
    assert story["XSETBV 0x7"]["fields"]["xsave_size_enabled"] == 832
    assert story["APIC disabled"]["fields"]["apic"] == 0 and story["APIC enabled"]["fields"]["apic"] == 1
    assert story["re-SET read-back"]["error"] is None
    assert story["re-SET changed"]["error"].startswith("EINVAL")


def test_rejection_scenarios():
    rows = {r["scenario"]: r for r in course.rejection_scenarios(HOST)}
    assert rows["257 entries"]["errno"] == "E2BIG" and rows["256 entries"]["verdict"] == "accepted"
    assert rows["linear width 50"]["errno"] == "EINVAL"
    assert rows["AMX TILEDATA without permission"]["errno"] == "EPERM"
    assert rows["re-SET a changed table after KVM_RUN"]["errno"] == "EINVAL"
    rejected = {n for n, r in rows.items() if r["verdict"] == "rejected"}
    assert rejected == {
        "257 entries",
        "linear width 50",
        "AMX TILEDATA without permission",
        "re-SET a changed table after KVM_RUN",
    }


def test_post_run_history_follows_the_profiles():
    for row in course.post_run_across_kernels(HOST):
        rule = kernel_profile(row["kernel"]).value("post_run_set_cpuid")
        assert row["rule"] == rule
        assert row["same table"] == ("EINVAL" if rule == "reject" else "ok")
        assert row["changed table"] == ("ok" if rule == "any" else "EINVAL")


def test_sgx_xfrm_trimmed_only_before_64():
    rows = {r["kernel"]: r for r in course.sgx_xfrm_across_kernels(HOST)}
    assert rows["6.1"]["stored 0x12.1 ECX"] != rows["6.1"]["set 0x12.1 ECX"]
    assert rows["6.4"]["stored 0x12.1 ECX"] == rows["6.4"]["set 0x12.1 ECX"]


def test_pool_and_migration_matrix():
    assert course.pool_phys_bits(["cascade-lake", "epyc-milan", "sapphire-rapids"]) == 46
    rows = {r["guest MAXPHYADDR"]: r for r in course.migration_matrix([46, 52], ["cascade-lake", "sapphire-rapids"])}
    assert rows[52]["cascade-lake (46)"] == "blocker"
    assert rows[46]["cascade-lake (46)"] == "ok"


def test_review_sections():
    table, edits = course.example_template(HOST)
    assert any("OSXSAVE" in e for e in edits)
    r = course.review(table, HOST, pool=["cascade-lake"])
    heads = [s.title for s in r.sections]
    assert heads[0] == "Summary" and heads[1] == "1. KVM's verdict" and heads[-1] == "8. Migration to the pool"
    md = r._repr_markdown_()
    assert "`osxsave`" in md and "cascade-lake" in md
    page = r._repr_html_()
    assert page.count("<svg ") == 2 and "<h4>8. Migration to the pool</h4>" in page


def test_the_notebook_review_is_the_command_review():
    """One engine: the course's review is cpuidkit review's (same data, sections, figures and text)."""
    assert course.Review is Review
    table, _ = course.example_template(HOST)
    mine = course.review(table, HOST, kernel="6.6", vendor="vmx")
    theirs = analysis_review(table, HOST, kernel="6.6", vendor="vmx")
    assert mine.data == theirs.data and mine.figures == theirs.figures
    assert render_markdown(mine) == render_markdown(theirs) and render_html(mine) == render_html(theirs)
    assert "pool" not in mine.data and not mine.section("8.")


def test_predicted_matrix_matches_history():
    df = course.predicted_matrix(("amx_tile",), ("5.10", "6.1"))
    assert list(df.iloc[0]) == ["amx_tile", "no", "yes"]


def test_lab_rejects_bad_edits_without_changing():
    lab = Lab(HOST)
    before = (lab.table, lab.kernel, lab.vendor, lab.outcome)
    with pytest.raises(Exception):
        lab.update(vendor="arm")
    with pytest.raises(Exception):
        lab.update(kernel="banana")
    assert (lab.table, lab.kernel, lab.vendor, lab.outcome) == before
    lab.update(state=VcpuSetup(cr4=1 << 18))
    assert lab.outcome.stored.get_field("osxsave") == 1


def test_live_lab_skips_with_a_message(monkeypatch):
    monkeypatch.setenv("CPUIDKIT_KVM_DEVICE", "/nonexistent/kvm")
    ok, why = livelab.kvm_status()
    assert not ok
    assert livelab.skip_message(why).startswith("SKIPPED: no usable KVM device")


@pytest.mark.kvm
def test_live_lab_agrees_with_the_model():
    lab = livelab.LiveLab()
    rows = lab.side_by_side("linear width 50 (EINVAL)")
    assert rows[0]["kernel"] == "EINVAL" and all(r["agree"] for r in rows)
    result = lab.agreement(n_random=5, seed=3)
    assert result["scenarios"] > 5 and result["agree"] == result["scenarios"], result["disagreements"]


def test_fleet_panel_shows_the_libvirt_pool(monkeypatch):
    # the course looks for <CPUIDKIT_SHARED>/data/cpuid-dumps: point it at the repository's tests/data
    monkeypatch.setenv("CPUIDKIT_SHARED", str(ROOT / "tests"))
    panel = course.fleet_panel()
    f = panel.fleet
    s = f.summary()
    assert len(f) == len(libvirt_dumps()) == 28
    bar, status, out = panel.children
    assert bar.value == bar.max  # the progress bar reached the end
    assert f"{s['blocked']}</b> blocked" in status.value and s["ok"] + s["ok_with_warnings"] + s["blocked"] == 28 * 27
    assert panel.figure.axes and panel.figure.axes[0].images, "the matrix is drawn as an image"


# -- issue 13 ------------------------------------------------------------------------------------------------------


def test_every_axes_example_lands_in_the_cell_it_is_built_for():
    """07: each example is placed live by check() and the lint; it must land where it is meant to, every
    cell that can hold a table holds one, and the illegal-and-sane cells hold none."""
    rows = course.axes_rows(HOST, kernel="6.18")
    for r in rows:
        assert (r["KVM"], r["architecture"], r["guest"]) == r["meant"], r
    landed = {(r["KVM"], r["architecture"], r["guest"]) for r in rows}
    possible = {(v, legal, sane) for v in ("accepted", "rejected") for legal, sane in course.AXIS_COLUMNS
                if (legal, sane) not in course.IMPOSSIBLE_CELLS}
    assert landed == possible and len(possible) == 6
    assert not any((legal, sane) in course.IMPOSSIBLE_CELLS for _, legal, sane in landed)
    grid = course.axes_grid(rows)
    assert list(grid["illegal · sane"]) == ["cannot exist", "cannot exist"]
    assert "TILECFG without TILEDATA" in grid.loc["accepted", "legal · insane"]
    assert "CET_U in 0xD.0" in grid.loc["accepted", "illegal · insane"]


def test_axes_rejections_are_the_four_kvm_rejections():
    """Issue 13 item 9: 07's rejected examples were all the same AMX EPERM case."""
    rows = [r for r in course.axes_rows(HOST, kernel="6.18") if r["KVM"] == "rejected"]
    rules = {r["KVM rule"] for r in rows}
    assert rules == {"max_cpuid_entries", "amx_dynamic_eperm", "post_run_set_cpuid", "vaddr_width_values"}
    assert sorted(r["errno"] for r in rows) == ["E2BIG", "EINVAL", "EINVAL", "EPERM"]
    assert all(r["errno"] for r in course.axes_rows(HOST) if r["KVM"] == "rejected")


def test_lint_axes_reads_the_classes():
    from cpuidkit.analysis.lint import Finding, lint_axes

    def f(severity, intended=False):
        return Finding("r", severity, [], "", "", intended=intended)

    assert lint_axes([]) == ("legal", "sane") == lint_axes([f("info")])
    assert lint_axes([f("insane")]) == ("legal", "insane") == lint_axes([f("insane", intended=True)])
    assert lint_axes([f("illegal"), f("info")]) == ("illegal", "insane")


def test_frame_shows_missing_values_as_a_dash_never_nan():
    df = course.frame([{"a": 1, "b": None}, {"a": 2}])
    assert list(df["b"]) == [course.MISSING, course.MISSING] and list(df["a"]) == [1, 2]
    assert "NaN" not in df.to_string() and "NaN" not in df.to_html()


def test_migration_blockers_say_why():
    """Issue 13 item 7: "52 → sierra-forest (52): blocker" without its reason (4-level EPT: 48 bits mappable)."""
    hosts = ["cascade-lake", "sierra-forest", "sapphire-rapids"]
    rows = {r["guest MAXPHYADDR"]: r for r in course.migration_matrix([46, 52], hosts)}
    assert rows[52]["sierra-forest (52, maps 48)"] == "blocker"
    assert rows[52]["sapphire-rapids (52)"] == "ok"
    why = {(r["guest MAXPHYADDR"], r["destination"]): r["why"] for r in course.migration_reasons([46, 52], hosts)}
    blockers = {(g, h) for g, row in rows.items() for h, v in row.items() if v == "blocker"}
    assert set(why) == blockers
    assert "5-level" in why[(52, "sierra-forest (52, maps 48)")] and "2^48" in why[(52, "sierra-forest (52, maps 48)")]
    assert "46" in why[(52, "cascade-lake (46)")]


def test_live_lab_folds_the_padded_scenarios_into_one():
    """Issue 13 item 9: 10's scenario list ended with ten "no 0xD, 24x entries" items."""
    lab = livelab.LiveLab.__new__(livelab.LiveLab)  # no /dev/kvm needed to list the scenarios
    lab.base = HOST.supported_cpuid()
    names = lab.scenarios()
    assert not any(livelab._PADDED.match(n) for n in names)
    from cpuidkit.analysis.agreement import scripted_scenarios

    raw = scripted_scenarios(lab.base)
    family = sorted(int(livelab._PADDED.match(n).group(1)) for n in raw if livelab._PADDED.match(n))
    assert len(family) > 1  # the measurement still runs each size on its own
    folded = [n for n in names if n.startswith("no 0xD, ")]
    assert folded == [f"no 0xD, {family[0]}–{family[-1]} entries, one table each"]
    steps = lab._scripted()[folded[0]]
    assert [len(s.args[0]) for s in steps] == family
    assert set(names) - set(folded) == {n for n in raw if not livelab._PADDED.match(n)}


def test_call_path_figure_is_drawn_from_its_data_and_docs_has_it():
    from cpuidkit.analysis import figures
    from cpuidkit.ui import plots

    rows = figures.call_path_rows()
    svg = plots.call_path().data
    for fn in ("kvm_vcpu_ioctl_set_cpuid2()", "kvm_set_cpuid()", "kvm_check_cpuid()", "kvm_cpuid_check_equal()",
               "kvm_vcpu_after_set_cpuid()", "kvm_update_cpuid_runtime()"):
        assert f">{fn}<" in svg, fn
    for r in rows:
        for errno in filter(None, (e.strip() for e in r["errno"].split(";"))):
            assert f"→ {errno}" in svg
    assert (ROOT / "docs" / "call-path.svg").read_text() == figures.call_path_svg(rows) + "\n", (
        "docs/call-path.svg is stale: run make course-docs")


def test_call_path_data_errors_name_the_row(tmp_path, monkeypatch):
    import csv

    import cpuidkit.analysis.figures as figures
    from cpuidkit.errors import InputError

    good = (ROOT / "data" / "call-path.csv").read_text()
    bad = tmp_path / "call-path.csv"
    bad.write_text(good.replace(",stored,before installing", ",nowhere,before installing"))
    lines = [line for line in bad.read_text().splitlines() if not line.startswith("#")]
    monkeypatch.setattr(figures, "read_csv", lambda name: list(csv.DictReader(lines)))
    monkeypatch.setattr(figures, "data_path", lambda name: bad)
    with pytest.raises(InputError, match=r"data row 6: next.*unknown step 'nowhere'"):
        figures.call_path_rows()


def test_kvm_error_shows_as_a_few_lines_in_ipython():
    """Issue 13 item 9: the intended error in 03 was 20 lines of Python traceback."""
    from cpuidkit import SimulatedVcpu
    from cpuidkit.errors import KvmError

    v = SimulatedVcpu(kernel="6.18", host=HOST)
    with pytest.raises(KvmError) as e:
        v.set_cpuid(HOST.supported_cpuid().set_field("virt_addr_bits", 50))
    lines = e.value._render_traceback_()
    assert len(lines) <= 4 and lines[0].startswith("KvmError:") and "EINVAL" in lines[0]
    assert "vaddr_width_values" in lines[-1]
