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
