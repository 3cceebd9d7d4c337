"""The course's figures: drawn from the core's answers (owners, layouts, masks, behaviour rows)."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from cpuidkit.analysis.addressing import paging_reserved_bits as masks  # noqa: E402
from cpuidkit.core.hosts import HostProfile  # noqa: E402
from cpuidkit.core.kernels import behaviour_rows  # noqa: E402
from cpuidkit.core.xsave import compacted_layout, compacted_size, standard_size  # noqa: E402
from cpuidkit.ui import Lab, plots  # noqa: E402
from cpuidkit.ui._theme import OWNER_COLOURS  # noqa: E402
from cpuidkit.ui.course import life_story  # noqa: E402

HOST = HostProfile.resolve("sapphire-rapids")


def _rects(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _hex(colour) -> str:
    return matplotlib.colors.to_hex(colour)


def test_register_grid_colours_bits_by_owner():
    lab = Lab(HOST)
    fig = plots.register_grid(lab, 1, 0, "ecx")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    cells = [r for r in _rects(ax) if r.get_width() == 1]
    assert len(cells) == 32
    # bit 27 (osxsave) is runtime-owned: drawn at x = 31 - 27
    osx = next(r for r in cells if r.get_x() == 4)
    assert _hex(osx.get_facecolor()) == OWNER_COLOURS["runtime"]
    avx = next(r for r in cells if r.get_x() == 31 - 28)
    assert _hex(avx.get_facecolor()) == OWNER_COLOURS["passthrough"]
    texts = {t.get_text() for t in ax.texts}
    assert {"osxsave", "avx", "hypervisor"} <= texts


def test_xsave_layout_marks_both_sizes():
    comps = HOST.xsave_components
    fig = plots.xsave_layout(comps, 0x602E7, xss=0x1800)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert f"0xD.0 EBX = {standard_size(comps, 0x602E7)}" in texts
    assert f"0xD.1 EBX = {compacted_size(comps, 0x602E7 | 0x1800)}" in texts
    tiledata = next(d for d in compacted_layout(comps, 0x602E7 | 0x1800) if d["bit"] == 18)
    assert any(
        r.get_x() == tiledata["offset"] and r.get_width() == 8192 and r.get_y() == 0 for r in _rects(fig.axes[0])
    )
    assert any(r.get_x() == 2816 and r.get_width() == 8192 and r.get_y() > 0 for r in _rects(fig.axes[0]))


@pytest.mark.parametrize("mode", ["4-level", "5-level", "pae"])
def test_paging_rows_follow_the_reserved_masks(mode):
    rows = plots.paging_rows(46, mode)
    want = masks(46, mode)
    assert [name for name, _ in rows] == list(want)
    for name, kinds in rows:
        got = sum(1 << b for b, k in kinds.items() if k == "rsvd")
        assert got == want[name], name
    assert isinstance(plots.paging_reserved_bits(46, mode), Figure)


def test_address_space_bands():
    fig = plots.address_space(52, 46)
    cells = _rects(fig.axes[0])
    assert len(cells) == 64
    hatched = [r for r in cells if r.get_hatch()]
    assert sorted(63 - int(r.get_x()) for r in hatched) == list(range(46, 52))


def test_kernel_timeline_draws_every_range():
    ids = ["post_run_set_cpuid", "sgx_xfrm_adjust"]
    fig = plots.kernel_timeline(ids, mark="6.1")
    texts = [t.get_text() for t in fig.axes[0].texts]
    for bid in ids:
        assert bid in texts
        for b in behaviour_rows(bid):
            if b.until is None or b.until > (5, 10):
                assert any(t.startswith(b.value[:3]) or f": {b.value} (" in t for t in texts), (bid, b.value)


def test_kernel_timeline_never_cuts_a_label():
    """Issue 13: 08's timeline showed "rej…" and "old…": every value a bar stands for is written in full,
    in the bar or, numbered, on the line under its row with its version range."""
    ids = ["post_run_set_cpuid", "failed_set_keeps_old", "sgx_xfrm_adjust", "xss_in_0xd1_ebx"]
    fig = plots.kernel_timeline(ids, mark="6.1")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert not [t for t in texts if "…" in t]
    for bid in ids:
        for b in behaviour_rows(bid):
            if b.until is None or b.until > (5, 10):  # drawn (the axis starts at 5.10)
                assert b.value in texts or any(f": {b.value} (" in t and b.range_text in t for t in texts), (bid, b)
    # the narrow 5.16 bar carries a number, and its note names the value in full
    assert "1: reject (5.16 only)" in texts


def test_vcpu_timeline_from_a_life_story():
    story = life_story(HOST)
    fig = plots.vcpu_timeline(story)
    labels = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    assert labels[0] == "vCPU created" and "KVM_RUN" in labels
