"""A synthetic migration pool for the fleet tests and bench/bench_fleet.py: real dumps, deterministically perturbed.

Test material, not part of cpuidkit: ``tests/test_fleet.py`` imports it (``tests/`` is on the path under
pytest) and ``bench/bench_fleet.py`` puts ``tests/`` on ``sys.path`` as bench_fuzz.py does for strategies.py.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from cpuidkit.analysis.migrate import _VIRTUALIZABLE_REGS
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.table import CpuidTable

__all__ = ["synthetic_fleet"]


def synthetic_fleet(tables: Sequence[CpuidTable], n: int, seed: int = 0) -> list[HostProfile]:
    """``n`` hosts made from real dumps, deterministically perturbed: host ``k`` is dump ``k % len(tables)`` with
    a few offered features cleared and, now and then, another MAXPHYADDR, LA57 toggled, AVX-512 or AMX state
    missing, or PKRU moved in the XSAVE area (as a different CPU or BIOS setting would make them)."""

    regs = sorted(_VIRTUALIZABLE_REGS)
    out = []
    for k in range(n):
        base = tables[k % len(tables)]
        if k < len(tables):
            out.append(HostProfile.from_table(base, name=f"h{k:04d}"))
            continue
        rnd = random.Random(seed * 1_000_003 + k)
        t = base
        for _ in range(rnd.randrange(0, 5)):
            leaf, sub, reg = rnd.choice(regs)
            e = t.get(leaf, sub)
            if e is None or not e.reg(reg):
                continue
            ones = [b for b in range(32) if e.reg(reg) >> b & 1]
            t = t.with_entry(e.replace(**{reg: e.reg(reg) & ~(1 << rnd.choice(ones))}))
        e8 = t.get(0x80000008)
        if e8 is not None and rnd.random() < 0.2:
            t = t.with_entry(e8.replace(eax=(e8.eax & ~0xFF) | rnd.choice((39, 42, 43, 46, 48, 52))))
        e7 = t.get(7, 0)
        if e7 is not None and rnd.random() < 0.1:
            la57 = not e7.ecx >> 16 & 1
            t = t.with_entry(e7.replace(ecx=e7.ecx ^ (1 << 16)))
            e8 = t.get(0x80000008)
            if e8 is not None:
                t = t.with_entry(e8.replace(eax=(e8.eax & ~0xFF00) | ((57 if la57 else 48) << 8)))
        d0 = t.get(0xD, 0)
        if d0 is not None and rnd.random() < 0.1:
            t = t.with_entry(d0.replace(eax=d0.eax & ~(0b111 << 5)))
        d0 = t.get(0xD, 0)
        if d0 is not None and rnd.random() < 0.05:
            t = t.with_entry(d0.replace(eax=d0.eax & ~(0b11 << 17)))
        d9 = t.get(0xD, 9)
        if d9 is not None and d9.eax and rnd.random() < 0.05:
            t = t.with_entry(d9.replace(ebx=d9.ebx + 64))
        out.append(HostProfile.from_table(CpuidTable(t, source=f"synthetic {k} from {base.source}"), name=f"h{k:04d}"))
    return out
