"""Notebook 08's real kernels: the recorded answers (data/kernel-answers.json) against the model, the 6.1
GET_CPUID2 ``nent`` quirk, the side-by-side table, and (marked ``lab`` / ``kvm``) the same questions asked of
the lab kernels and /dev/kvm now.

The recording is the kernels' answer, with the host each ran on: the model, asked now for that release,
vendor module and host, must give the same errno at every step, the same read-backs and the same stored
table (every register, but what the pvm module owns).  Without QEMU or /dev/kvm this is the model's
regression test against real kernels."""

from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT
from cpuidkit.analysis.kernel_answers import (
    NENT_ASKED,
    QUESTIONS,
    Answer,
    ask_lab,
    ask_live,
    differences,
    load_records,
    save_records,
)
from cpuidkit.core.kernels import kernel_profile
from cpuidkit.errors import InputError

RECORDS = load_records()
BY_LABEL = {r.label: r for r in RECORDS}
DOC = json.loads((ROOT / "data" / "kernel-answers.json").read_text(encoding="utf-8"))


def test_the_recording_holds_6_1_6_12_and_this_machines_kernel_each_naming_its_build():
    assert {"6.1/svm", "6.12/svm"} <= set(BY_LABEL)
    assert any(r.backend == "live" for r in RECORDS)
    for k in DOC["kernels"]:
        assert k["recorded"] and set(k["answers"]) == set(QUESTIONS)
        if k["backend"] == "lab":
            # the exact Debian package and version, and the point release the model is asked for
            assert k["package"].startswith(f"linux-image-{k['series']}.") and k["package_version"]
            assert k["kernel"] == k["package_version"].split("-")[0] and k["build"] == f"Debian {k['package_version']}"
        else:
            assert k["kernel_release"].startswith(k["kernel"])


@pytest.mark.parametrize("name", list(QUESTIONS))
@pytest.mark.parametrize("label", sorted(BY_LABEL))
def test_the_model_gives_every_recorded_kernel_answer(label, name):
    r = BY_LABEL[label]
    assert differences(r.model_answer(name), r.answers[name], r.masks()) == []


def test_the_6_1_kernel_leaves_nent_as_passed_and_get_cpuid_reads_the_real_entries():
    """Debian 6.1: KVM_GET_CPUID2 with room for 256 answers 256, but holds far fewer; LabVcpu.get_cpuid()
    (LiveVcpu in the guest) returned exactly the entries held.  6.12 and the live kernel report the count."""
    for label, r in BY_LABEL.items():
        a = r.answers["nent"]
        (nent, errno_name), held = a.probes[0], len(a.final)
        assert errno_name is None and 0 < held < NENT_ASKED
        if r.backend == "lab":  # kvm_amd holds the table it was set with (the pvm module drops a few entries)
            assert len(r.host.supported) == held
        expected = NENT_ASKED if r.series == "6.1" else held
        assert nent == expected, label
        # the model predicts it for that release
        assert r.model_answer("nent").probes[0] == (expected, None)


def test_maxphyaddr_below_32_refuses_sregs_before_6_13_only():
    for label, r in BY_LABEL.items():
        set_errno, sregs_errno = r.answers["maxphyaddr31"].errnos
        assert set_errno is None
        before_6_13 = not kernel_profile(r.kernel).flag("apic_base_unchanged_noop")
        assert sregs_errno == ("EINVAL" if before_6_13 else None), label


def test_a_changed_answer_is_a_disagreement():
    """The comparison can fail: a kernel answer changed in a step, a read-back or a register is caught."""
    r = BY_LABEL["6.1/svm"]
    a = r.answers["maxphyaddr31"]
    model = r.model_answer("maxphyaddr31")
    assert differences(model, Answer((None, None), a.probes, a.final))  # SREGS accepted instead of EINVAL
    assert differences(model, Answer(a.errnos, ((30, None),), a.final))
    e = a.final[0]
    assert differences(model, Answer(a.errnos, a.probes, a.final.replace_at(0, e.replace(ebx=e.ebx ^ 1))))


def test_the_recording_round_trips_byte_for_byte(tmp_path):
    out = save_records(load_records(), tmp_path / "again.json", "2000-01-01")  # records keep their own dates
    assert out.read_text(encoding="utf-8") == (ROOT / "data" / "kernel-answers.json").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(format=99), "format"),
        (lambda d: d["kernels"][0]["answers"].update(bogus={}), "unknown question"),
        (lambda d: d["kernels"][1]["host"].pop("supported"), r"kernels\[1\]"),
        (lambda d: d["kernels"][0]["answers"]["nent"]["final"][0].pop(), "7 strings"),
    ],
)
def test_a_damaged_recording_is_refused_saying_where(tmp_path, change, message):
    doc = json.loads(json.dumps(DOC))
    change(doc)
    p = tmp_path / "kernel-answers.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=message):
        load_records(p)


# -- what notebook 08 shows --------------------------------------------------------------------------------


def test_side_by_side_shows_model_and_kernel_for_each_and_marks_a_disagreement():
    pytest.importorskip("ipywidgets")
    from cpuidkit.ui.kernel_answers import SideBySide, same_question

    s = same_question("maxphyaddr31", ask_now=False)
    assert [r.label for r in s.records] == [r.label for r in RECORDS]
    sregs = next(row for row in s.rows() if row["asked"].startswith("KVM_SET_SREGS"))
    assert sregs["6.1/svm kernel"] == "EINVAL" == sregs["6.1/svm model"]
    assert all(s.agrees(r.label) for r in RECORDS)
    html = s._repr_html_()
    for r in RECORDS:
        assert r.build in s.source_line(r) and r.when in html
    # a record whose kernel answered otherwise: the table says so
    r = load_records()[0]
    a = r.answers["maxphyaddr31"]
    r.answers["maxphyaddr31"] = Answer((a.errnos[0], None), a.probes, a.final)
    bad = SideBySide("maxphyaddr31", [r])
    assert not bad.agrees(r.label) and "DISAGREES" in bad._repr_html_() and "font-weight:bold" in bad._repr_html_()


def test_nent_across_kernels_follows_the_rule_and_shows_the_real_kernels():
    pytest.importorskip("ipywidgets")
    from cpuidkit.ui.kernel_answers import nent_across_kernels

    rows = {r["kernel"]: r for r in nent_across_kernels(RECORDS)}
    assert {"6.4", "6.5"} <= set(rows)  # the edge of get_cpuid2_nent_on_success is shown
    assert rows["6.4"]["model: nent"] == NENT_ASKED
    assert rows["6.5"]["model: nent"] == rows["6.5"]["model: entries held"] < NENT_ASKED
    for r in RECORDS:
        row = rows[r.series]
        assert row["kernel: nent"] == r.answers["nent"].probes[0][0] == row["model: nent"]
        assert row["kernel: entries held"] == len(r.answers["nent"].final)


def test_bisection_finds_the_entries_a_6_1_kernel_holds():
    pytest.importorskip("ipywidgets")
    from cpuidkit.ui.kernel_answers import nent_by_bisection

    held = len(BY_LABEL["6.1/svm"].answers["nent"].final)
    rows = nent_by_bisection("6.1", RECORDS)
    assert rows[0]["kernel answers"] == f"ok, nent = {NENT_ASKED}"
    assert 2 <= len(rows) <= 10 and f"{held} entries held" in rows[-1]["so"]
    accepted = [r["nent asked"] for r in rows if r["kernel answers"].startswith("ok")]
    refused = [r["nent asked"] for r in rows if r["kernel answers"] == "E2BIG"]
    assert min(accepted) == held and max(refused) == held - 1
    assert len(nent_by_bisection("6.12", RECORDS)) == 1  # 6.12 reports the count


def test_the_notebook_panel_never_boots_qemu_unless_asked(monkeypatch):
    pytest.importorskip("ipywidgets")
    from cpuidkit.ui import kernel_answers as ka

    def no_boot(*a, **k):
        raise AssertionError("the panel booted QEMU without being asked")

    monkeypatch.setattr(ka, "KernelLab", no_boot)
    monkeypatch.setattr(ka, "ask_live", no_boot)
    monkeypatch.delenv(ka.ASK_NOW_ENV, raising=False)
    panel = ka.side_by_side_panel("nent")
    assert "recorded" in panel.children[1].value and panel.result.records[0].when.startswith("recorded")
    # the button (or CPUIDKIT_ASK_KERNELS=1) asks: here each attempt fails, and the recorded answers stay
    asked: list[str] = []
    monkeypatch.setattr(ka, "_ask_lab", lambda s, log=None: asked.append(s))
    monkeypatch.setattr(ka, "_ask_live", lambda: asked.append("live"))
    panel.children[2].children[0].click()
    assert asked == ["6.1", "6.12", "live"] and len(panel.result.records) == len(RECORDS)
    monkeypatch.setenv(ka.ASK_NOW_ENV, "1")
    assert len(ka.kernel_records()) == len(RECORDS) and asked[3:] == ["6.1", "6.12", "live"]


# -- asked now: the lab kernels and /dev/kvm ---------------------------------------------------------------------


def _same_as_recorded(fresh, recorded) -> None:
    for q in QUESTIONS:
        now, then = fresh.answers[q], recorded.answers[q]
        assert now.errnos == then.errnos and now.probes == then.probes, (fresh.label, q)
        if fresh.backend == "live":  # the host's CPUID names the CPU the process ran on (APIC IDs): entries only
            assert [e.key() for e in now.final] == [e.key() for e in then.final], (fresh.label, q)
        elif fresh.build == recorded.build:  # the same build, the same QEMU CPU model: the same table
            assert differences(now, then, fresh.masks()) == [], (fresh.label, q)


@pytest.mark.lab
def test_a_lab_kernel_asked_now_gives_the_recorded_answers_and_the_models(lab):
    r = ask_lab(lab)
    assert r.details["package_version"] == lab.package_version and r.kernel == lab.package_version.split("-")[0]
    for q in QUESTIONS:
        assert differences(r.model_answer(q), r.answers[q], r.masks()) == [], q
    _same_as_recorded(r, BY_LABEL[r.label])


@pytest.mark.kvm
def test_this_machine_asked_now_gives_the_recorded_answers_and_the_models():
    r = ask_live()
    for q in QUESTIONS:
        assert differences(r.model_answer(q), r.answers[q], r.masks()) == [], q
    recorded = next((x for x in RECORDS if x.backend == "live" and x.label == r.label), None)
    if recorded is None:
        pytest.skip(f"no recording of a {r.label} kernel (this machine runs {r.build})")
    _same_as_recorded(r, recorded)


@pytest.mark.lab
@pytest.mark.slow
def test_notebook_08_asks_the_real_kernels_when_told_to():
    """CPUIDKIT_ASK_KERNELS=1: the notebook boots the lab kernels and shows their answers as asked now."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import nbformat

    from test_notebooks import _errors, _execute_one, _text

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        doc, _ = pool.submit(_execute_one, "08-kernel-versions.ipynb", {"CPUIDKIT_ASK_KERNELS": "1"}).result()
    nb = nbformat.reads(doc, as_version=4)
    assert _errors(nb) == ([], [])
    widgets = json.dumps(nb.metadata.get("widgets", {}))
    text = _text(nb) + widgets
    assert "asked now" in text and "model agrees" in text and "DISAGREES" not in text
    assert os.environ.get("CPUIDKIT_ASK_KERNELS") is None  # the worker's environment stayed in the worker
