"""Which model answers a real kernel confirmed (cpuidkit.core.confirmed, data/kernel-runs.csv), and that every
surface showing a model answer says so: the Lab's verdict panel, `cpuidkit check`, `cpuidkit review` and the
review report, notebook 08's post-run table."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import subprocess
import sys

import pytest

from conftest import ROOT
from cpuidkit._files import read_csv
from cpuidkit.analysis.kernel_answers import load_records
from cpuidkit.analysis.review import render, review
from cpuidkit.core import confirmed
from cpuidkit.core.confirmed import confirmation, kernel_runs
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import MODELLED_KERNELS
from cpuidkit.core.sources import save
from cpuidkit.errors import InputError

ROWS = read_csv("kernel-runs.csv")  # the test reads the table itself, not through the code under test
RUN_ROWS = [r for r in ROWS if r["backend"] != "none"]
NEVER_RUN = {r["vendor"]: r["note"] for r in ROWS if r["backend"] == "none"}


def _fresh(monkeypatch, rows: list[dict]) -> None:
    """Make cpuidkit.core.confirmed read ``rows`` instead of the data file."""
    monkeypatch.setattr(confirmed, "read_csv", lambda name: rows)
    confirmed._table.cache_clear()
    confirmed._confirmation.cache_clear()


@pytest.fixture
def table_rows(monkeypatch):
    yield lambda rows: _fresh(monkeypatch, rows)
    confirmed._table.cache_clear()
    confirmed._confirmation.cache_clear()


# -- the function and its table ---------------------------------------------------------------------------


def test_the_table_has_the_pairs_the_course_names():
    pairs = {(r["series"], r["vendor"], r["backend"]) for r in RUN_ROWS}
    assert {("6.1", "svm", "lab"), ("6.12", "svm", "lab"), ("6.18", "pvm", "live")} <= pairs
    assert "vmx" in NEVER_RUN and "VMX" in NEVER_RUN["vmx"]


def test_every_real_kernel_the_course_shows_has_a_run_row():
    """Notebook 08 shows recorded answers of real kernels; each of those (series, vendor) pairs was run."""
    runs = {(r.series, r.vendor) for r in kernel_runs()}
    for rec in load_records():
        assert (rec.series, rec.vendor) in runs, rec.label


@pytest.mark.parametrize("row", RUN_ROWS, ids=lambda r: f"{r['series']}/{r['vendor']}")
def test_a_run_that_agreed_everywhere_is_confirmed_with_its_build(row):
    c = confirmation(row["series"], row["vendor"])
    all_agreed = row["agreed"] == row["cases"] and row["scripted_agreed"] == row["scripted"]
    assert c.status == ("confirmed" if all_agreed else "disagreed")
    assert c.run is not None and c.run.build == row["build"]
    assert row["build"] in c.badge and f"{row['series']}/{row['vendor']}" in c.badge
    assert row["compared"] in c.text and row["tool"] in c.text
    assert c.as_dict()["cases"] == int(row["cases"])


def test_point_releases_share_their_series_run():
    assert confirmation("6.1.170", "svm") == confirmation("6.1", "svm")
    assert confirmation("6.18.44-fc-v1147", "pvm").status == "confirmed"


@pytest.mark.parametrize("kernel", ["5.10", "6.1", "6.12", "6.18"])
def test_vmx_is_read_from_source_only_and_says_why(kernel):
    c = confirmation(kernel, "vmx")
    assert c.status == "source" and c.run is None
    assert c.badge.startswith("read from source only") and NEVER_RUN["vmx"] in c.badge
    assert c.short == "source only"


def test_versions_never_run_are_read_from_source():
    ran = {(r["series"], r["vendor"]) for r in RUN_ROWS}
    for k in MODELLED_KERNELS:
        for vendor in ("svm", "pvm"):
            c = confirmation(k, vendor)
            assert (c.status != "source") == ((k, vendor) in ran), (k, vendor)
            if c.status == "source":
                assert f"no {k} kernel run with {vendor}" in c.badge


def test_a_run_where_the_model_missed_cases_is_never_confirmed(table_rows):
    row = dict(RUN_ROWS[0], agreed=str(int(RUN_ROWS[0]["cases"]) - 3))
    table_rows([row])
    c = confirmation(row["series"], row["vendor"])
    assert c.status == "disagreed" and not c.confirmed
    assert "DISAGREED" in c.badge and "DISAGREED" in c.short


@pytest.mark.parametrize(
    "change, message",
    [
        ({"backend": "qemu"}, "backend must be one of"),
        ({"cases": "many"}, "cases must be a whole number"),
        ({"agreed": "20000"}, "cannot exceed"),
        ({"series": "six"}, "series must look like"),
        ({"vendor": ""}, "vendor is empty"),
    ],
)
def test_a_bad_row_is_refused_naming_the_row(table_rows, change, message):
    table_rows([RUN_ROWS[0], dict(RUN_ROWS[1], **change)])
    with pytest.raises(InputError) as e:
        confirmation("6.1", "svm")
    assert message in str(e.value) and "row 2" in str(e.value)


def test_a_pair_with_two_rows_is_refused(table_rows):
    table_rows([RUN_ROWS[0], RUN_ROWS[0]])
    with pytest.raises(InputError, match="two rows"):
        kernel_runs()


# -- tools/update_kernel_runs.py -----------------------------------------------------------------------------------


def _tool():
    spec = importlib.util.spec_from_file_location("update_kernel_runs", ROOT / "tools" / "update_kernel_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_update_tool_rewrites_measured_rows_and_keeps_the_rest():
    tool = _tool()
    text = (ROOT / "data" / "kernel-runs.csv").read_text(encoding="utf-8")
    results = {
        "lab_agreement": {
            "6.12": {"package": "linux-image-6.12.999+deb12-amd64", "package_version": "6.12.999-1", "kernel": "6.12",
                     "vendor": "svm", "seed": 1, "cases": 300, "agreed": 299, "scripted": 40, "scripted_agreed": 40},
        },
        "agreement_cases": 500, "agreement_agreed": 500, "agreement_scripted": 40, "agreement_scripted_agreed": 40,
        "agreement_kernel": "6.15", "agreement_vendor": "pvm", "agreement_release": "6.15.2-test",
    }  # fmt: skip
    new, changes = tool.merge(text, tool.rows_from_results(results, "2030-01-01"))
    assert [ln for ln in new.splitlines() if ln.startswith("#")] == [
        ln for ln in text.splitlines() if ln.startswith("#")
    ]
    rows = list(csv.DictReader(io.StringIO("".join(ln + "\n" for ln in new.splitlines() if not ln.startswith("#")))))
    by = {(r["series"], r["vendor"], r["backend"]): r for r in rows}
    assert by[("6.12", "svm", "lab")]["build"] == "Debian 6.12.999-1" and by[("6.12", "svm", "lab")]["agreed"] == "299"
    assert by[("6.15", "pvm", "live")]["build"] == "6.15.2-test"  # a new pair is added
    assert by[("6.1", "svm", "lab")] == next(r for r in RUN_ROWS if r["series"] == "6.1")  # not measured: kept
    assert ("", "vmx", "none") in by and rows[-1]["backend"] == "none"  # the "never run" rows stay last
    assert len(changes) == 2
    again, changes = tool.merge(new, tool.rows_from_results(results, "2031-01-01"))
    assert changes == [] and again.count("\n") == new.count("\n")  # only the date differs: no change


# -- the surfaces ------------------------------------------------------------------------------------------------


def test_verdict_panel_shows_the_line_and_follows_kernel_and_vendor():
    pytest.importorskip("ipywidgets")
    from cpuidkit.ui import Lab
    from cpuidkit.ui.widgets import VerdictPanel

    lab = Lab("epyc-rome", kernel="6.1", vendor="svm")
    panel = VerdictPanel(lab)
    assert confirmation("6.1", "svm").badge in panel.text
    assert "cpuidkit-confirmation-confirmed" in panel.value
    lab.update(vendor="vmx")
    assert confirmation("6.1", "vmx").badge in panel.text and "cpuidkit-confirmation-source" in panel.value
    lab.update(vendor="svm", kernel="6.4")
    assert "read from source only: no 6.4 kernel run with svm" in panel.text
    assert not lab.expected().mismatches()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cpuidkit", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def rome_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("confirmed") / "rome.json"
    save(HostProfile.builtin("epyc-rome").supported_cpuid(), path)
    return str(path)


@pytest.mark.parametrize("kernel, vendor", [("6.12", "svm"), ("6.12", "vmx"), ("5.15", "svm")])
def test_cli_check_says_it_in_text_markdown_and_json(rome_table, kernel, vendor):
    c = confirmation(kernel, vendor)
    common = ("check", rome_table, "--host", "epyc-rome", "--kernel", kernel, "--vendor", vendor)
    for fmt in ("table", "markdown"):
        r = _run(*common, "--format", fmt)
        assert r.returncode == 0, r.stderr
        assert c.badge in r.stdout.splitlines()[2]  # right under "kernel …, vendor …, host …"
    r = _run(*common, "--format", "json")
    d = json.loads(r.stdout)
    assert d["confirmation"]["status"] == c.status and d["confirmation"]["badge"] == c.badge


@pytest.mark.parametrize("kernel, vendor", [("6.1", "svm"), ("6.18", "vmx")])
def test_review_report_header_and_data(kernel, vendor):
    host = HostProfile.builtin("epyc-rome")
    r = review(host.supported_cpuid(), host, kernel=kernel, vendor=vendor)
    c = confirmation(kernel, vendor)
    assert ("real kernel", c.badge) in r.header
    assert r.data["confirmation"]["status"] == c.status
    assert f"| real kernel | {c.badge} |" in render(r, "markdown")
    assert json.loads(render(r, "json"))["confirmation"]["badge"] == c.badge


def test_cli_review_says_it(rome_table):
    r = _run("review", rome_table, "--host", "epyc-rome", "--kernel", "6.12", "--vendor", "svm")
    assert r.returncode == 0, r.stderr
    assert confirmation("6.12", "svm").badge in r.stdout


def test_post_run_table_of_notebook_08_has_the_column():
    pytest.importorskip("pandas")
    from cpuidkit.ui.course import post_run_across_kernels

    for vendor in ("vmx", "svm"):
        rows = post_run_across_kernels("epyc-rome", vendor=vendor)
        assert {r["kernel"]: r["real kernel"] for r in rows} == {
            r["kernel"]: confirmation(r["kernel"], vendor).short for r in rows
        }
    assert any(r["real kernel"].startswith("confirmed") for r in post_run_across_kernels("epyc-rome", vendor="svm"))
