"""Vendor modules: what kvm_intel (vmx), kvm_amd (svm) and kvm_pvm do differently with CPUID.

vmx and svm keep the stored table as KVM's common code leaves it (their
``vcpu_after_set_cpuid`` hooks change internal state, not the table).  The
``pvm`` module on our machines rewrites leaves 1, 7 and 0xD after
KVM_SET_CPUID2 and drops 0x1D, 0x1E and 0x24 (``pvm_vcpu_after_set_cpuid``,
``pvm_drop_cpuid_leaf``; measured on the project's machines, see docs/model.md).  Its
code is not public, so its rewrite is **measured** on the live host
(``cpuidkit.live.calibrate``) and carried in the host profile as data::

    vendor_rewrite = {
        "registers": {"0x1.0.ecx": {"force1": m, "force0": m}, ...},  # bits forced whatever was set
        "hidden": {"absent": {"0x1.0.ecx": m, ...}, "no_ymm": {...}},  # forced-1 bits it clears instead
        "dropped": [functions], "appended": [entries], "append_limit": n, "cr4_valid": mask, ...}

How it applies them is the same on every host (``data/pvm-behaviours.csv``, measured live): it finds each
entry with KVM's lookup (``cpuid_entry2_find``: the first entry of the function, whose index counts only
when it carries the significant-index flag), rewriting 1.0, 7.0, 7.1 and 0xD.0 … 0xD.63 in that order, so
an unflagged entry can receive several subleaves' data and keeps the last; when the lookup finds no 0xD.0
while leaf 1 is found, it appends its 0xD entries at the end (duplicates included) if the table as set plus
them fits in 256 entries; otherwise there is no XSAVE state (``absent``: XSAVE, the AVX family and every
0xD.n ≥ 2 it finds are cleared); a 0xD.0 whose rewritten XCR0 lacks AVX state hides the AVX family
(``no_ymm``).  Which bits each context clears is measured per host.

Without a measurement, the model says so (``measured=False``) and leaves the
table as upstream KVM would.
"""

from __future__ import annotations

from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.table import CpuidEntry, CpuidTable

# Leaves whose fields the pvm module owns (the rest of the table passes through).
PVM_OWNED_LEAVES = {1: None, 7: (0, 1), 0xD: None}
PVM_DROPPED = (0x1D, 0x1E, 0x24)
MAX_CPUID_ENTRIES = 256
XFEATURE_YMM = 1 << 2
# The order of the module's lookups (measured: an unflagged 7.0 keeps 7.1's data, an unflagged 0xD.0 the last
# subleaf's); the 0xD part comes first here because the feature leaves depend on its outcome (their lookups
# never land on a 0xD entry, so the order between the two groups changes nothing).
XSAVE_KEYS = tuple((0xD, n) for n in range(64))
FEATURE_KEYS = ((1, 0), (7, 0), (7, 1))


def _masks(host: HostProfile) -> dict[tuple[int, int], dict[str, tuple[int, int]]]:
    return host.rewrite_registers


def _dropped(host: HostProfile) -> frozenset[int]:
    return frozenset((host.vendor_rewrite or {}).get("dropped", PVM_DROPPED))


def _hidden(host: HostProfile, context: str) -> dict[tuple[int, int], dict[str, int]]:
    out: dict[tuple[int, int], dict[str, int]] = {}
    for key, mask in ((host.vendor_rewrite or {}).get("hidden", {}).get(context) or {}).items():
        fn, idx, reg = key.split(".")
        out.setdefault((int(fn, 16), int(idx)), {})[reg] = mask
    return out


def _find(entries: list[CpuidEntry], function: int, index: int) -> int | None:
    """KVM's ``cpuid_entry2_find``: the first entry of ``function`` that is unflagged or has ``index``."""
    for pos, e in enumerate(entries):
        if e.function == function and (not e.flags & 1 or e.index == index):
            return pos
    return None


def _positions(entries: list[CpuidEntry], function: int) -> list[int]:
    return [pos for pos, e in enumerate(entries) if e.function == function]


def _rewrite(
    entries: list[CpuidEntry],
    keys: tuple[tuple[int, int], ...],
    masks: dict[tuple[int, int], dict[str, tuple[int, int]]],
    hidden: dict[tuple[int, int], dict[str, int]],
) -> None:
    """Each key's forced bits (and the context's hidden ones) on the entry KVM's lookup finds for it, in order."""
    where = {fn: _positions(entries, fn) for fn in {k[0] for k in keys}}
    for fn, idx in keys:
        regs = masks.get((fn, idx), {})
        hide = hidden.get((fn, idx), {})
        if not regs and not hide:
            continue
        # the lookup over this function's entries only (a rewrite changes values, never function/index/flags)
        pos = next((p for p in where[fn] if not entries[p].flags & 1 or entries[p].index == idx), None)
        if pos is None:
            continue
        e = entries[pos]
        vals = [e.eax, e.ebx, e.ecx, e.edx]
        for i, r in enumerate(("eax", "ebx", "ecx", "edx")):
            f1, f0 = regs.get(r, (0, 0))
            h = hide.get(r, 0)
            vals[i] = (vals[i] | (f1 & ~h)) & ~(f0 | h) & 0xFFFFFFFF
        entries[pos] = CpuidEntry.trusted(e.function, e.index, e.flags, *vals)


def append_limit(host: HostProfile) -> int:
    """The largest table (entries as set) the pvm module still appends its 0xD entries to (measured; else
    what leaves room for them under KVM_MAX_CPUID_ENTRIES)."""
    rewrite = host.vendor_rewrite or {}
    limit = rewrite.get("append_limit")
    return int(limit) if limit is not None else MAX_CPUID_ENTRIES - len(rewrite.get("appended", []))


def pvm_context(table: CpuidTable, host: HostProfile) -> str:
    """Which of the module's cases a table as set falls in: ``normal``, ``appended`` (0xD entries added),
    ``absent`` (no 0xD.0 and none added) or ``no_ymm`` (0xD.0 rewritten to an XCR0 without AVX state)."""
    return _pvm(table, host)[1]


def pvm_rewrite(table: CpuidTable, host: HostProfile) -> CpuidTable:
    """Apply the host's measured pvm rewrite the way the module does (see the module docstring)."""
    return _pvm(table, host)[0]


def _pvm(table: CpuidTable, host: HostProfile) -> tuple[CpuidTable, str]:
    masks = _masks(host)
    dropped = _dropped(host)
    entries = [e for e in table if e.function not in dropped]
    context = "normal"
    if _find(entries, 0xD, 0) is None:
        appended = (host.vendor_rewrite or {}).get("appended", [])
        # measured: only when leaf 1 is found, and only while the table as set plus them fits (all or none)
        if appended and _find(entries, 1, 0) is not None and len(table) <= append_limit(host):
            entries.extend(CpuidEntry(**a) for a in appended)
            context = "appended"
        else:
            context = "absent"
    _rewrite(entries, XSAVE_KEYS, masks, {})
    # then the XCR0 the rewritten 0xD.0 holds (none without one) decides: every subleaf n >= 2 outside it is
    # cleared where KVM's lookup finds it (measured: flagged 0xD.2/5/6/7 behind an unflagged 0xD.3 that took
    # the place of 0xD.0 come back all zero), and without AVX state the AVX family is hidden
    pos = _find(entries, 0xD, 0)
    xcr0 = 0 if pos is None else entries[pos].eax | entries[pos].edx << 32
    where = _positions(entries, 0xD)
    for n in range(2, 64):
        if not xcr0 >> n & 1:
            p = next((q for q in where if not entries[q].flags & 1 or entries[q].index == n), None)
            if p is not None and (entries[p].eax | entries[p].ebx | entries[p].ecx | entries[p].edx):
                e = entries[p]
                entries[p] = CpuidEntry.trusted(e.function, e.index, e.flags, 0, 0, 0, 0)
    if context != "absent" and not xcr0 & XFEATURE_YMM and _hidden(host, "no_ymm"):
        context = "no_ymm"
    hidden = _hidden(host, context) if context in ("absent", "no_ymm") else {}
    # the hidden bits can lie beyond leaves 1 and 7 (0x80000001 ECX XOP and FMA4 on the Intel host measured)
    keys = FEATURE_KEYS + tuple(sorted(k for k in hidden if k not in FEATURE_KEYS))
    _rewrite(entries, keys, masks, hidden)
    return CpuidTable._of(entries), context


def vendor_after_set(vendor: str, stored: CpuidTable, host: HostProfile) -> CpuidTable | None:
    """The vendor hook after a successful KVM_SET_CPUID2; returns the table to store (or None: unchanged)."""
    if vendor != "pvm" or not host.vendor_rewrite:
        return None
    return pvm_rewrite(stored, host)


def vendor_cr4_valid(vendor: str, value: int, host: HostProfile) -> bool | None:
    """pvm checks CR4 against a fixed mask (measured); None means "use KVM's CPUID-derived rule"."""
    if vendor != "pvm":
        return None
    rewrite = host.vendor_rewrite or {}
    mask = rewrite.get("cr4_valid")
    if mask is None:
        return None
    return not value & ~int(mask)


def vendor_mask(vendor: str, host: HostProfile, function: int, index: int, reg: str) -> int:
    """The bits of a register the vendor module decides (measured where possible)."""
    if vendor != "pvm":
        return 0
    if function in _dropped(host):
        return 0xFFFFFFFF
    if host.vendor_rewrite:
        m = _masks(host).get((function, index), {}).get(reg)
        return (m[0] | m[1]) if m else 0
    if function in PVM_OWNED_LEAVES:
        subs = PVM_OWNED_LEAVES[function]
        return 0xFFFFFFFF if subs is None or index in subs else 0
    return 0


def vendor_runtime(
    vendor: str, entries: list[CpuidEntry], host: HostProfile, quirks_disabled: set[str] | list[str]
) -> list[CpuidEntry]:
    """Vendor effects on KVM's runtime update: pvm keeps MWAIT at 0 with the quirk off (measured)."""
    if vendor != "pvm":
        return entries
    rewrite = host.vendor_rewrite or {}
    if rewrite.get("mwait_quirk_off_forced_zero") and "MISC_ENABLE_NO_MWAIT" in quirks_disabled:
        for pos, e in enumerate(entries):
            if e.function == 1:
                entries[pos] = e.replace(ecx=e.ecx & ~(1 << 3))
                break
    return entries


def vendor_mwait_checked(vendor: str, host: HostProfile) -> bool:
    """Whether a MISC_ENABLE.MWAIT toggle (quirk off) needs SSE3 (upstream: yes; pvm: measured)."""
    if vendor != "pvm":
        return True
    return bool((host.vendor_rewrite or {}).get("mwait_toggle_needs_sse3", True))


def vendor_xss_accepted(vendor: str, host: HostProfile) -> list[int] | None:
    """The IA32_XSS values the vendor module accepted when measured (None: use KVM's rule)."""
    if vendor != "pvm":
        return None
    return (host.vendor_rewrite or {}).get("xss_accepted")
