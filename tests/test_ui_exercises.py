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
    # the template starts from the predicted KVM_GET_SUPPORTED_CPUID (no OSPKE there: KVM never offers it)
    "check_review": {"osxsave", "xsave_size_enabled", "xsaves_size_enabled"},
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


# -- the answer key (issue 13) ---------------------------------------------------------------------------------


def test_every_checker_has_an_answer_function_in_the_key():
    assert {e.check.__name__ for e in ex.EXERCISES} == set(RIGHT)
    assert [e.notebook for e in ex.EXERCISES] == [f"{n:02d}" for n in range(11)]


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.check.__name__)
def test_each_computed_answer_passes_its_own_checker(exercise):
    a = exercise.answer()
    fb = exercise.check(a.value, **exercise.check_kwargs)
    assert fb.ok is True, fb.message
    assert fb.message and a.text


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.check.__name__)
def test_computed_answer_agrees_with_the_answer_written_here(exercise):
    """RIGHT above is written by hand; the answer functions compute theirs from the core: the same answers."""
    a = exercise.answer().value
    assert (set(a) if isinstance(a, frozenset) else a) == RIGHT[exercise.check.__name__]


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.check.__name__)
def test_each_exercise_is_asked_in_its_notebook(exercise):
    from conftest import ROOT

    path = next((ROOT / "notebooks").glob(f"{exercise.notebook}-*.ipynb"))
    assert exercise.check.__name__ in path.read_text()


def test_answer_key_in_docs_is_current():
    from conftest import ROOT

    key = (ROOT / "docs" / "answer-key.md").read_text(encoding="utf-8")
    assert key == ex.answer_key_markdown(), "docs/answer-key.md is stale: run make course-docs"
    for e in ex.EXERCISES:
        assert f"## {e.notebook} · `{e.check.__name__}`" in key
    assert key.count("\nRight: ") == len(ex.EXERCISES)


def test_course_docs_tool_checks_and_writes(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    tool = [sys.executable, str(ROOT / "tools" / "make_course_docs.py")]
    assert subprocess.run([*tool, "--check"], capture_output=True, text=True).returncode == 0
    stale = subprocess.run([*tool, "--check", "--out", str(tmp_path)], capture_output=True, text=True)
    assert stale.returncode == 1 and "stale" in stale.stdout and not list(tmp_path.iterdir())
    assert subprocess.run([*tool, "--out", str(tmp_path)], capture_output=True, text=True).returncode == 0
    assert (tmp_path / "answer-key.md").read_text() == (ROOT / "docs" / "answer-key.md").read_text()
    assert (tmp_path / "call-path.svg").read_text() == (ROOT / "docs" / "call-path.svg").read_text()
