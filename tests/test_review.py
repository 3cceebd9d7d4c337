"""`cpuidkit review`: the report's content, its formats, the committed examples, the kernel-note coverage."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from conftest import DUMPS, ROOT, firecracker_dumps

from cpuidkit._files import read_csv
from cpuidkit.analysis import figures
from cpuidkit.analysis.review import (
    FORMATS,
    REVIEW_CLASSES,
    changing_behaviours,
    notes,
    render,
    render_html,
    render_html_fragment,
    render_json,
    render_markdown,
    review,
    review_class,
)
from cpuidkit.cli.main import main
from cpuidkit.core import kernels
from cpuidkit.core.hosts import HostProfile, builtin_hosts
from cpuidkit.core.kernels import all_behaviour_ids, behaviour_classes
from cpuidkit.core.sources import load
from cpuidkit.errors import InputError
from cpuidkit.live import host_profile

EXAMPLES = ROOT / "docs" / "examples"
SPR_618 = "fingerprint_INTEL_SAPPHIRE_RAPIDS_6.18host.json"


def _fp(name: str):
    return DUMPS / "firecracker" / name


def _make_examples():
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "tools" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- the committed examples ----------------------------------------------------------------------------


def test_committed_examples_are_up_to_date(test_data, tmp_path):
    written = _make_examples().generate(test_data, tmp_path)
    names = sorted(p.name for p in written)
    assert (
        len([n for n in names if n.startswith("fingerprint_") and n.endswith(".md")]) == len(firecracker_dumps()) == 18
    )
    committed = sorted(p.name for p in EXAMPLES.iterdir())
    assert committed == names, "docs/examples differs in its files: run tools/make_examples.py"
    for n in names:
        assert (tmp_path / n).read_text() == (EXAMPLES / n).read_text(), (
            f"docs/examples/{n} is stale: run .venv/bin/python tools/make_examples.py"
        )


def test_examples_carry_no_paths_or_dates():
    for p in EXAMPLES.iterdir():
        text = p.read_text()
        assert str(ROOT) not in text and str(ROOT.parent) not in text
        assert "tests/data" not in text
        assert not re.search(r"\b20\d\d-\d\d-\d\d[T ]\d\d:\d\d", text), p.name


def test_examples_read_sensibly():
    """What we expect of the 18 reviews, from what the fingerprints are (KVM_GET_SUPPORTED_CPUID on real hosts)."""
    for p in sorted(EXAMPLES.glob("fingerprint_*.md")):
        text = p.read_text()
        assert "**KVM_SET_CPUID2: accepted**" in text, p.name
        assert "the template holds their reset values" in text, p.name
        assert "lint: 0 illegal, 0 insane" in text, p.name
        for section in (
            "## 1. KVM's verdict",
            "## 2. Fields KVM owns at run time",
            "## 3. Features beyond",
            "## 4. Lint",
            "## 5. XSAVE",
            "## 6. Physical and linear",
            "## 7. Kernel-version notes",
        ):
            assert section in text, (p.name, section)
        kernel = re.search(r"_(\d+\.\d+)host", p.name)[1]
        assert f"| kernel | {kernel} " in text
    spr510 = (EXAMPLES / "fingerprint_INTEL_SAPPHIRE_RAPIDS_5.10host-on-Xeon-w7-3465X.md").read_text()
    assert "`amx_tile`: this host has it; KVM reports it from 5.17" in spr510
    spr618 = (EXAMPLES / "fingerprint_INTEL_SAPPHIRE_RAPIDS_6.18host-on-Xeon-w7-3465X.md").read_text()
    assert "KVM answers **EPERM** (rule `amx_dynamic_eperm`" in spr618
    html = (EXAMPLES / "fingerprint_INTEL_SAPPHIRE_RAPIDS_6.18host-on-Xeon-w7-3465X.html").read_text()
    assert html.count("<svg ") == 2 and "</html>" in html


# -- the report --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spr():
    host = HostProfile.from_file(DUMPS / "libvirt" / "x86_64-cpuid-Xeon-w7-3465X.xml")
    return review(load(_fp(SPR_618)), host, kernel="6.18", template_name=SPR_618)


def test_review_of_an_amx_template(spr):
    d = spr.data
    assert d["verdict"] == "accepted" and d["verdict_without_permission"] == "rejected"
    assert d["vendor"] == "vmx" and d["supported_cpuid"].startswith("derived")
    assert {x["name"] for x in d["runtime_fields"]} == {
        "osxsave",
        "apic",
        "ospke",
        "xsave_size_enabled",
        "xsaves_size_enabled",
    }
    assert d["beyond"] == [] and d["derived"]["guest_supported_xcr0"] == 0x602E7
    ids = {n["id"] for n in d["kernel_notes"]}
    assert {"amx_dynamic_eperm", "supported_xcr0_mask", "supported_xss", "xss_in_0xd1_ebx"} <= ids
    md = render_markdown(spr)
    assert md.startswith(f"# CPUID review: {SPR_618} on x86_64-cpuid-Xeon-w7-3465X")
    assert "| 18 | amx_tiledata | 8192@2816 | 8192@2816 | same |" in md


def test_runtime_fields_the_template_sets_differently():
    host = builtin_hosts()["cascade-lake"]
    t = host.cpuid.set_field("osxsave", 1).set_field("0xd.0.ebx", 4096)
    r = review(t, host, kernel="6.1", template_name="t.json")
    rows = {x["name"]: x for x in r.data["runtime_fields"]}
    assert rows["osxsave"]["template"] == 1 and rows["osxsave"]["stored"] == 0
    assert rows["xsave_size_enabled"]["template"] == 4096 and rows["xsave_size_enabled"]["stored"] == 576
    md = render_markdown(r)
    assert "KVM already stores other values than the template in `osxsave`, `ospke`, `xsave_size_enabled`" in md
    assert any(f["rule"] == "runtime_owned_value" for f in r.data["lint_findings"])


def test_features_beyond_the_host():
    r = review(builtin_hosts()["cascade-lake"].cpuid, "skylake-client", kernel="6.18", template_name="t")
    assert {"avx512f", "avx512bw"} <= set(r.data["beyond"])
    assert "cpu_caps_intersection" in {n["id"] for n in r.data["kernel_notes"]}
    assert "**" in render_markdown(r).split("## Summary")[1].split("##")[0]


def test_measured_host_uses_kvm_get_supported_cpuid():
    h = builtin_hosts()["live-kvm-epyc"]
    r = review(h.supported.set_field("avx512f", 1), h, kernel="6.18", template_name="t")
    assert r.data["supported_cpuid"] == "measured"
    assert "avx512f" in r.data["beyond"]
    assert "measured: KVM_GET_SUPPORTED_CPUID recorded on this host" in render_markdown(r)


def test_rejected_template():
    t = builtin_hosts()["cascade-lake"].cpuid.set_field("0x80000008.eax[15:8]", 50)
    r = review(t, "cascade-lake", kernel="5.10")
    assert r.data["verdict"] == "rejected" and r.data["errno"] == "EINVAL" and r.data["rule"] == "vaddr_width_values"
    md = render_markdown(r)
    assert "**KVM_SET_CPUID2: rejected with EINVAL** (rule `vaddr_width_values`)" in md
    assert "Source: arch/x86/kvm/cpuid.c kvm_check_cpuid()" in md


def test_html_is_self_contained(spr):
    page = render_html(spr)
    assert page.count("<svg ") == 2 and "<script" not in page and "http://www.w3.org/2000/svg" in page
    assert "<h2>7. Kernel-version notes</h2>" in page and "<code>amx_dynamic_eperm</code>" in page


def test_every_format_renders_and_a_bad_one_is_input_error(spr):
    assert set(FORMATS) == {"markdown", "html", "json"}
    assert render(spr) == render(spr, "markdown") == render_markdown(spr)
    assert render(spr, "html") == render_html(spr)
    assert render(spr, "json") == render_json(spr) and json.loads(render_json(spr)) == spr.data
    with pytest.raises(InputError, match="format must be one of markdown, html, json"):
        render(spr, "pdf")


def test_the_figures_come_from_the_figures_module(spr):
    """One drawing of each figure: the report embeds what cpuidkit.analysis.figures draws, and so does the
    notebook's view of a review (its HTML fragment)."""
    page, fragment = render_html(spr), render_html_fragment(spr)
    assert set(spr.figures) == {"bits", "xsave"}
    for svg in spr.figures.values():
        assert svg.startswith("<svg ") and svg in page and svg in fragment
    host = HostProfile.from_file(DUMPS / "libvirt" / "x86_64-cpuid-Xeon-w7-3465X.xml")
    t = load(_fp(SPR_618))
    d0 = t.get(0xD, 0)
    assert spr.figures["xsave"] == figures.xsave_layout_svg(t, host, d0.eax | d0.edx << 32)


def test_the_notebook_view_is_the_report_body(spr):
    fragment = spr._repr_html_()
    assert fragment == render_html_fragment(spr)
    assert fragment.startswith('<div class="cpuidkit-review">') and fragment.endswith("</div>")
    assert "<body" not in fragment and "<!DOCTYPE" not in fragment and "<script" not in fragment
    assert "<h4>7. Kernel-version notes</h4>" in fragment and "<code>amx_dynamic_eperm</code>" in fragment
    assert spr._repr_markdown_() == str(spr) == render_markdown(spr)


def test_a_pool_adds_the_migration_section():
    t = builtin_hosts()["sapphire-rapids"].supported_cpuid()
    r = review(t, "sapphire-rapids", template_name="t", pool=["cascade-lake", "sapphire-rapids"])
    assert [m["destination"] for m in r.data["pool"]] == ["cascade-lake", "sapphire-rapids"]
    assert r.data["pool"][0]["verdict"] == "blocked" and r.data["pool"][1]["verdict"] != "blocked"
    md = render_markdown(r)
    assert "## 8. Migration to the pool" in md and "| `cascade-lake` | **blocked** |" in md
    assert "migration to the pool: 1 of 2 hosts without a blocker (**blocked**: `cascade-lake`)" in md
    plain = review(t, "sapphire-rapids", template_name="t")
    assert "pool" not in plain.data and "## 8." not in render_markdown(plain)


def test_every_behaviour_has_a_review_class_in_the_data():
    rows = read_csv("kvm-behaviours.csv")
    column: dict[str, set[str]] = {}
    for r in rows:
        column.setdefault(r["id"], set()).add(r["review"])
    assert set(column) == set(all_behaviour_ids())
    for bid, classes in column.items():
        assert len(classes) == 1, f"{bid}: one review class on every row, got {sorted(classes)}"
        (cls,) = classes
        assert cls in REVIEW_CLASSES, f"{bid}: review class {cls!r} is not one of {sorted(REVIEW_CLASSES)}"
        assert review_class(bid) == cls
    assert behaviour_classes() == {bid: next(iter(c)) for bid, c in column.items()}
    assert {review_class(b) for b in changing_behaviours()} <= REVIEW_CLASSES
    assert REVIEW_CLASSES == set(notes.CONDITIONS) | {notes.GENERAL, notes.VMM_CALL}


def _with_review_column(monkeypatch, change: dict[str, str]) -> None:
    """kvm-behaviours.csv as read, with the review column of some ids replaced."""
    rows = [dict(r, review=change.get(r["id"], r["review"])) for r in read_csv("kvm-behaviours.csv")]
    monkeypatch.setattr(kernels, "read_csv", lambda name: rows)
    kernels._behaviours.cache_clear()


def test_the_review_classification_comes_from_the_data(monkeypatch):
    t = load(_fp(SPR_618))

    def notes_of() -> tuple[set[str], set[str], str]:
        r = review(t, "sapphire-rapids", kernel="6.12", template_name="t")
        return {n["id"] for n in r.data["kernel_notes"]}, set(r.data["general_kernel_notes"]), render_markdown(r)

    specific, general, md = notes_of()
    assert "amx_dynamic_eperm" in specific and "post_run_set_cpuid" in general
    assert "get_cpuid2_copies_entries" in changing_behaviours()
    assert "get_cpuid2_copies_entries" not in specific | general
    try:
        _with_review_column(
            monkeypatch,
            {"amx_dynamic_eperm": "general", "post_run_set_cpuid": "vmm_call", "get_cpuid2_copies_entries": "general"},
        )
        specific2, general2, md2 = notes_of()
        assert specific2 == specific - {"amx_dynamic_eperm"}
        assert general2 == general - {"post_run_set_cpuid"} | {"amx_dynamic_eperm", "get_cpuid2_copies_entries"}
        assert md2 != md

        _with_review_column(monkeypatch, {"amx_dynamic_eperm": "sometimes"})
        with pytest.raises(InputError, match="review class 'sometimes' of 'amx_dynamic_eperm' is not one of"):
            notes_of()
        _with_review_column(monkeypatch, {"amx_dynamic_eperm": ""})
        with pytest.raises(InputError, match="every behaviour id needs a class"):
            kernels.all_behaviour_ids()
        rows = read_csv("kvm-behaviours.csv")
        first = next(i for i, r in enumerate(rows) if r["id"] == "amx_dynamic_eperm")
        rows[first] = dict(rows[first], review="amx")
        monkeypatch.setattr(kernels, "read_csv", lambda name: rows)
        kernels._behaviours.cache_clear()
        with pytest.raises(InputError, match="differs from 'amx' on an earlier row"):
            kernels.all_behaviour_ids()
    finally:
        monkeypatch.undo()
        kernels._behaviours.cache_clear()
    assert notes_of() == (specific, general, md)


# -- the command --------------------------------------------------------------------------------------------


def test_cli_markdown_to_stdout(test_data, capsys):
    fp = _fp("fingerprint_AMD_MILAN_6.1host.json")
    host = DUMPS / "libvirt" / "x86_64-cpuid-EPYC-7713-64-Core.xml"
    assert main(["review", str(fp.resolve()), "--host", str(host.resolve()), "--kernel", "6.1"]) == 0
    out = capsys.readouterr().out
    assert "| vendor module | `svm` |" in out
    assert str(test_data) not in out and str(fp.resolve().parent) not in out  # file names only


def test_cli_html_written_atomically(tmp_path):
    out = tmp_path / "r.html"
    out.write_text("old")
    assert main(["review", str(_fp(SPR_618)), "--host", "sapphire-rapids", "--format", "html", "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_cli_json(capsys):
    assert main(["review", "cascade-lake", "--host", "ice-lake", "--format", "json", "--kernel", "6.6"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kernel"] == "6.6" and d["host"] == "ice-lake" and d["verdict"] == "accepted"


@pytest.mark.parametrize(
    "argv",
    [
        ["review", "no-such-file.json"],
        ["review", "cascade-lake", "--host", "no-such-host"],
        ["review", "cascade-lake", "--kernel", "six"],
    ],
)
def test_cli_bad_input_exits_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cpuidkit review:") and "Traceback" not in err


def test_cli_no_permission(capsys):
    t = builtin_hosts()["sapphire-rapids"]
    assert (
        main(["review", "sapphire-rapids", "--host", "sapphire-rapids", "--no-xfeature-permission", "--format", "json"])
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert t.supports_amx and d["verdict"] == "rejected" and d["errno"] == "EPERM"


@pytest.mark.kvm
def test_review_on_the_live_host():
    t = host_profile().supported
    r = review(t, "live", template_name="supported.json")
    assert r.data["supported_cpuid"] == "measured" and r.data["verdict"] == "accepted"
    assert r.data["beyond"] == []  # KVM_GET_SUPPORTED_CPUID is, by definition, all virtualized


# -- one source for XSAVE and for what KVM offers (issue 15) -----------------------------------------------


def _xcr0_claims(r) -> tuple[int | None, int | None]:
    """The XCR0 a guest enables as the summary says it and as section 5 says it (None: no XSAVE state)."""
    summary = next(i for b in r.section("Summary").blocks if b[0] == "ul" for i in b[1] if i.startswith("XSAVE:"))
    sec5 = " ".join(b[1] for b in r.section("5.").blocks if b[0] == "p")
    s = re.search(r"a guest enables XCR0 (0x[0-9a-f]+)", summary)
    x = re.search(r"a guest OS enables (0x[0-9a-f]+)", sec5)
    assert bool(s) != ("none" in summary) and bool(x) != ("no XSAVE state" in sec5), (summary, sec5)
    return (int(s[1], 16) if s else None), (int(x[1], 16) if x else None)


@pytest.mark.parametrize("dump", ["Opteron-2350", "Xeon-w7-3465X", "EPYC-7502-32-Core", "Core-i7-2600"])
@pytest.mark.parametrize("host", ["recorded-xeon", "epyc-rome", "sapphire-rapids"])
def test_summary_and_xsave_section_say_the_same(dump, host):
    """A K10 without XSAVE on a pvm host: the module appends 0xD, so both say XCR0 0xe7; elsewhere both say none."""
    from live_expect import recorded_host

    h = recorded_host("xeon")[0] if host == "recorded-xeon" else host
    r = review(load(DUMPS / "libvirt" / f"x86_64-cpuid-{dump}.xml"), h, kernel="6.18", template_name=dump)
    said = _xcr0_claims(r)
    assert said[0] == said[1], said
    if dump == "Opteron-2350":
        assert said[0] == (0xE7 if host == "recorded-xeon" else None)
        assert r.data["derived"]["guest_supported_xcr0"] == (0xE7 if host == "recorded-xeon" else 0)


def test_kvm_offers_only_what_the_measured_table_has():
    """Section 7 on a host with a measured KVM_GET_SUPPORTED_CPUID: a field is said to be offered only when that
    table has it (the recorded Xeon's CPU has AMX, its KVM does not offer it)."""
    from live_expect import recorded_host

    h = recorded_host("xeon")[0]
    assert h.supports_amx and h.supported is not None and not h.supported.get_field("amx_tile")
    r = review(load(DUMPS / "libvirt" / "x86_64-cpuid-Opteron-2350.xml"), h, kernel="6.18", template_name="k10")
    notes = r.data["history_notes"]
    offered = [n for n in notes if "reports it where the host has it" in n]
    assert not any("amx" in n for n in offered), offered
    for n in offered:
        name = n.split("`")[1]
        assert name.startswith("0x") or h.supported.get_field(name), n
    assert any(n.startswith("`amx_tile`: this host's CPU has it, but KVM does not offer it here") for n in notes)
