"""Fuzzing every importer: the only outcomes are a table or an InputError naming where and what.

Inputs are the real dumps of tests/data mutated by ``strategies.mutate`` (truncations,
flipped characters, huge/negative numbers, wrong JSON types, duplicated
elements and lines, mixed formats, random bytes, DTDs, deep nesting), plus
random text and bytes.  ``bench/bench_fuzz.py`` runs the same mutations
100,000 times per format; here Hypothesis runs a few hundred and shrinks any
failure.  The regression tests below pin the problems the fuzzer found.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies as S
from conftest import ROOT
from cpuidkit import CpuidTable, InputError
from cpuidkit.core.sources import FORMATS, load, loads, loads_bytes

SOURCE = "fuzzed.dump"
FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])


def assert_good(call, source=SOURCE):
    kind, why = S.check_outcome(call, source)
    assert kind in ("table", "input-error"), why


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.data())
def test_mutated_real_dumps_give_a_table_or_an_input_error(fmt, data):
    text = data.draw(S.fuzzed_input(fmt), label="input")
    assert_good(lambda: loads(text, source=SOURCE, format=fmt))  # the format's own parser, whatever the text
    assert_good(lambda: loads(text, source=SOURCE))  # detection first, as `decode` does
    assert_good(lambda: loads_bytes(text.encode("utf-8", "surrogatepass"), source=SOURCE))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=60)
@given(text=S.random_text)
def test_random_text_in_any_format(fmt, text):
    assert_good(lambda: loads(text, source=SOURCE, format=fmt))


@settings(FUZZ, max_examples=200)
@given(data=S.random_bytes)
def test_random_bytes(data):
    assert_good(lambda: loads_bytes(data, source=SOURCE))


@pytest.mark.parametrize("fmt", ["cpuid-raw", "libcpuid"])
@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_cpu_selection_on_fuzzed_multi_cpu_dumps(fmt, data):
    text = data.draw(S.fuzzed_input(fmt), label="input")
    cpu = data.draw(st.one_of(st.integers(-2, 3), st.integers(0, 2**70)), label="cpu")
    assert_good(lambda: loads(text, source=SOURCE, format=fmt, cpu=cpu))


# -- through `cpuidkit decode` --------------------------------------------------------------


def decode_in_process(path) -> tuple[int, str, str]:
    from cpuidkit.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["decode", str(path), "--format", "json"])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_decode_exits_0_or_2_with_one_line(fmt, data, tmp_path_factory):
    text = data.draw(S.fuzzed_input(fmt), label="input")
    path = tmp_path_factory.mktemp("decode") / "input.dump"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    code, out, err = decode_in_process(path)
    assert code in (0, 2)
    if code == 2:
        assert out == ""
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err[:500]
        assert str(path) in err


def _handful() -> list[tuple[str, bytes]]:
    """One hostile input per format, made by the fuzzer with fixed seeds, that the importer refuses."""
    out = []
    for fmt in FORMATS:
        r = random.Random(f"decode-{fmt}")
        while True:
            text = S.mutate(r, fmt)
            try:
                loads(text, source="x")
            except InputError:
                out.append((fmt, text.encode("utf-8", "surrogatepass")))
                break
            except Exception:  # noqa: BLE001 - the fuzz tests above report those
                continue
    out.append(("random-bytes", bytes(random.Random(7).getrandbits(8) for _ in range(300))))
    out.append(("huge-number", b'[{"function": ' + b"9" * 5000 + b', "eax": 0, "ebx": 0, "ecx": 0, "edx": 0}]'))
    return out


@pytest.mark.parametrize("name,data", _handful(), ids=lambda x: x if isinstance(x, str) else "")
def test_decode_subprocess_exit_2_one_line_no_traceback(name, data, tmp_path):
    path = tmp_path / "bad input.dump"
    path.write_bytes(data)
    r = subprocess.run([sys.executable, "-m", "cpuidkit", "decode", str(path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.startswith(f"cpuidkit decode: {path}:")


# -- what the fuzzer found (each was a crash, a traceback or an unbounded message) ---------------

FOUND = [
    # a JSON integer longer than Python converts from text raised ValueError
    ("kvm-json", '[{"function": ' + "9" * 5000 + ', "eax": 0, "ebx": 0, "ecx": 0, "edx": 0}]', r"line 1 column 15.*more than 4300 digits"),
    ("firecracker", '{"cpuid_modifiers": [{"leaf": ' + "1" * 4400 + "}]}", r"more than 4300 digits"),
    # a CPU header with thousands of digits raised ValueError
    ("cpuid-raw", "CPU " + "9" * 5000 + ":\n   0x00000000 0x00: eax=0x1 ebx=0x2 ecx=0x3 edx=0x4\n", r"line 1: CPU number '9+'… \(5000 characters\) is too large"),
    ("libcpuid", "------[ Logical CPU #" + "9" * 5000 + " ]------\nCPUID 00000000: 00000001-00000002-00000003-00000004\n", r"line 1: CPU number .* too large"),
    # a libcpuid subleaf above 32 bits raised an InputError without the file name
    ("libcpuid", "CPUID 00000007: 00000000-00000000-00000000-00000000 [SL 123456789]\n", r"line 1: subleaf '123456789' is too large"),
    # /proc/cpuinfo: negative or huge family/model/stepping were silently wrapped; huge address sizes raised ValueError
    ("proc-cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: -1\nmodel\t\t: 1\nstepping\t: 1\nflags\t\t: fpu\n", r"line 3: 'cpu family' must be a number from 0 to 270"),
    ("proc-cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 256\nstepping\t: 1\nflags\t\t: fpu\n", r"line 4: 'model' must be a number from 0 to 255"),
    ("proc-cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu\naddress sizes\t: " + "9" * 5000 + " bits physical, 48 bits virtual\n", r"line 4: physical address width .* too large"),
    ("proc-cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu\naddress sizes\t: 300 bits physical, 48 bits virtual\n", r"line 4: physical address width '300' is too large \(at most 0xff\)"),
    # lone surrogates (possible in a str handed to loads) made expat raise UnicodeEncodeError
    ("libvirt-xml", "<cpudata><cpuid eax_in='\ud800'/></cpudata>", r"unpaired surrogate at character 24"),
    # messages quoted whole values: a 1 MB string made a 1 MB message
    ("kvm-json", '[{"function": "' + "z" * 1_000_000 + '", "eax": 0, "ebx": 0, "ecx": 0, "edx": 0}]', r"entry 0: function must be a number like 0x1f or 31, got 'zzz.*… \(1000000 characters\)$"),
    ("libvirt-xml", "<cpudata><cpuid eax_in='0x0' ecx_in='0x0' eax='" + "q" * 100_000 + "' ebx='0' ecx='0' edx='0'/></cpudata>", r"element 1 <cpuid>: eax must be a number.*\(100000 characters\)$"),
    ("firecracker", '{"cpuid_modifiers": [{"leaf": 1, "subleaf": 0, "modifiers": [{"register": "' + "r" * 9999 + '", "bitmap": "0b0"}]}]}', r"register must be one of .*\(9999 characters\)$"),
]


@pytest.mark.parametrize("fmt,text,pattern", FOUND, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(FOUND)])
def test_what_the_fuzzer_found(fmt, text, pattern):
    with pytest.raises(InputError, match=pattern) as info:
        loads(text, source=SOURCE, format=fmt)
    assert S.message_problem(info.value, SOURCE) is None, str(info.value)[:300]


def test_a_long_line_of_spaces_in_proc_cpuinfo_is_linear():
    """The old `key : value` pattern backtracked quadratically on a long run of spaces (a 1 MB line: hours)."""
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\n" + " " * 1_000_000 + "x\nflags\t\t: fpu\n"
    with pytest.raises(InputError, match=r"line 3: expected `key : value`"):
        loads(text, source=SOURCE)


def test_cpuid_raw_line_with_an_unknown_suffix_is_refused_with_its_line():
    text = "CPU 0:\n   0x00000000 0x00: eax=0x1 ebx=0x2 ecx=0x3 edx=0x4 g=0x1\n"
    with pytest.raises(InputError, match=r"line 2: expected `0xLEAF 0xSUB"):
        loads(text, source=SOURCE, format="cpuid-raw")


# -- odd files -------------------------------------------------------------------------------


def test_odd_paths_are_input_errors(tmp_path):
    f = tmp_path / "file.json"
    f.write_text("[]")
    cases = {
        str(f / "below-a-file"): "no such file",  # ENOTDIR used to escape as an OSError
        str(tmp_path / ("n" * 5000)): "the file name is too long",  # ENAMETOOLONG
        "with\0nul": "not a usable file name",
        str(tmp_path): "is a folder",
    }
    for path, pattern in cases.items():
        with pytest.raises(InputError, match=pattern):
            load(path)


def test_a_file_name_with_a_newline_stays_one_line(tmp_path):
    f = tmp_path / "two\nlines.json"
    f.write_text("[{]")
    with pytest.raises(InputError) as info:
        load(f)
    assert "\n" not in str(info.value) and "two\\nlines.json" in str(info.value)
    code, out, err = decode_in_process(f)
    assert code == 2 and len(err.splitlines()) == 1


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_device_is_refused_before_anything_is_read():
    with pytest.raises(InputError, match=r"/dev/zero: is a character device, expected a regular file"):
        load("/dev/zero")


def test_a_fifo_is_refused_at_once_instead_of_hanging(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: a blocking open would wait forever
    with pytest.raises(InputError, match=r"is a FIFO, expected a regular file"):
        load(fifo)


def test_loads_rejects_non_text():
    for value in (b"[]", None, 5, ["[]"]):
        with pytest.raises(InputError, match="expected text"):
            loads(value, source=SOURCE)  # type: ignore[arg-type]
    assert isinstance(loads("[]", source=SOURCE), CpuidTable)
