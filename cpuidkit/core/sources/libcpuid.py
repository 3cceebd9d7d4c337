"""libcpuid raw dumps (``cpuid_tool --save``/test files): ``CPUID 0000000D: a-b-c-d [SL 01]``.

One block per logical CPU (``------[ CPUID Registers / Logical CPU #n ]------``);
the first ``-----…`` line without a CPU header ends the register data (libcpuid
test files put their expected decode after it).
"""

from __future__ import annotations

import re

from cpuidkit.core.sources._common import flag_dump, indexed_flags, shorten, small_int
from cpuidkit.core.table import CpuidEntry
from cpuidkit.errors import InputError

_LINE = re.compile(
    r"^CPUID (?P<fn>[0-9A-Fa-f]{8}): (?P<eax>[0-9A-Fa-f]{8})-(?P<ebx>[0-9A-Fa-f]{8})-"
    r"(?P<ecx>[0-9A-Fa-f]{8})-(?P<edx>[0-9A-Fa-f]{8})(?:\s+\[SL (?P<sl>[0-9A-Fa-f]+)\])?(?:\s.*)?$"
)
_CPU = re.compile(r"^-+\[ (?:CPUID Registers / )?Logical CPU #(?P<n>\d+) \]-+$")


def looks_like(head: str) -> bool:
    return any(_LINE.match(ln.strip()) or _CPU.match(ln.strip()) for ln in head.splitlines()[:8])


def parse(text: str, source: str | None, cpu: int | None = None) -> list[CpuidEntry]:
    cpus: dict[int, list[CpuidEntry]] = {}
    current: int | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        m = _CPU.match(line)
        if m:
            current = small_int(m["n"], what="CPU number", where=f"line {lineno}", source=source)
            cpus[current] = []
            continue
        if line.startswith("---"):
            break  # end of register data
        m = _LINE.match(line)
        if not m:
            raise InputError(
                f"expected `CPUID XXXXXXXX: EAX-EBX-ECX-EDX [SL nn]`, got {shorten(line)}",
                source=source,
                where=f"line {lineno}",
            )
        if current is None:
            current = 0
            cpus[0] = []
        sub = small_int(m["sl"], what="subleaf", where=f"line {lineno}", source=source, base=16) if m["sl"] else 0
        fn = int(m["fn"], 16)
        # the pattern bounds the function and registers to 8 hex digits, small_int the subleaf to 32 bits
        cpus[current].append(
            CpuidEntry.trusted(fn, sub, indexed_flags(fn), *(int(m[k], 16) for k in ("eax", "ebx", "ecx", "edx")))
        )
    if not cpus or not any(cpus.values()):
        raise InputError("no CPUID lines found", source=source)
    if cpu is None:
        cpu = min(cpus)
    if cpu not in cpus:
        listing = ", ".join(map(str, sorted(cpus)[:20])) + (", …" if len(cpus) > 20 else "")
        raise InputError(f"CPU {cpu} is not in this dump (CPUs: {listing})", source=source)
    return flag_dump(cpus[cpu])
