"""Every exercise: unanswered is neither right nor wrong, the right answer passes, a wrong one says what is wrong."""

from __future__ import annotations

import pytest

from cpuidkit.core.hosts import HostProfile
from cpuidkit.ui import exercises as ex

HOST = HostProfile.resolve("sapphire-rapids")

RIGHT = {
    "check_first_toggle": "ok",
    "check_field_position": (7, 0, "ebx", 5),
    "check_owners": {"osxsave": "runtime", "avx2": "passthrough", "xsave_size_enabled": "runtime", "apic": "runtime",
                     "hypervisor": "passthrough"},
    "check_rejections": {"linear width 52": "EINVAL", "MAXPHYADDR 60": "ok", "300 entries": "E2BIG",
                         "TILEDATA without permission": "EPERM", "duplicate leaf 7": "ok"},
    "check_xsave_size": 832,
    "check_xcr0": 0xE7,
    "check_pool_maxphyaddr": 46,
    "check_accepted_but_illegal": HOST.supported_cpuid().set_field("0xd.0.eax[11]", 1),
    "check_kernel_history": {"post_run_identical": "5.17", "sgx_stored_verbatim": "6.4", "lazy_runtime": "6.15"},
    "check_review": {"osxsave", "ospke", "xsave_size_enabled", "xsaves_size_enabled"},
    "check_live_width": "EINVAL",
}

WRONG = {
    "check_first_toggle": ("EINVAL", "kvm_check_cpuid"),
    "check_field_position": ((1, 0, "ecx", 5), "leaf 0x1 is not it"),
    "check_owners": ({"osxsave": "passthrough"}, "osxsave is runtime"),
    "check_rejections": ({"linear width 52": "ok"}, "linear width 52: KVM says EINVAL"),
    "check_xsave_size": (576, "XCR0 = 1 or 3"),
    "check_xcr0": (0x67, "three AVX-512 components"),
    "check_pool_maxphyaddr": (52, "cascade-lake"),
    "check_accepted_but_illegal": (HOST.supported_cpuid().set_field("virt_addr_bits", 50), "KVM rejects it (EINVAL"),
    "check_kernel_history": ({"post_run_identical": "5.16"}, "5.16 refused every post-run SET"),
    "check_review": ({"osxsave", "avx2"}, "not overwritten (KVM keeps the template's value): avx2"),
    "check_live_width": ("ok", "The model says EINVAL"),
}


def test_every_exercise_is_covered():
    assert set(RIGHT) == {n for n in ex.__all__ if n.startswith("check_")}


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_unanswered(name):
    fb = getattr(ex, name)(None)
    assert fb.ok is None and not fb and "Not answered" in fb._repr_markdown_()


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_right_answer(name):
    fb = getattr(ex, name)(RIGHT[name])
    assert fb.ok is True, fb.message


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_says_what_is_wrong(name):
    answer, words = WRONG[name]
    fb = getattr(ex, name)(answer)
    assert fb.ok is False
    assert words in fb.message, fb.message


def test_review_answer_is_what_the_core_overwrites():
    from cpuidkit import check
    from cpuidkit.ui.course import example_template

    table, _ = example_template(HOST)
    out = check(table, host=HOST)
    overwritten = {o.field.name for o in out.fields if o.owner == "runtime"
                   and table.get_field(o.field.name) != o.value}
    assert overwritten == RIGHT["check_review"]
