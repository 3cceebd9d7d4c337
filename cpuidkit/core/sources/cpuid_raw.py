"""Todd Allen's ``cpuid -r`` output (all CPUs, ``CPU N:`` headers) or ``cpuid -1r`` (``CPU:``).

A data line is ``   0x00000007 0x00: eax=0x… ebx=0x… ecx=0x… edx=0x…``.  The tool
lists subleaves of indexed leaves; an imported entry is flagged when its function
is indexed by KVM's list or by the dump itself (several different subleaves, as
0x80000020 on AMD: :func:`~cpuidkit.core.indexed.indexed_in_dump`).

The tool's format has no flags column.  So that any table survives a save and a
load, :func:`dump` appends `` f=0x…`` to the line of an entry whose flags differ
from that default (e.g. ``f=0x0`` on a leaf-7 entry without the
significant-index flag), and :func:`parse` reads it back.  ``cpuid -f`` reads
each line with ``sscanf`` and ignores what follows ``edx=0x…``, but it reads at
most 86 characters a line: a data line with a two-digit subleaf is 80, so the
annotation fits for flags up to 0xf, which covers every flag KVM defines
(bits 0-2).  Larger flags, or non-default flags on a subleaf above 0xff,
still round-trip through cpuidkit but make a line ``cpuid -f`` cannot read;
see docs/hardening.md.
"""

from __future__ import annotations

import re

from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX
from cpuidkit.core.indexed import indexed_in_dump
from cpuidkit.core.sources._common import flag_dump, indexed_flags, shorten, small_int
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import InputError

_LINE = re.compile(
    r"^\s*0x(?P<fn>[0-9a-fA-F]{1,8})\s+0x(?P<idx>[0-9a-fA-F]{1,8}):\s+"
    r"eax=0x(?P<eax>[0-9a-fA-F]{1,8})\s+ebx=0x(?P<ebx>[0-9a-fA-F]{1,8})\s+"
    r"ecx=0x(?P<ecx>[0-9a-fA-F]{1,8})\s+edx=0x(?P<edx>[0-9a-fA-F]{1,8})"
    r"(?:\s+f=0x(?P<flags>[0-9a-fA-F]{1,8}))?\s*$"
)
_CPU = re.compile(r"^CPU(?:\s+(?P<n>\d+))?:\s*$")

TOOL_LINE_LIMIT = 86  # characters `cpuid -f` reads per line (an 88-byte fgets buffer, newline included)


def looks_like(head: str) -> bool:
    """A data line among the first 8 lines, or a `CPU N:` header first (a dump of an empty table)."""
    lines = head.splitlines()[:8]
    if any(_LINE.match(ln) for ln in lines):
        return True
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    return bool(_CPU.match(first))


def parse(text: str, source: str | None, cpu: int | None = None) -> list[CpuidEntry]:
    cpus: dict[int, list[CpuidEntry]] = {}
    stated: dict[int, set[int]] = {}  # per CPU: positions whose flags the line states (` f=0x…`)
    current: int | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _CPU.match(line.strip())
        if m:
            where = f"line {lineno}"
            current = small_int(m["n"], what="CPU number", where=where, source=source) if m["n"] is not None else 0
            if current in cpus:
                raise InputError(f"CPU {current} appears twice", source=source, where=where)
            cpus[current] = []
            continue
        m = _LINE.match(line)
        if not m:
            raise InputError(
                "expected `0xLEAF 0xSUB: eax=0x… ebx=0x… ecx=0x… edx=0x…` or a `CPU N:` header, "
                f"got {shorten(line.strip())}",
                source=source,
                where=f"line {lineno}",
            )
        if current is None:
            current = 0
            cpus[0] = []
        fn, idx, eax, ebx, ecx, edx = (int(m[k], 16) for k in ("fn", "idx", "eax", "ebx", "ecx", "edx"))
        flags = int(m["flags"], 16) if m["flags"] is not None else indexed_flags(fn)
        if m["flags"] is not None:
            stated.setdefault(current, set()).add(len(cpus[current]))
        cpus[current].append(
            CpuidEntry.trusted(fn, idx, flags, eax, ebx, ecx, edx)
        )  # the pattern bounds each to 32 bits
    if not cpus:
        raise InputError("no CPUID lines found", source=source)
    if cpu is None:
        cpu = min(cpus)
    if cpu not in cpus:
        listing = ", ".join(str(c) for c in sorted(cpus)[:20]) + (", …" if len(cpus) > 20 else "")
        raise InputError(f"CPU {cpu} is not in this dump (CPUs: {listing})", source=source)
    return flag_dump(cpus[cpu], frozenset(stated.get(cpu, ())))


def dump_line(e: CpuidEntry, indexed: frozenset[int] | None = None) -> str:
    """One data line; `` f=0x…`` only when the flags differ from the default for the function: KVM's list, or
    ``indexed`` (the functions the whole dump shows to be indexed, as :func:`parse` will find them)."""
    line = (
        f"   {e.function:#010x} {e.index:#04x}: eax={e.eax:#010x} ebx={e.ebx:#010x} ecx={e.ecx:#010x} edx={e.edx:#010x}"
    )
    default = indexed_flags(e.function) if indexed is None else (FLAG_SIGNIFICANT_INDEX if e.function in indexed else 0)
    if e.flags != default:
        line += f" f={e.flags:#x}"
    return line


def dump(table: CpuidTable, cpu: int | None = 0) -> str:
    """``cpuid -r`` text for one CPU (``CPU 0:``), readable by ``cpuid -f`` (see the module notes on flags)."""
    lines = [f"CPU {cpu}:" if cpu is not None else "CPU:"]
    indexed = indexed_in_dump(table)
    lines += [dump_line(e, indexed) for e in table]
    return "\n".join(lines) + "\n"
