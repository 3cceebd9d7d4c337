"""`cpuidkit decode`: table and JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import LIVE_DATA, ROOT, all_dumps
from cpuidkit.core.catalog import catalog
from cpuidkit.core.sources import load


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
    for f in doc["fields"]:
        assert set(f) == {"leaf", "subleaf", "register", "bits", "name", "value"}
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
