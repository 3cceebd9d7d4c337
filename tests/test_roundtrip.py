"""Round trips: any table survives export and import in every writable format, exactly and in order.

"Any" means random functions, indexes, flags and registers, 0-256 entries,
duplicates included.  `cpuid -r` text has no flags column: non-default flags
ride along as `` f=0x…`` after ``edx=`` (see cpuidkit/sources/cpuid_raw.py),
which Todd Allen's ``cpuid -f`` ignores as long as the line stays within the
86 characters it reads (checked against the tool below).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies as S
from conftest import LIVE_DATA, libvirt_dumps
from cpuidkit import CpuidEntry, CpuidTable
from cpuidkit.core.sources import WRITABLE, dumps, load, loads, save
from cpuidkit.core.sources.cpuid_raw import TOOL_LINE_LIMIT, dump_line
from cpuidkit.core.sources._common import indexed_flags

ROUND = settings(max_examples=80, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("fmt", WRITABLE)
@ROUND
@given(table=S.tables(256))
def test_any_table_round_trips_exactly(fmt, table):
    text = dumps(table, fmt)
    back = loads(text, source="t", format=fmt)
    assert back == table  # every field of every entry, position by position
    assert [e.flags for e in back] == [e.flags for e in table]
    assert loads(text, source="t") == table  # and the format is detected from the text


@pytest.mark.parametrize("fmt", WRITABLE)
@settings(ROUND, max_examples=25)
@given(table=S.tables(256))
def test_round_trip_through_a_saved_file(fmt, table, tmp_path_factory):
    path = tmp_path_factory.mktemp("rt") / f"table.{fmt}"
    save(table, path, fmt)
    assert load(path) == table


@pytest.mark.parametrize("fmt", WRITABLE)
@pytest.mark.parametrize("path", libvirt_dumps()[::7] + [LIVE_DATA / "supported-cpuid.json"], ids=lambda p: p.name)
def test_real_dumps_round_trip(fmt, path):
    t = load(path)
    assert loads(dumps(t, fmt), format=fmt) == t


def test_the_largest_tables_round_trip():
    t = CpuidTable(CpuidEntry(0xFFFF_FFFF - i, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0, 0xFFFF_FFFF, 1) for i in range(256))
    for fmt in WRITABLE:
        assert loads(dumps(t, fmt), format=fmt) == t
    assert loads(dumps(CpuidTable(), "cpuid-raw"), format="cpuid-raw") == CpuidTable()
    assert loads(dumps(CpuidTable(), "kvm-json")) == CpuidTable()


def test_default_flags_add_nothing_to_cpuid_raw_lines():
    """Tables with KVM's flags (as every raw dump gives) are written exactly as `cpuid -r` prints them."""
    for path in libvirt_dumps()[::5]:
        text = dumps(load(path), "cpuid-raw")
        assert " f=" not in text
        lines = text.splitlines()
        assert re.fullmatch(r"CPU 0:", lines[0])
        for ln in lines[1:]:
            assert re.fullmatch(r"   0x[0-9a-f]{8} 0x[0-9a-f]{2}: eax=0x[0-9a-f]{8} ebx=0x[0-9a-f]{8} ecx=0x[0-9a-f]{8} edx=0x[0-9a-f]{8}", ln)


@given(function=S.functions, index=st.integers(0, 0xFF), flags=st.integers(0, 0xF), regs=st.lists(S.u32, min_size=4, max_size=4))
@settings(ROUND, max_examples=300)
def test_kvm_flags_keep_lines_within_what_cpuid_f_reads(function, index, flags, regs):
    line = dump_line(CpuidEntry(function, index, flags, *regs))
    assert len(line) <= TOOL_LINE_LIMIT
    assert (" f=" in line) == (flags != indexed_flags(function))


# -- Todd Allen's cpuid -f reads the annotated files -----------------------------------------


def _tool(path) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("cpuid") or "cpuid", "-f", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.cpuid_tool
def test_cpuid_f_ignores_the_flags_annotation(tmp_path):
    """A dump with every entry's flags changed decodes exactly like the same dump without annotations."""
    base = load(libvirt_dumps()[0])
    odd = CpuidTable(e.replace(flags=(indexed_flags(e.function) ^ 1) | (i % 8 & 6)) for i, e in enumerate(base))
    annotated = dumps(odd, "cpuid-raw")
    assert annotated.count(" f=0x") == len(odd)
    assert max(map(len, annotated.splitlines())) <= TOOL_LINE_LIMIT
    plain = dumps(base, "cpuid-raw")
    (tmp_path / "annotated.raw").write_text(annotated)
    (tmp_path / "plain.raw").write_text(plain)
    a, p = _tool(tmp_path / "annotated.raw"), _tool(tmp_path / "plain.raw")
    assert a.returncode == 0, a.stderr
    assert p.returncode == 0, p.stderr
    assert a.stdout == p.stdout
    assert loads(annotated, format="cpuid-raw") == odd


@pytest.mark.cpuid_tool
def test_cpuid_f_limit_is_what_we_think(tmp_path):
    """The tool reads 86 characters a line: one more and it stops with "unexpected input"."""
    line = dump_line(CpuidEntry(0, 0, 0, 1, 2, 3, 4))
    for extra, ok in ((TOOL_LINE_LIMIT - len(line), True), (TOOL_LINE_LIMIT - len(line) + 1, False)):
        f = tmp_path / f"x{extra}.raw"
        f.write_text("CPU 0:\n" + line + " " + "f" * (extra - 1) + "\n")
        assert (_tool(f).returncode == 0) == ok, extra
