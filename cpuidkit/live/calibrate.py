"""Measure what this host's vendor module does to CPUID, so the model can predict it.

The pvm module's CPUID code (``pvm_vcpu_after_set_cpuid`` and friends) is not
public.  Instead of guessing, we ask the kernel: set each register of the
leaves pvm owns to all-zeros and to all-ones on a fresh vCPU, read back with
KVM_GET_CPUID2, and record which bits came back forced to 1 or to 0.  The
module finds the entries it rewrites with KVM's own lookup (first match; the
index counts only on entries flagged KVM_CPUID_FLAG_SIGNIFCANT_INDEX), so the
probes name every subleaf with a flagged entry of its own.  The same probes,
made in the two other contexts the module distinguishes, give the bits it hides
there: a table whose 0xD.0 ends up without AVX state (``no_ymm``), and one
with no 0xD.0 at all that has no room left for the entries it appends
(``absent``).  Further probes find the leaves it drops, the 0xD entries it
appends (and up to which table size), TILEDATA in 0xD.0 once the guest has
AMX permission, its fixed CR4 mask and what it does to MWAIT with the quirk
off.  The result is the ``vendor_rewrite`` dict of a
:class:`~cpuidkit.core.hosts.HostProfile` (documented in
:mod:`cpuidkit.kvm.vendors`; the findings, with their evidence, are rows of
``data/pvm-behaviours.csv``).

Bits KVM itself rewrites at runtime (OSXSAVE, APIC, OSPKE, 0xD.0/0xD.1 EBX)
are left out: KVM's runtime rules own them, whatever pvm does at SET time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.live.system import supported_cpuid, xfeature_permissions
from cpuidkit.live.vcpu import LiveVcpu

# (function, index, register) → bits KVM's runtime update owns
RUNTIME_BITS = {
    (1, 0, "ecx"): 1 << 27,  # OSXSAVE
    (1, 0, "edx"): 1 << 9,  # APIC
    (7, 0, "ecx"): 1 << 4,  # OSPKE
    (0xD, 0, "ebx"): 0xFFFFFFFF,
    (0xD, 1, "ebx"): 0xFFFFFFFF,
}
TILEDATA = 1 << 18  # 0xD.0 EAX bit 18: KVM_SET_CPUID2 gives EPERM without the guest permission
DROP_CANDIDATES = (0x12, 0x14, 0x17, 0x19, 0x1D, 0x1E, 0x1F, 0x20, 0x24, 0x80000026)
MAX_ENTRIES = 256  # KVM_MAX_CPUID_ENTRIES
FEATURE_KEYS = ((1, 0), (7, 0), (7, 1))
REGS = ("eax", "ebx", "ecx", "edx")


def _set_get(table: CpuidTable) -> CpuidTable:
    with LiveVcpu() as v:
        v.set_cpuid(table)
        return v.get_cpuid()


def _with_reg(table: CpuidTable, function: int, index: int, reg: str, value: int) -> CpuidTable:
    pos = table.find_position(function, index)
    assert pos is not None  # callers name entries taken from this table
    e = table[pos]
    return table.replace_at(pos, e.with_reg(reg, value))


def _filled(table: CpuidTable, n: int) -> CpuidTable:
    """``table`` padded to ``n`` entries with zeroed hypervisor-range leaves (which every module passes through)."""
    return table.appended(*(CpuidEntry(0x40000100 + i) for i in range(max(n - len(table), 0))))


def _permitted() -> bool:
    """Whether this process may give its vCPUs AMX TILEDATA (ARCH_GET_XCOMP_GUEST_PERM)."""
    return bool((xfeature_permissions(None).get("guest") or 0) & TILEDATA)


def _probe_value(fn: int, reg: str, value: int, original: int, tiledata: bool, d0: bool) -> int:
    """``value`` for a probe register, keeping what KVM would refuse: the linear-address width (EINVAL unless
    0, 48 or 57) and, without the permission, TILEDATA in the entry KVM's lookup takes for 0xD.0 (EPERM)."""
    if (fn, reg) == (0x8000_0008, "eax"):
        return value & ~0xFF00 | original & 0xFF00
    if d0 and reg == "eax" and not tiledata:
        return value & ~TILEDATA
    return value


def _skip(fn: int, idx: int, reg: str, tiledata: bool) -> int:
    """Bits a probe does not measure: KVM's runtime bits and what :func:`_probe_value` keeps."""
    skip = RUNTIME_BITS.get((fn, idx, reg), 0)
    if (fn, reg) == (0x8000_0008, "eax"):
        skip |= 0xFF00
    if (fn, idx, reg) == (0xD, 0, "eax") and not tiledata:
        skip |= TILEDATA
    return skip


Forced = dict[tuple[int, int, str], tuple[int, int]]


def _forced(base: CpuidTable, targets: list[tuple[int, int]] | None, tiledata: bool) -> Forced:
    """Bits of each target register (``None``: every entry of ``base``) that come back 1 (force1) or 0 (force0)
    whatever was set; a register that passes through has neither."""
    keys = targets if targets is not None else list(dict.fromkeys(e.key() for e in base))
    if targets is None:
        positions = list(range(len(base)))
    else:
        positions = [p for p in (base.find_position(fn, idx) for fn, idx in targets) if p is not None]
    p0 = base.find_position(0xD, 0)
    zeros, ones = base, base
    for pos in positions:
        e = base[pos]
        z = [_probe_value(e.function, r, 0, e.reg(r), tiledata, pos == p0) for r in REGS]
        o = [_probe_value(e.function, r, 0xFFFFFFFF, e.reg(r), tiledata, pos == p0) for r in REGS]
        zeros = zeros.replace_at(pos, CpuidEntry(e.function, e.index, e.flags, *z))
        ones = ones.replace_at(pos, CpuidEntry(e.function, e.index, e.flags, *o))
    # one register at a time would isolate cross-register effects, but pvm replaces whole
    # leaves from host values, so the all-at-once probe gives the same masks far faster
    r0, r1 = _set_get(zeros), _set_get(ones)
    out: Forced = {}
    for fn, idx in keys:
        e0, e1 = r0.get(fn, idx), r1.get(fn, idx)
        if e0 is None or e1 is None or e0.index != idx or e1.index != idx:
            continue
        for reg in REGS:
            a, b = e0.reg(reg), e1.reg(reg)
            skip = _skip(fn, idx, reg, tiledata)
            out[(fn, idx, reg)] = (a & b & ~skip, ~a & ~b & 0xFFFFFFFF & ~skip)
    return out


def _key(fn: int, idx: int, reg: str) -> str:
    return f"{fn:#x}.{idx}.{reg}"


def _hidden(normal: Forced, ctx: Forced) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Bits that come back 1 from an all-ones probe normally (forced or passed through) and are forced to 0 in
    another context; anything else that differs is returned apart.  Leaf 0xD is left out: its subleaves follow
    the rewritten XCR0 (a rule of the model, see :mod:`cpuidkit.kvm.vendors`)."""
    hidden: dict[str, int] = {}
    other: dict[str, list[int]] = {}
    for k, (f1, f0) in ctx.items():
        if k[0] == 0xD or k not in normal:
            continue
        n1, n0 = normal[k]
        h = f0 & ~n0
        if h:
            hidden[_key(*k)] = h
        if f1 != n1 & ~h:
            other[_key(*k)] = [f1, f0]
    return hidden, other


def calibrate_pvm(supported: CpuidTable) -> dict:
    """Measure the pvm rewrite against the supported table (see the module docstring)."""
    base = supported
    tiledata = _permitted()
    # 0xD subleaves 1..63: a flagged entry of each, so KVM's lookup finds every one by itself
    probe_base = base
    for sub in range(1, 64):
        e = probe_base.get(0xD, sub)
        if e is None or e.index != sub:
            probe_base = probe_base.appended(CpuidEntry(0xD, sub, 1))
    # every register of every entry: the module's own leaves give the forced bits, the others show that they
    # pass through here and are the reference for what the other contexts hide
    normal = _forced(probe_base, None, tiledata)
    registers = {
        _key(*k): {"force1": f1, "force0": f0} for k, (f1, f0) in normal.items() if (f1 or f0) and k[0] in (1, 7, 0xD)
    }
    others = sorted(
        {_key(*k)[: _key(*k).rindex(".")] for k, (f1, f0) in normal.items() if (f1 or f0) and k[0] not in (1, 7, 0xD)}
    )
    if not tiledata:
        bit = _tiledata(base)
        if bit is not None:
            reg = registers.setdefault(_key(0xD, 0, "eax"), {"force1": 0, "force0": 0})
            reg["force1"] |= bit[0]
            reg["force0"] |= bit[1]
    # no 0xD.0 and no room for the appended entries: what the module hides then
    absent = _forced(_filled(probe_base.without(0xD, 0), MAX_ENTRIES), None, tiledata)
    # 0xD.0 unflagged and first of its leaf: every 0xD lookup lands on it, and it ends as the last subleaf's
    # (all-zero) data: XCR0 without AVX state
    pos = probe_base.find_position(0xD, 0)
    assert pos is not None
    no_ymm_base = probe_base.replace_at(pos, probe_base[pos].replace(flags=0))
    no_ymm = _forced(no_ymm_base, None, tiledata)
    hidden_absent, other_absent = _hidden(normal, absent)
    hidden_no_ymm, other_no_ymm = _hidden(normal, no_ymm)
    d0 = _set_get(no_ymm_base).get(0xD, 0)
    # dropped leaves
    probe = base
    for fn in DROP_CANDIDATES:
        if probe.get_any(fn) is None:
            probe = probe.appended(CpuidEntry(fn, 0, 1, eax=0x11111111))
    back = _set_get(probe)
    dropped = sorted(fn for fn in DROP_CANDIDATES if probe.get_any(fn) is not None and back.get_any(fn) is None)
    appended, limit = _appended(probe_base, base, frozenset(dropped))
    return {
        "measured": True,
        "registers": registers,
        "hidden": {"absent": hidden_absent, "no_ymm": hidden_no_ymm},
        "unexplained": {"absent": other_absent, "no_ymm": other_no_ymm, "rewritten_elsewhere": others},
        "no_ymm_xcr0": None if d0 is None else d0.eax | d0.edx << 32,
        "dropped": dropped,
        "appended": appended,
        "append_limit": limit,
        "cr4_valid": _cr4_mask(base),
        "mwait_quirk_off_forced_zero": _mwait_forced_zero(base),
        "mwait_toggle_needs_sse3": _mwait_toggle_checked(base),
        "xss_accepted": _xss_accepted(base),
    }


def _appended(probe_base: CpuidTable, base: CpuidTable, dropped: frozenset[int]) -> tuple[list[dict], int]:
    """The entries the module appends when KVM's lookup finds no 0xD.0, as it appends them, and the largest
    table (as set) it appends them to.

    Every other 0xD subleaf keeps a flagged entry of its own ahead of the appended ones, so those come back
    as the module wrote them (its rewrite lands on the originals); only the appended 0xD.0 is rewritten."""
    table = probe_base.without(0xD, 0)
    kept = sum(e.function not in dropped for e in table)
    back = _set_get(table)
    appended = [e.as_dict() for e in list(back)[kept:]]
    no_xsave = base.without(0xD)
    lo, hi = len(no_xsave), MAX_ENTRIES  # the largest n that gets them lies in [lo - 1, hi]

    def gets(n: int) -> bool:
        return any(e.function == 0xD for e in _set_get(_filled(no_xsave, n)))

    if not appended or not gets(lo):
        return appended, lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if gets(mid):
            lo = mid
        else:
            hi = mid - 1
    return appended, lo


_CHILD = "from cpuidkit.live.calibrate import _tiledata_child; _tiledata_child()"


def _tiledata(base: CpuidTable) -> tuple[int, int] | None:
    """TILEDATA in 0xD.0 EAX once the guest has AMX permission: (force1, force0) for bit 18, or None when the
    host cannot grant it.  The permission is per process and locked once a vCPU exists, so a fresh
    interpreter asks for it and probes."""
    if not (xfeature_permissions(None).get("supported") or 0) & TILEDATA:
        return None
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, env=env, check=True
        )
        doc = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return (doc["force1"], doc["force0"]) if "force1" in doc else None


def _tiledata_child() -> None:
    """In a fresh process: ask for TILEDATA permission, set 0xD.0 EAX to all-zeros and all-ones, print bit 18."""
    try:
        with LiveVcpu() as v:  # a VM only: the permission must come before the first vCPU
            v.grant_xfeature_permission(TILEDATA)
        base = supported_cpuid()
        e0 = _set_get(_with_reg(base, 0xD, 0, "eax", 0)).get(0xD, 0)
        e1 = _set_get(_with_reg(base, 0xD, 0, "eax", 0xFFFFFFFF)).get(0xD, 0)
    except KvmError as e:
        print(json.dumps({"error": str(e)}))
        return
    assert e0 is not None and e1 is not None
    a, b = e0.eax & TILEDATA, e1.eax & TILEDATA
    print(json.dumps({"force1": a & b, "force0": ~a & ~b & TILEDATA}))


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
