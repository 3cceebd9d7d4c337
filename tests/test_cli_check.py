"""`cpuidkit check` and `cpuidkit live …`: JSON shape, exit codes, states, and answers for unseen tables."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from conftest import ROOT
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.sources import save

SPR = HostProfile.builtin("sapphire-rapids")
KEYS = {"verdict", "errno", "rule", "explanation", "source", "stored", "fields", "derived", "lint"}
DERIVED = {"maxphyaddr", "reserved_gpa_bits", "guest_supported_xcr0", "cr4_reserved_bits"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cpuidkit", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture
def tables(tmp_path):
    good = tmp_path / "good.json"
    bad = tmp_path / "bad.json"
    save(SPR.supported_cpuid(), good)
    save(SPR.supported_cpuid().set_field("virt_addr_bits", 50), bad)
    return good, bad


def test_json_one_object_per_table_in_order(tables):
    good, bad = tables
    r = run("check", str(good), str(bad), str(good), "--host", "sapphire-rapids", "--format", "json")
    assert r.returncode == 1, r.stderr  # one table rejected
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [d["verdict"] for d in lines] == ["accepted", "rejected", "accepted"]
    for d in lines:
        assert KEYS <= set(d)
        assert DERIVED <= set(d["derived"])
        assert all({"name", "value", "owner", "driver"} <= set(f) for f in d["fields"])
    rej = lines[1]
    assert rej["errno"] == "EINVAL" and rej["rule"] == "vaddr_width_values"
    assert "kvm_check_cpuid" in rej["source"] and "50" in rej["explanation"]
    assert lines[0]["errno"] is None and lines[0]["stored"][0]["function"] == 0


def test_exit_codes(tables, tmp_path):
    good, _ = tables
    assert run("check", str(good), "--host", "sapphire-rapids").returncode == 0
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2")
    r = run("check", str(good), str(junk))
    assert r.returncode == 2 and str(junk) in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""  # bad input is found before any answer is printed
    r = run("check", str(good), "--host", "no-such-host")
    assert r.returncode == 2 and "built-in" in r.stderr
    r = run("check", str(good), "--kernel", "banana")
    assert r.returncode == 2 and "kernel version" in r.stderr


def test_markdown_and_table_formats(tables):
    good, bad = tables
    md = run("check", str(bad), "--format", "markdown").stdout
    assert md.startswith("## ") and "REJECTED (EINVAL" in md
    md = run("check", str(good), "--format", "markdown").stdout
    assert "ACCEPTED" in md and "| field | value | owner | driver |" in md and "| osxsave |" in md
    txt = run("check", str(good)).stdout
    assert "ACCEPTED" in txt and "CR4.OSXSAVE" in txt


def test_state_file_drives_runtime_fields_and_the_post_run_rule(tables, tmp_path):
    good, _ = tables
    full = SPR.supported_cpuid().get(0xD, 0)
    xcr0 = full.eax | full.edx << 32
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"cr4": 1 << 18, "xcr0": hex(xcr0), "apic_base": 0xFEE00000}))
    d = json.loads(run("check", str(good), "--host", "sapphire-rapids", "--format", "json", "--state", str(state)).stdout)
    f = {x["name"]: x for x in d["fields"]}
    assert f["osxsave"]["value"] == 1 and f["apic"]["value"] == 0
    # the size for the full supported XCR0 is what the real CPU reports in 0xD.0 ECX
    assert f["xsave_size_enabled"]["value"] == SPR.cpuid.get(0xD, 0).ecx or xcr0 != SPR.xcr0_mask
    # after run, a different table is refused and the previous one stays stored
    prev = json.loads(good.read_text())
    state.write_text(json.dumps({"has_run": True, "previous": prev}))
    r = run("check", str(tables[1]), "--host", "sapphire-rapids", "--format", "json", "--state", str(state))
    d = json.loads(r.stdout)
    assert r.returncode == 1 and d["errno"] == "EINVAL" and d["rule"] == "post_run_set_cpuid"
    for kernel, verdict in (("5.15", "accepted"), ("5.16", "rejected")):
        state.write_text(json.dumps({"has_run": True, "previous": prev}))
        d = json.loads(run("check", str(good), "--kernel", kernel, "--host", "sapphire-rapids", "--format", "json",
                           "--state", str(state)).stdout)
        assert d["verdict"] == verdict, kernel


def test_bad_state_file_is_a_clear_error(tables, tmp_path):
    good, _ = tables
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"cr4": "lots"}))
    r = run("check", str(good), "--state", str(state))
    assert r.returncode == 2 and "cr4 must be a number" in r.stderr
    state.write_text(json.dumps({"colour": 1}))
    r = run("check", str(good), "--state", str(state))
    assert r.returncode == 2 and "unknown state key" in r.stderr


@pytest.mark.kvm
def test_unseen_tables_get_the_real_kernels_answer(tmp_path):
    """Seeded random tables nobody wrote down: `cpuidkit check --host live` against KVM_SET_CPUID2 itself."""
    from cpuidkit.errors import KvmError
    from cpuidkit.analysis.agreement import _mutate_table
    from cpuidkit.live import LiveVcpu, supported_cpuid

    base = supported_cpuid()
    rng = random.Random(77)
    paths, truth = [], []
    for i in range(40):
        t = _mutate_table(rng, base)
        p = tmp_path / f"t{i}.json"
        save(t, p)
        paths.append(str(p))
        with LiveVcpu() as lv:
            try:
                lv.set_cpuid(t)
                truth.append(None)
            except KvmError as e:
                truth.append(e.errno_name)
        vendor, kernel = lv.vendor, lv.kernel
    r = run("check", *paths, "--host", "live", "--vendor", vendor, "--kernel", kernel, "--format", "json")
    got = [json.loads(ln)["errno"] for ln in r.stdout.splitlines()]
    assert got == truth
    assert len(set(truth)) > 1  # the sample holds both accepted and rejected tables


@pytest.mark.kvm
def test_live_supported_and_live_check(tmp_path):
    out = tmp_path / "sup.json"
    r = run("live", "supported", "-o", str(out))
    assert r.returncode == 0, r.stderr
    from cpuidkit.live import supported_cpuid
    from cpuidkit.core.sources import load

    mine, again = load(out), supported_cpuid()
    # KVM fills the APIC IDs (1.EBX[31:24], 0xB/0x1F EDX) from the CPU the calling process runs on: mask them
    def norm(t):
        t = t.set_field("1.ebx[31:24]", 0) if t.get(1) else t
        from cpuidkit import CpuidTable

        return CpuidTable(e.replace(edx=0) if e.function in (0xB, 0x1F, 0x8000001E) else e for e in t)

    assert norm(mine) == norm(again)
    bad = tmp_path / "bad.json"
    save(load(out).set_field("virt_addr_bits", 50), bad)
    r = run("live", "check", str(out), str(bad), "--format", "json")
    rows = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert r.returncode == 1
    assert [x["kernel"]["errno"] for x in rows] == [None, "EINVAL"]
    assert all(x["errno_agrees"] for x in rows)
    assert rows[0]["stored_differences"] == []  # model and kernel store the same table
