"""QEMU's expansion of a CPU model against the CPUID a guest of that model sees in the kernel lab (issue 16 item 2):
every mapped feature bit agrees, for an Intel and an AMD model, and a wrong map would be caught."""

from __future__ import annotations

import pytest

from cpuidkit.analysis import qemu_agreement
from cpuidkit.analysis.qemu_agreement import compare, expansion_vs_guest
from cpuidkit.core.catalog import qemu_feature_positions
from cpuidkit.lab import KernelLab
from cpuidkit.lab.qmp import expand_cpu_model

pytestmark = [pytest.mark.lab, pytest.mark.qemu]


@pytest.mark.parametrize("model", ["Cascadelake-Server", "EPYC-Milan"])
def test_expansion_is_what_the_guest_sees(model):
    r = expansion_vs_guest(model, "6.12")
    assert r["compared"] > 150 and r["on"] > 40, r
    assert r["agree"] == r["compared"], r["disagreements"]


def test_a_wrong_position_is_caught(monkeypatch):
    exp = expand_cpu_model("Cascadelake-Server", accel="tcg")
    with KernelLab("6.12", cpu="Cascadelake-Server,-svm", need_kvm=False) as lab:
        guest = lab.request("cpuid_instruction")
    good = compare(exp, guest)
    assert good["agree"] == good["compared"]
    bits = dict(qemu_feature_positions())
    bits["sse2"], bits["ss"] = bits["ss"], bits["sse2"]  # two names swapped (SSE2 on, SS off in this model)
    monkeypatch.setattr(qemu_agreement, "qemu_feature_positions", lambda: bits)
    bad = compare(exp, guest)
    assert bad["agree"] < bad["compared"]
