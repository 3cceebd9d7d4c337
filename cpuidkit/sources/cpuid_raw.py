"""Todd Allen's ``cpuid -r`` output (all CPUs, ``CPU N:`` headers) or ``cpuid -1r`` (``CPU:``).

A data line is ``   0x00000007 0x00: eax=0x… ebx=0x… ecx=0x… edx=0x…``.  The tool
lists subleaves of indexed leaves; the flags of an imported entry follow KVM's
list of indexed functions.
"""

from __future__ import annotations

import re

from .._errors import InputError
from ..table import CpuidEntry, CpuidTable
from ._common import raw_entry

_LINE = re.compile(
    r"^\s*0x(?P<fn>[0-9a-fA-F]{1,8})\s+0x(?P<idx>[0-9a-fA-F]{1,8}):\s+"
    r"eax=0x(?P<eax>[0-9a-fA-F]{1,8})\s+ebx=0x(?P<ebx>[0-9a-fA-F]{1,8})\s+"
    r"ecx=0x(?P<ecx>[0-9a-fA-F]{1,8})\s+edx=0x(?P<edx>[0-9a-fA-F]{1,8})\s*$"
)
_CPU = re.compile(r"^CPU(?:\s+(?P<n>\d+))?:\s*$")


def looks_like(head: str) -> bool:
    return any(_LINE.match(ln) for ln in head.splitlines()[:8])


def parse(text: str, source: str | None, cpu: int | None = None) -> list[CpuidEntry]:
    cpus: dict[int, list[CpuidEntry]] = {}
    current: int | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _CPU.match(line.strip())
        if m:
            current = int(m["n"]) if m["n"] is not None else 0
            if current in cpus:
                raise InputError(f"CPU {current} appears twice", source=source, where=f"line {lineno}")
            cpus[current] = []
            continue
        m = _LINE.match(line)
        if not m:
            raise InputError(
                "expected `0xLEAF 0xSUB: eax=0x… ebx=0x… ecx=0x… edx=0x…` or a `CPU N:` header, "
                f"got {line.strip()[:60]!r}",
                source=source, where=f"line {lineno}",
            )
        if current is None:
            current = 0
            cpus[0] = []
        cpus[current].append(
            raw_entry(*(int(m[k], 16) for k in ("fn", "idx", "eax", "ebx", "ecx", "edx")))
        )
    if not cpus:
        raise InputError("no CPUID lines found", source=source)
    if cpu is None:
        cpu = min(cpus)
    if cpu not in cpus:
        listing = ", ".join(str(c) for c in sorted(cpus))
        raise InputError(f"CPU {cpu} is not in this dump (CPUs: {listing})", source=source)
    return cpus[cpu]


def dump(table: CpuidTable, cpu: int | None = 0) -> str:
    """``cpuid -r`` text for one CPU (``CPU 0:``), readable by ``cpuid -f``."""
    lines = [f"CPU {cpu}:" if cpu is not None else "CPU:"]
    for e in table:
        lines.append(
            f"   {e.function:#010x} {e.index:#04x}: eax={e.eax:#010x} ebx={e.ebx:#010x} "
            f"ecx={e.ecx:#010x} edx={e.edx:#010x}"
        )
    return "\n".join(lines) + "\n"
