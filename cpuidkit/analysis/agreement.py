"""Model-vs-kernel agreement: run the same scenario on SimulatedVcpu and LiveVcpu, compare.

A scenario is a list of steps, each a call of the ``Vcpu`` interface.  Both
backends run it; they agree when every step gives the same errno (or none)
and the final KVM_GET_CPUID2 tables are equal: the same entries in the same
order, every register of every entry, the vendor module's leaves included.
``random_scenario`` draws seeded scenarios from a base table (the live
KVM_GET_SUPPORTED_CPUID): address widths, entry counts over and under the
limit and tables of 250-256 entries, AMX bits, duplicates, removed entries,
entries without the significant-index flag (and leaf 1 with a non-zero index),
partial leaf 0xD, odd flags, random register values, runtime triggers and
re-sets after run.  :func:`measure` runs them on this machine in this
process; guest AMX permission is a state of the whole process (``arch_prctl``
locks it at the first vCPU), so another permission state runs in a fresh
interpreter (:func:`measure_in_process`).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cpuidkit.core.bits import REGISTERS
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.kvm.interface import MSR_IA32_APICBASE, MSR_IA32_MISC_ENABLE, MSR_IA32_XSS
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.vendors import pvm_context
from cpuidkit.live import LiveVcpu, host_profile, kvm_available

__all__ = [
    "Step",
    "Result",
    "run_steps",
    "compare",
    "random_scenario",
    "scripted_scenarios",
    "rewrite_class_tables",
    "vendor_masks",
    "measure",
    "measure_in_process",
    "PERMISSION_STATES",
]


@dataclass(frozen=True)
class Step:
    op: str  # a Vcpu method name, or "set_cpuid_readback" (re-set the current GET output, mutated)
    args: tuple = ()

    def __str__(self) -> str:
        if self.op == "set_cpuid":
            return f"set_cpuid(<{len(self.args[0])} entries>)"
        if self.op == "set_cpuid_readback":
            return f"set_cpuid_readback({self.args[0]})"
        return f"{self.op}({', '.join(hex(a) if isinstance(a, int) else repr(a) for a in self.args)})"


@dataclass
class Result:
    errnos: list[str | None] = field(default_factory=list)
    final: CpuidTable | None = None


def _mutate_readback(table: CpuidTable, how: str) -> CpuidTable:
    if how == "same":
        return table
    if how == "leaf6":  # a pass-through bit
        e = table.get(6)
        return table.set_field("0x6.0.eax[0]", 0 if e is None else 1 - (e.eax & 1))
    if how == "maxphyaddr":
        e = table.get(0x80000008)
        return table.set_field("0x80000008.0.eax[7:0]", 36 if e is None or e.eax & 0xFF != 36 else 39)
    if how == "reversed":
        return CpuidTable(reversed(list(table)))
    if how == "drop_last":
        return CpuidTable(list(table)[:-1])
    if how == "flags":
        if not len(table):
            return table
        return table.replace_at(0, table[0].replace(flags=table[0].flags ^ 1))
    raise ValueError(how)


def run_steps(vcpu, steps: list[Step]) -> Result:
    """Run ``steps`` on a backend; every KvmError becomes its errno name in the result."""
    res = Result()
    for s in steps:
        try:
            if s.op == "set_cpuid_readback":
                vcpu.set_cpuid(_mutate_readback(vcpu.get_cpuid(), s.args[0]))
            else:
                getattr(vcpu, s.op)(*s.args)
            res.errnos.append(None)
        except KvmError as e:
            res.errnos.append(e.errno_name)
    res.final = vcpu.get_cpuid()
    return res


def vendor_masks(vendor: str, host: HostProfile) -> dict[tuple[int, int, str], int]:
    """Bits the vendor module owns, per (function, index, register) (what a comparison that leaves the
    vendor's rewrite out would mask; the agreement figures compare every bit)."""
    if vendor != "pvm":
        return {}
    return {
        (fn, idx, reg): force1 | force0
        for (fn, idx), regs in host.rewrite_registers.items()
        for reg, (force1, force0) in regs.items()
    }


def compare(model: Result, live: Result, masks: dict[tuple[int, int, str], int] | None = None) -> list[str]:
    """Differences between the two results ([] means they agree); ``masks`` leaves bits out (default: none)."""
    masks = masks or {}
    out = []
    for i, (a, b) in enumerate(zip(model.errnos, live.errnos)):
        if a != b:
            out.append(f"step {i}: model {a or 'ok'}, kernel {b or 'ok'}")
    assert model.final is not None and live.final is not None  # run_steps() always sets final
    ma, la = list(model.final), list(live.final)
    if [(e.function, e.index, e.flags) for e in ma] != [(e.function, e.index, e.flags) for e in la]:
        out.append(f"stored entries differ: model {len(ma)} entries, kernel {len(la)}")
        return out
    for e_m, e_l in zip(ma, la):
        mask = 0xFFFFFFFF
        for r in REGISTERS:
            m = ~masks.get((e_m.function, e_m.index, r), 0) & mask
            if e_m.reg(r) & m != e_l.reg(r) & m:
                out.append(f"{e_m.function:#x}.{e_m.index}.{r}: model {e_m.reg(r):#010x}, kernel {e_l.reg(r):#010x}")
    return out


MAX_ENTRIES = 256  # KVM_MAX_CPUID_ENTRIES

# -- scenarios --------------------------------------------------------------------------------

CR4_CHOICES = (0, 1 << 18, 1 << 22, (1 << 18) | (1 << 22), 1 << 12, 1 << 13, 1 << 17, 1 << 20, 1 << 9, 1 << 23)
XCR0_CHOICES = (0x1, 0x3, 0x7, 0x5, 0x0, 0x207, 0xE7, 0x27, 0x60007, 0x20007, 0x8 | 0x10 | 0x7, 0x2E7)
APIC_CHOICES = (0xFEE00900, 0xFEE00100, 0xFEE00000, 0xFEE00D00, 0x1FEE00900, 1 << 47 | 0xFEE00900)
MISC_CHOICES = (0, 1 << 18, 1, (1 << 18) | 1)
XSS_CHOICES = (0, 1 << 11, 1 << 12, 1 << 8)


def _pad(rng: random.Random, t: CpuidTable, total: int) -> CpuidTable:
    return t.appended(*(CpuidEntry(0x40000100 + i, 0, 0, rng.getrandbits(32)) for i in range(max(total - len(t), 0))))


def _unflag(rng: random.Random, t: CpuidTable) -> CpuidTable:
    """An entry of leaf 1, 7 or 0xD (or any indexed one) without the significant-index flag."""
    cands = [i for i, e in enumerate(t) if e.flags & 1 and (e.function in (7, 0xD) or rng.random() < 0.2)]
    if not cands:
        return t
    pos = rng.choice(cands)
    return t.replace_at(pos, t[pos].replace(flags=t[pos].flags & ~1))


def _leaf1_index(rng: random.Random, t: CpuidTable) -> CpuidTable:
    pos = t.find_position(1)
    if pos is None:
        return t
    return t.replace_at(pos, t[pos].replace(index=rng.choice((1, 2, 5, 0xFF)), flags=rng.choice((0, 0, 1))))


def _partial_xsave(rng: random.Random, t: CpuidTable) -> CpuidTable:
    """Leaf 0xD cut or reshaped: no 0xD.0, some subleaves only, 0xD.0 moved last, an extra subleaf."""
    how = rng.choice(("no_d0", "no_d0", "some", "none", "d0_last", "extra"))
    if how == "no_d0":
        return t.without(0xD, 0)
    if how == "none":
        return t.without(0xD)
    subs = [e for e in t if e.function == 0xD]
    if how == "some" and subs:
        keep = set(rng.sample(range(len(subs)), rng.randrange(len(subs) + 1)))
        return CpuidTable([e for e in t if e.function != 0xD] + [e for i, e in enumerate(subs) if i in keep])
    if how == "d0_last":
        d0 = [e for e in subs if e.index == 0]
        return CpuidTable([e for e in t if not (e.function == 0xD and e.index == 0)] + d0)
    e = CpuidEntry(0xD, rng.choice((3, 9, 11, 17, 18, 63, 64)), rng.choice((0, 1)), rng.getrandbits(32), 0, 0, 0)
    return t.appended(e) if rng.random() < 0.5 else CpuidTable([e, *t])


def _mutate_table(rng: random.Random, base: CpuidTable) -> CpuidTable:
    t = base
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(
            (
                "width",
                "count",
                "amx",
                "dup",
                "remove",
                "flags",
                "random",
                "maxphy",
                "none",
                "unflag",
                "leaf1_index",
                "xsave",
                "xsave",
                "ones",
            )
        )
        if kind == "width":
            t = t.set_field("0x80000008.0.eax[15:8]", rng.choice((0, 48, 57, 39, 50, 52, 64, rng.randrange(256))))
        elif kind == "count":
            n = rng.choice((1, 10, 256 - len(t), 257 - len(t), 300 - len(t)))
            t = t.appended(*(CpuidEntry(0x40000100 + i, 0, 0, rng.getrandbits(32)) for i in range(max(n, 0))))
        elif kind == "amx":
            t = t.set_field("0xd.0.eax[17]", rng.randint(0, 1)).set_field("0xd.0.eax[18]", rng.choice((0, 0, 1)))
        elif kind == "dup" and len(t):
            e = rng.choice(list(t))
            t = t.appended(e.replace(eax=e.eax ^ 1))
        elif kind == "remove" and len(t):
            t = t.without(rng.choice(list(t)).function)
        elif kind == "flags" and len(t):
            pos = rng.randrange(len(t))
            t = t.replace_at(pos, t[pos].replace(flags=rng.choice((0, 1, 0xFFFFFFFF, 0xDEAD0000))))
        elif kind == "random" and len(t):
            pos = rng.randrange(len(t))
            reg = rng.choice(REGISTERS)
            e = t[pos]
            if (e.function, reg) == (0xD, "eax") or (e.function, reg) == (0xD, "edx"):
                val = rng.getrandbits(32) & ~(1 << 18)  # keep TILEDATA out of random noise
            else:
                val = rng.getrandbits(32)
            t = t.replace_at(pos, e.with_reg(reg, val))
        elif kind == "maxphy":
            t = t.set_field("0x80000008.0.eax[7:0]", rng.choice((0, 20, 36, 39, 46, 48, 52, 64, 255)))
        elif kind == "unflag":
            t = _unflag(rng, t)
        elif kind == "leaf1_index":
            t = _leaf1_index(rng, t)
        elif kind == "xsave":
            t = _partial_xsave(rng, t)
        elif kind == "ones" and len(t):  # every bit of an entry set: what a module forces or hides shows
            pos = rng.randrange(len(t))
            e = t[pos]
            eax = e.eax if e.function == 0x80000008 else 0xFFFFFFFF & ~(1 << 18 if e.function == 0xD else 0)
            t = t.replace_at(pos, e.replace(eax=eax, ebx=0xFFFFFFFF, ecx=0xFFFFFFFF, edx=0xFFFFFFFF))
    if rng.random() < 0.25:  # near-full: where the vendor module's appended entries stop fitting
        t = _pad(rng, t, rng.randint(250, 256))
    return t


def random_scenario(rng: random.Random, base: CpuidTable, permission: int | None = None) -> list[Step]:
    """A seeded scenario from ``base``; ``permission`` (an XSAVE feature mask) starts it with
    ``grant_xfeature_permission`` (run it in a process that asked for the same, see :func:`measure_in_process`)."""
    steps: list[Step] = []
    if permission is not None:
        steps.append(Step("grant_xfeature_permission", (permission,)))
    if rng.random() < 0.15:
        steps.append(Step("disable_quirk", ("MISC_ENABLE_NO_MWAIT",)))
    if rng.random() < 0.15:
        steps.append(Step("disable_hlt_exits"))
    steps.append(Step("set_cpuid", (_mutate_table(rng, base),)))
    for _ in range(rng.randint(0, 5)):
        kind = rng.choice(("cr4", "xcr0", "apic", "misc", "xss", "reset", "hlt"))
        if kind == "cr4":
            steps.append(Step("set_cr4", (rng.choice(CR4_CHOICES),)))
        elif kind == "xcr0":
            steps.append(Step("set_xcr0", (rng.choice(XCR0_CHOICES),)))
        elif kind == "apic":
            steps.append(Step("set_msr", (MSR_IA32_APICBASE, rng.choice(APIC_CHOICES))))
        elif kind == "misc":
            steps.append(Step("set_msr", (MSR_IA32_MISC_ENABLE, rng.choice(MISC_CHOICES))))
        elif kind == "xss":
            steps.append(Step("set_msr", (MSR_IA32_XSS, rng.choice(XSS_CHOICES))))
        elif kind == "reset":
            steps.append(Step("set_cpuid", (_mutate_table(rng, base),)))
        elif kind == "hlt":
            steps.append(Step("disable_hlt_exits"))
    if rng.random() < 0.5:
        steps.append(Step("run"))
        for _ in range(rng.randint(1, 3)):
            r = rng.random()
            if r < 0.5:
                steps.append(
                    Step(
                        "set_cpuid_readback",
                        (rng.choice(("same", "same", "leaf6", "maxphyaddr", "reversed", "drop_last", "flags")),),
                    )
                )
            elif r < 0.7:
                steps.append(Step("set_cpuid", (steps_first_table(steps),)))
            else:
                steps.append(Step("set_cr4", (rng.choice(CR4_CHOICES),)))
    return steps


def steps_first_table(steps: list[Step]) -> CpuidTable:
    return next(s.args[0] for s in steps if s.op == "set_cpuid")


def scripted_scenarios(base: CpuidTable) -> dict[str, list[Step]]:
    """Named scenarios from kvm-facts.md, the selftests and live-kvm-findings.md."""

    def w(width):
        return base.set_field("0x80000008.0.eax[15:8]", width)

    filler = [CpuidEntry(0x40000100 + i) for i in range(300)]
    no_xsave = base.without(0xD)
    edge = MAX_ENTRIES - sum(e.function == 0xD for e in base)
    leaf6 = base.get(6)
    assert leaf6 is not None  # every base table (a supported-CPUID table) has leaf 6
    return {
        "supported table round trip": [Step("set_cpuid", (base,))],
        "empty table": [Step("set_cpuid", (CpuidTable(),))],
        "256 entries": [Step("set_cpuid", (base.appended(*filler[: 256 - len(base)]),))],
        "257 entries (E2BIG)": [Step("set_cpuid", (base.appended(*filler[: 257 - len(base)]),))],
        "linear width 48": [Step("set_cpuid", (w(48),))],
        "linear width 57": [Step("set_cpuid", (w(57),))],
        "linear width 0": [Step("set_cpuid", (w(0),))],
        "linear width 50 (EINVAL)": [Step("set_cpuid", (w(50),))],
        "TILEDATA without permission (EPERM)": [
            Step("set_cpuid", (base.set_field("0xd.0.eax[18]", 1).set_field("0xd.0.eax[17]", 1),))
        ],
        "TILECFG alone": [Step("set_cpuid", (base.set_field("0xd.0.eax[17]", 1),))],
        "MAXPHYADDR 52 / 64 / 255 accepted": [
            Step("set_cpuid", (base.set_field("0x80000008.0.eax[7:0]", v),)) for v in (52, 64, 255)
        ],
        "MAXPHYADDR unreachable (36)": [
            Step("set_cpuid", (base.set_field("0x80000000.0.eax", 0x80000001),)),
            Step("set_msr", (MSR_IA32_APICBASE, 0x1FEE00900)),
        ],
        "APIC base beyond MAXPHYADDR 20": [
            Step("set_cpuid", (base.set_field("0x80000008.0.eax[7:0]", 20),)),
            Step("set_msr", (MSR_IA32_APICBASE, 0xFEE00900)),
        ],
        "duplicates kept": [Step("set_cpuid", (base.appended(leaf6.replace(eax=leaf6.eax ^ 1)),))],
        "garbage flags": [Step("set_cpuid", (base.replace_at(0, base[0].replace(flags=0xFFFFFFFF)),))],
        "CR4.OSXSAVE toggles OSXSAVE": [Step("set_cpuid", (base,)), Step("set_cr4", (1 << 18,)), Step("set_cr4", (0,))],
        "XCR0 changes 0xD EBX": [
            Step("set_cpuid", (base,)),
            Step("set_cr4", (1 << 18,)),
            Step("set_xcr0", (0x7,)),
            Step("set_xcr0", (0xE7,)),
            Step("set_xcr0", (0x1,)),
        ],
        "XCR0 before SET_CPUID2": [Step("set_xcr0", (0x7,)), Step("set_cpuid", (base,)), Step("set_xcr0", (0x7,))],
        "XCR0 rules": [Step("set_cpuid", (base,))] + [Step("set_xcr0", (v,)) for v in XCR0_CHOICES],
        "APIC enable toggles APIC": [
            Step("set_cpuid", (base,)),
            Step("set_msr", (MSR_IA32_APICBASE, 0xFEE00100)),
            Step("set_msr", (MSR_IA32_APICBASE, 0xFEE00900)),
        ],
        "MISC_ENABLE with the quirk on": [Step("set_cpuid", (base,)), Step("set_msr", (MSR_IA32_MISC_ENABLE, 1 << 18))],
        "MISC_ENABLE with the quirk off": [
            Step("disable_quirk", ("MISC_ENABLE_NO_MWAIT",)),
            Step("set_cpuid", (base.set_field("1.ecx[3]", 1),)),
            Step("set_msr", (MSR_IA32_MISC_ENABLE, 1 << 18)),
        ],
        "HLT exits before the vCPU": [Step("disable_hlt_exits"), Step("set_cpuid", (base,))],
        "HLT exits after the vCPU": [Step("set_cpuid", (base,)), Step("disable_hlt_exits")],
        "re-set readback after run": [Step("set_cpuid", (base,)), Step("run"), Step("set_cpuid_readback", ("same",))],
        "re-set own table after run": [Step("set_cpuid", (base,)), Step("run"), Step("set_cpuid", (base,))],
        "re-set after run with a runtime change": [
            Step("set_cpuid", (base,)),
            Step("run"),
            Step("set_cr4", (1 << 18,)),
            Step("set_cpuid_readback", ("same",)),
        ],
        "changed readback after run": [Step("set_cpuid", (base,)), Step("run")]
        + [Step("set_cpuid_readback", (h,)) for h in ("leaf6", "maxphyaddr", "reversed", "drop_last", "flags")],
        "XSS writes": [Step("set_cpuid", (base,))] + [Step("set_msr", (MSR_IA32_XSS, v)) for v in XSS_CHOICES],
        "CR4 bits one by one": [Step("set_cpuid", (base,))] + [Step("set_cr4", (1 << b,)) for b in range(25)],
        # pvm appends its 0xD entries to a table without them only while they still fit in 256: around the edge
        # this host's supported table puts it at (as many entries as it has 0xD subleaves)
        **{
            f"no 0xD, {n} entries": [Step("set_cpuid", (no_xsave.appended(*filler[: n - len(no_xsave)]),))]
            for n in range(edge - 3, edge + 4)
        },
        **{f"rewrite class {name}": [Step("set_cpuid", (t,))] for name, t in rewrite_class_tables(base).items()},
    }


def rewrite_class_tables(base: CpuidTable) -> dict[str, CpuidTable]:
    """Tables from ``base`` (a supported table) for each way a vendor module that finds entries with KVM's lookup
    can differ from one that matches them exactly (issue 15's classes A-D, D without its permission step).

    The append edge is where this host's 0xD subleaves stop fitting: 256 minus their number."""
    filler = [CpuidEntry(0x40000100 + i) for i in range(300)]
    edge = MAX_ENTRIES - sum(e.function == 0xD for e in base)

    def fill(t: CpuidTable, n: int) -> CpuidTable:
        return t.appended(*filler[: max(n - len(t), 0)])

    def unflag(t: CpuidTable, fn: int, idx: int) -> CpuidTable:
        pos = next((i for i, e in enumerate(t) if e.key() == (fn, idx)), None)
        return t if pos is None else t.replace_at(pos, t[pos].replace(flags=0))

    leaf1 = base.find_position(1)
    d0 = base.get(0xD, 0)
    out = {
        "A: no 0xD.0, other 0xD subleaves": base.without(0xD, 0),
        "A: no 0xD.0, at the edge": fill(base.without(0xD, 0), edge),
        "B: no 0xD, one past the edge": fill(base.without(0xD), edge + 1),
        "B: no 0xD.0, full": fill(base.without(0xD, 0), MAX_ENTRIES),
        "B: no 0xD, at the edge": fill(base.without(0xD), edge),
        "C: 7.0 unflagged": unflag(base, 7, 0),
        "C: 7.1 unflagged": unflag(base, 7, 1),
        "C: 0xD.0 unflagged": unflag(base, 0xD, 0),
        "C: 0xD.1 unflagged": unflag(base, 0xD, 1),
        "C: unflagged 0xD.3 in place of 0xD.0": base.without(0xD, 0).appended(CpuidEntry(0xD, 3, 0, 0x11111111)),
        "C: only 0 and 7.0": CpuidTable(e for e in base if e.key() in ((0, 0), (7, 0))),
    }
    if leaf1 is not None:
        out["C: leaf 1 with index 5, unflagged"] = base.replace_at(leaf1, base[leaf1].replace(index=5, flags=0))
        out["C: leaf 1 with index 5, flagged"] = base.replace_at(leaf1, base[leaf1].replace(index=5, flags=1))
    if d0 is not None:
        out["D: 0xD.0 with TILECFG and TILEDATA"] = base.with_entry(d0.replace(eax=d0.eax | 0b11 << 17))
    return out


# -- measuring ----------------------------------------------------------------------------------

# Guest XSAVE permission states of a process: none asked, AMX TILEDATA asked (granted where the host has AMX,
# refused with EOPNOTSUPP where it has not: both are states the model must answer like the kernel)
PERMISSION_STATES: dict[str, int | None] = {"none": None, "amx": 1 << 18}


def mix_of(table: CpuidTable, host: HostProfile, vendor: str, permission: int | None = None) -> list[str]:
    """The classes of the generator's mix a table as set falls in (the bench prints how many of each).

    A: KVM's lookup finds no 0xD.0 but other 0xD subleaves are there, and the vendor module appends its
    entries; B: no 0xD.0 and no room to append them (with leaf 1); C: an entry of leaf 1, 7 or 0xD that KVM's
    lookup finds for another subleaf (no significant-index flag, or leaf 1 with a non-zero index); D: AMX
    TILEDATA in 0xD.0 with the guest permission asked for."""
    out = []
    d0 = table.get(0xD, 0)
    pvm = vendor == "pvm" and bool(host.vendor_rewrite) and len(table) <= 256
    context = pvm_context(table, host) if pvm else None
    if d0 is None and table.get_any(0xD) is not None:
        out.append("partial 0xD")
        if context == "appended":
            out.append("A")
    if context == "absent" and table.get(1) is not None:
        out.append("B")
    leaf1 = table.get(1)
    if (leaf1 is not None and leaf1.index) or any(e.function in (7, 0xD) and not e.flags & 1 for e in table):
        out.append("C")
    if permission and d0 is not None and d0.eax & permission:
        out.append("D")
    if 250 <= len(table) <= 256:
        out.append("250-256 entries")
    if context:
        out.append(f"pvm {context}")
    return out


def measure(n: int = 2000, seed: int = 1, *, permission: int | None = None, scripted: bool = True) -> dict:
    """Agreement on this machine's /dev/kvm, in this process: every scripted scenario (``scripted``) and ``n``
    seeded random ones, each final table compared on every register.  ``permission``: the guest XSAVE
    permission this process asked for before its first vCPU (see :data:`PERMISSION_STATES`)."""
    ok, why = kvm_available()
    if not ok:
        return {"cases": 0, "agreed": None, "note": why}
    host = host_profile()
    with LiveVcpu() as v:
        kernel, vendor = v.kernel, v.vendor

    def one(steps: list[Step]) -> tuple[list[str], Result]:
        model = run_steps(SimulatedVcpu(kernel=kernel, vendor=vendor, host=host), steps)
        with LiveVcpu() as lv:
            real = run_steps(lv, steps)
        return compare(model, real), real

    start = time.perf_counter()
    assert host.supported is not None  # a measured host always has its KVM_GET_SUPPORTED_CPUID
    s_cases = scripted_scenarios(host.supported) if scripted else {}
    s_failed = {name: diff[:3] for name, steps in s_cases.items() if (diff := one(steps)[0])}
    rng = random.Random(seed)
    agreed = 0
    errnos: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    mix: Counter[str] = Counter()
    failures: list[dict] = []
    for i in range(n):
        steps = random_scenario(rng, host.supported, permission)
        diff, real = one(steps)
        agreed += not diff
        errnos.update(e or "ok" for e in real.errnos)
        for s in steps:
            if s.op == "set_cpuid":
                mix.update(mix_of(s.args[0], host, vendor, permission))
        if diff:
            kinds[diff[0].split(":")[0]] += 1
            if len(failures) < 5:
                failures.append({"case": i, "steps": [str(s) for s in steps], "differences": diff[:3]})
    return {
        "kernel": kernel,
        "release": os.uname().release,
        "vendor": vendor,
        "host_vendor": host.cpuid.vendor,
        "permission": "none" if permission is None else f"{permission:#x}",
        "guest_perm": f"{host.guest_perm_xcr0:#x}" if host.guest_perm_xcr0 is not None else None,
        "scripted": len(s_cases),
        "scripted_agreed": len(s_cases) - len(s_failed),
        "scripted_failures": s_failed,
        "cases": n,
        "agreed": agreed,
        "seconds": time.perf_counter() - start,
        "kernel_answers": dict(errnos),
        "mix": dict(mix),
        "disagreement_kinds": dict(kinds),
        "failures": failures,
    }


def measure_in_process(n: int, seed: int, permission: int | None, *, scripted: bool = False) -> dict:
    """:func:`measure` in a fresh interpreter that asks for ``permission`` before its first vCPU (a process's
    guest XSAVE permission is locked once it has created one)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "cpuidkit.analysis.agreement", str(n), str(seed)]
    if permission is not None:
        cmd += ["--permission", hex(permission)]
    if scripted:
        cmd.append("--scripted")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode:
        raise RuntimeError(f"agreement worker failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _worker(argv: list[str]) -> int:
    """``python -m cpuidkit.analysis.agreement N SEED [--permission MASK] [--scripted]``: one JSON line."""
    permission = None
    if "--permission" in argv:
        permission = int(argv[argv.index("--permission") + 1], 0)
    numbers = [a for a in argv if not a.startswith("--") and (permission is None or a != hex(permission))]
    n, seed = int(numbers[0]), int(numbers[1])
    refused = None
    if permission is not None:
        try:
            with LiveVcpu() as v:  # a VM only: the permission must come before the process's first vCPU
                v.grant_xfeature_permission(permission)
        except KvmError as e:
            refused = e.errno_name
    result = measure(n, seed, permission=permission, scripted="--scripted" in argv)
    result["permission_refused"] = refused
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
