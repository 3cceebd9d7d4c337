"""Measure what this host's vendor module does to CPUID, so the model can predict it.

The pvm module's CPUID code (``pvm_vcpu_after_set_cpuid`` and friends) is not
public.  Instead of guessing, we ask the kernel: set each register of the
leaves pvm owns to all-zeros and to all-ones on a fresh vCPU, read back with
KVM_GET_CPUID2, and record which bits came back forced to 1 or to 0.  The
same probes find the leaves it drops, the 0xD entries it appends, its fixed
CR4 mask and what it does to MWAIT with the quirk off.  The result is the
``vendor_rewrite`` dict of a :class:`~cpuidkit.core.hosts.HostProfile`.

Bits KVM itself rewrites at runtime (OSXSAVE, APIC, OSPKE, 0xD.0/0xD.1 EBX)
are left out: KVM's runtime rules own them, whatever pvm does at SET time.
"""

from __future__ import annotations

from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.live.vcpu import LiveVcpu

# (function, index, register) → bits KVM's runtime update owns
RUNTIME_BITS = {
    (1, 0, "ecx"): 1 << 27,  # OSXSAVE
    (1, 0, "edx"): 1 << 9,  # APIC
    (7, 0, "ecx"): 1 << 4,  # OSPKE
    (0xD, 0, "ebx"): 0xFFFFFFFF,
    (0xD, 1, "ebx"): 0xFFFFFFFF,
    (0xD, 0, "eax"): 1 << 18,  # TILEDATA cannot be probed without permission (EPERM)
}
DROP_CANDIDATES = (0x12, 0x14, 0x17, 0x19, 0x1D, 0x1E, 0x1F, 0x20, 0x24, 0x80000026)


def _set_get(table: CpuidTable) -> CpuidTable:
    with LiveVcpu() as v:
        v.set_cpuid(table)
        return v.get_cpuid()


def _with_reg(table: CpuidTable, function: int, index: int, reg: str, value: int) -> CpuidTable:
    pos = table.find_position(function, index)
    assert pos is not None  # callers name entries taken from this table
    e = table[pos]
    return table.replace_at(pos, e.with_reg(reg, value))


def calibrate_pvm(supported: CpuidTable) -> dict:
    """Measure the pvm rewrite against the supported table (see the module docstring)."""
    base = supported
    registers: dict[str, dict[str, int]] = {}
    # 0xD subleaves 2..63: make every one present so its rewrite can be seen
    probe_base = base
    for sub in range(2, 64):
        e = probe_base.get(0xD, sub)
        if e is None or e.index != sub:
            probe_base = probe_base.appended(CpuidEntry(0xD, sub, 1))
    targets = [(e.function, e.index) for e in probe_base if e.function in (1, 7, 0xD)]
    zeros, ones = probe_base, probe_base
    for fn, idx in targets:
        for reg in ("eax", "ebx", "ecx", "edx"):
            zeros = _with_reg(zeros, fn, idx, reg, 0)
            ones = _with_reg(
                ones,
                fn,
                idx,
                reg,
                0xFFFFFFFF & ~RUNTIME_BITS.get((fn, idx, reg), 0) if (fn, idx, reg) == (0xD, 0, "eax") else 0xFFFFFFFF,
            )
    # one register at a time would isolate cross-register effects, but pvm replaces whole
    # leaves from host values, so the all-at-once probe gives the same masks far faster
    r0, r1 = _set_get(zeros), _set_get(ones)
    for fn, idx in targets:
        e0, e1 = r0.get(fn, idx), r1.get(fn, idx)
        if e0 is None or e1 is None or e0.index != idx:
            continue
        for reg in ("eax", "ebx", "ecx", "edx"):
            a, b = e0.reg(reg), e1.reg(reg)
            skip = RUNTIME_BITS.get((fn, idx, reg), 0)
            force1 = a & b & ~skip  # 1 whatever was set
            force0 = ~a & ~b & 0xFFFFFFFF & ~skip  # 0 whatever was set
            if force1 or force0:
                registers[f"{fn:#x}.{idx}.{reg}"] = {"force1": force1, "force0": force0}
    # dropped leaves
    probe = base
    for fn in DROP_CANDIDATES:
        if probe.get_any(fn) is None:
            probe = probe.appended(CpuidEntry(fn, 0, 1 if fn != 0x80000026 else 1, eax=0x11111111))
    back = _set_get(probe)
    dropped = sorted(fn for fn in DROP_CANDIDATES if probe.get_any(fn) is not None and back.get_any(fn) is None)
    # 0xD entries appended when the table has none
    no_xsave = base.without(0xD)
    back = _set_get(no_xsave)
    appended = [e.as_dict() for e in back if e.function == 0xD]
    return {
        "measured": True,
        "registers": registers,
        "dropped": dropped,
        "appended": appended,
        "cr4_valid": _cr4_mask(base),
        "mwait_quirk_off_forced_zero": _mwait_forced_zero(base),
        "mwait_toggle_needs_sse3": _mwait_toggle_checked(base),
        "xss_accepted": _xss_accepted(base),
    }


def _cr4_mask(table: CpuidTable) -> int:
    mask = 0
    for bit in list(range(0, 32)):
        with LiveVcpu() as v:
            v.set_cpuid(table)
            try:
                v.set_cr4(1 << bit)
                mask |= 1 << bit
            except KvmError:
                pass
    return mask


def _mwait_forced_zero(table: CpuidTable) -> bool:
    t = table.set_field("1.ecx[3]", 1).set_field("1.ecx[0]", 1)
    with LiveVcpu() as v:
        v.disable_quirk("MISC_ENABLE_NO_MWAIT")
        v.set_cpuid(t)
        try:
            v.set_msr(0x1A0, 1 << 18)
        except KvmError:
            return True
        leaf1 = v.get_cpuid().get(1)
        assert leaf1 is not None  # t has leaf 1 (set_field adds it), and KVM returns the table it was given
        return not leaf1.ecx >> 3 & 1


def _mwait_toggle_checked(table: CpuidTable) -> bool:
    """Upstream refuses a MISC_ENABLE.MWAIT toggle (quirk off) without SSE3; does this module?"""
    with LiveVcpu() as v:
        v.disable_quirk("MISC_ENABLE_NO_MWAIT")
        v.set_cpuid(table.without(1))  # no leaf 1: no SSE3 whatever the module forces
        try:
            v.set_msr(0x1A0, 1 << 18)
        except KvmError:
            return True
        return False


def _xss_accepted(table: CpuidTable) -> list[int]:
    """Which IA32_XSS values a host-initiated write accepts after setting ``table``."""
    ok = []
    for value in (0, 1 << 8, 1 << 11, 1 << 12, (1 << 11) | (1 << 12)):
        with LiveVcpu() as v:
            v.set_cpuid(table)
            try:
                v.set_msr(0xDA0, value)
                ok.append(value)
            except KvmError:
                pass
    return ok
