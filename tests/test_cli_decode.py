"""`cpuidkit decode`: table and JSON output, exit codes, one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from conftest import DUMPS, LIVE_DATA, ROOT, all_dumps
from cpuidkit.cli.main import main as cli_main
from cpuidkit.core.catalog import catalog, qemu_feature_rows
from cpuidkit.core.sources import load
from test_catalog import _kcpuid_rows


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cpuidkit", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("path", all_dumps(), ids=lambda p: p.name)
def test_decode_json_works_on_every_real_dump(path):
    from cpuidkit.cli.main import main
    import contextlib, io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["decode", str(path), "--format", "json"]) == 0
    doc = json.loads(buf.getvalue())
    table = load(path)
    assert [e["function"] for e in doc["entries"]] == [e.function for e in table]
    assert doc["features"] == catalog().features(table)
    rows = set(qemu_feature_rows())
    for f in doc["fields"]:
        assert set(f) == {"leaf", "subleaf", "register", "bits", "name", "qemu", "value"}
        if f["qemu"] is not None:  # the catalog's QEMU column names this very bit
            assert (f["qemu"], (f["leaf"], f["subleaf"], f["register"], int(f["bits"]))) in rows
    # every reported field value is really in the registers
    for f in doc["fields"][:200]:
        hi, _, lo = f["bits"].partition(":")
        lo = lo or hi
        reg = table.get(f["leaf"], f["subleaf"]).reg(f["register"])
        assert (reg >> int(lo)) & ((1 << (int(hi) - int(lo) + 1)) - 1) == f["value"]


def test_decode_table_output_for_people():
    r = run("decode", str(LIVE_DATA / "host-cpuid.json"))
    assert r.returncode == 0, r.stderr
    assert "61 entries, vendor AuthenticAMD" in r.stdout
    assert "features:" in r.stdout and " avx2" in r.stdout


def test_decode_bad_input_exits_2_with_one_line(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('[{"function": 1}]')
    r = run("decode", str(f))
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert str(f) in r.stderr and "missing register(s)" in r.stderr


def test_decode_missing_file_and_bad_usage():
    r = run("decode", "/nonexistent/cpu.json")
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    r = run("decode")
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.mark.parametrize("form", ["kvm-json", "cpuid-raw"])
def test_decode_of_unseen_tables_gives_the_linux_names_of_the_set_bits(form, tmp_path):
    """Random registers in leaves 1, 7 and 0x80000001, written as a file, decoded by the CLI:
    exactly the Linux names (from Linux's kcpuid table, independent of our catalog) of the set bits."""
    import contextlib
    import io
    import random

    from cpuidkit import CpuidEntry, CpuidTable
    from cpuidkit.cli.main import main
    from cpuidkit.core.sources import dumps
    from test_catalog import ORACLE_ALLOWANCE, ORACLE_LEAVES, _oracle_flags

    oracle = _oracle_flags()
    rng = random.Random(4242)
    for n in range(60):
        entries, expected = [], set()
        for leaf in ORACLE_LEAVES:
            regs = {r: rng.getrandbits(32) for r in ("eax", "ebx", "ecx", "edx")}
            for l, r, b in ORACLE_ALLOWANCE:
                if l == leaf:
                    regs[r] &= ~(1 << b)
            entries.append(CpuidEntry(leaf, 0, 1 if leaf == 7 else 0, **regs))
            expected |= {name for (l, r, b), name in oracle.items() if l == leaf and regs[r] >> b & 1}
        path = tmp_path / f"t{n}.txt"
        path.write_text(dumps(CpuidTable(entries), form))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["decode", str(path), "--format", "json"]) == 0
        got = set(json.loads(buf.getvalue())["features"])
        assert got == expected, (form, n, sorted(got ^ expected))


def _decode_json(path) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(["decode", str(path), "--format", "json"]) == 0
    return json.loads(buf.getvalue())


@pytest.mark.parametrize("path", all_dumps(), ids=lambda p: p.name)
def test_decode_json_carries_the_strings_of_every_real_dump(path):
    doc = _decode_json(path)
    table = load(path)
    assert doc["strings"] == catalog().strings(table)
    assert doc["strings"]["vendor"] == table.vendor
    # every leaf of the dump that kcpuid names has decoded fields (docs/catalog.md's coverage)
    kleaves = {k.leaf for k in _kcpuid_rows()} & set(table.functions())
    assert kleaves <= {f["leaf"] for f in doc["fields"]}


def test_decode_json_names_caches_topology_and_svm_field_by_field():
    doc = _decode_json(DUMPS / "libvirt" / "x86_64-cpuid-EPYC-9334-32-Core.xml")
    assert doc["strings"]["brand"] == "AMD EPYC 9334 32-Core Processor                "  # AMD pads with blanks
    assert doc["strings"]["vendor"] == doc["strings"]["ext_vendor"] == "AuthenticAMD"
    by = {(f["name"], f["subleaf"]): f["value"] for f in doc["fields"]}
    # 0x8000001D: four caches (raw register values eax=0x..4121/22/43, 0x0003c163), one entry per subleaf
    assert [by[("amd_cache_level", s)] for s in range(4)] == [1, 1, 2, 3]
    assert [by[("amd_cache_type", s)] for s in range(4)] == [1, 2, 3, 3]
    assert by[("amd_cache_nways", 3)] + 1 == 16 and by[("amd_cache_nsets", 3)] + 1 == 32768
    assert by[("amd_num_threads_sharing", 3)] == 15
    assert ("amd_cache_type", 4) not in by  # no fifth entry in the dump
    # 0x8000000A EDX, SVM features by their Linux names; 0x8000001E and 0x80000026 topology
    assert by[("npt", 0)] == by[("nrip_save", 0)] == by[("avic", 0)] == 1 and by[("svm_nasid", 0)] == 0x8000
    assert by[("ext_apic_id", 0)] == 21 and by[("core_nthreads", 0)] == 1
    assert by[("amd_domain_type", 0)] == 1 and by[("amd_domain_lcpus_count", 0)] == 2
    assert "npt" in doc["features"] and "perfmon_v2" in doc["features"]


def test_decode_table_shows_strings_and_each_cache_together(tmp_path):
    r = run("decode", str(DUMPS / "libvirt" / "x86_64-cpuid-Xeon-Gold-6530.xml"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "\nstrings:\n" in out
    assert '  vendor             "GenuineIntel"' in out
    assert '  brand              "INTEL(R) XEON(R) GOLD 6530"' in out
    lines = out.splitlines()

    def at(prefix: str) -> int:
        return next(i for i, ln in enumerate(lines) if ln.strip().startswith(prefix))

    # one cache after the other: every field of 0x4 subleaf 0, then subleaf 1
    assert at("0x4.0.eax[4:0]") < at("0x4.0.ecx[30:0]") < at("0x4.1.eax[4:0]")
    assert "cache_nways" in lines[at("0x4.3.ebx[31:22]")] and lines[at("0x4.3.ebx[31:22]")].endswith("0x13")
    assert "tsc_numerator" in out and "x2apic_id_shift" in out and "pmu_version" in out
