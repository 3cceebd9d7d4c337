"""Model-vs-kernel agreement: run the same scenario on SimulatedVcpu and LiveVcpu, compare.

A scenario is a list of steps, each a call of the ``Vcpu`` interface.  Both
backends run it; they agree when every step gives the same errno (or none)
and the final KVM_GET_CPUID2 tables are equal on every bit the vendor module
does not own.  ``random_scenario`` draws seeded scenarios from a base table
(the live KVM_GET_SUPPORTED_CPUID): address widths, entry counts over and
under the limit, AMX bits, duplicates, removed entries, odd flags, random
register values, runtime triggers and re-sets after run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cpuidkit.core.bits import REGISTERS
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.kvm.interface import MSR_IA32_APICBASE, MSR_IA32_MISC_ENABLE, MSR_IA32_XSS

__all__ = ["Step", "Result", "run_steps", "compare", "random_scenario", "scripted_scenarios", "vendor_masks"]


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
    """Bits the vendor module owns, per (function, index, register): excluded from comparison."""
    if vendor != "pvm":
        return {}
    return {
        (fn, idx, reg): force1 | force0
        for (fn, idx), regs in host.rewrite_registers.items()
        for reg, (force1, force0) in regs.items()
    }


def compare(model: Result, live: Result, masks: dict[tuple[int, int, str], int]) -> list[str]:
    """Differences between the two results ([] means they agree)."""
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


# -- scenarios --------------------------------------------------------------------------------

CR4_CHOICES = (0, 1 << 18, 1 << 22, (1 << 18) | (1 << 22), 1 << 12, 1 << 13, 1 << 17, 1 << 20, 1 << 9, 1 << 23)
XCR0_CHOICES = (0x1, 0x3, 0x7, 0x5, 0x0, 0x207, 0xE7, 0x27, 0x60007, 0x20007, 0x8 | 0x10 | 0x7, 0x2E7)
APIC_CHOICES = (0xFEE00900, 0xFEE00100, 0xFEE00000, 0xFEE00D00, 0x1FEE00900, 1 << 47 | 0xFEE00900)
MISC_CHOICES = (0, 1 << 18, 1, (1 << 18) | 1)
XSS_CHOICES = (0, 1 << 11, 1 << 12, 1 << 8)


def _mutate_table(rng: random.Random, base: CpuidTable) -> CpuidTable:
    t = base
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(("width", "count", "amx", "dup", "remove", "flags", "random", "maxphy", "none"))
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
    return t


def random_scenario(rng: random.Random, base: CpuidTable) -> list[Step]:
    steps: list[Step] = []
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
        # pvm appends its 0xD entries to a table without them only while they still fit in 256
        **{
            f"no 0xD, {n} entries": [Step("set_cpuid", (no_xsave.appended(*filler[: n - len(no_xsave)]),))]
            for n in range(244, 254)
        },
    }
