"""Vendor modules: what kvm_intel (vmx), kvm_amd (svm) and kvm_pvm do differently with CPUID.

vmx and svm keep the stored table as KVM's common code leaves it (their
``vcpu_after_set_cpuid`` hooks change internal state, not the table).  The
``pvm`` module on our machines rewrites leaves 1, 7 and 0xD after
KVM_SET_CPUID2 and drops 0x1D, 0x1E and 0x24 (``pvm_vcpu_after_set_cpuid``,
``pvm_drop_cpuid_leaf``; measured on the project's machines, see docs/model.md).  Its
code is not public, so its rewrite is **measured** on the live host
(``cpuidkit.live.calibrate``) and carried in the host profile as data:

``vendor_rewrite = {"registers": {"0x1.0.ecx": {"force1": m, "force0": m}, ...},
"dropped": [functions], "appended": [entries], "cr4_valid": mask}``

Without a measurement, the model says so (``measured=False``) and leaves the
table as upstream KVM would.
"""

from __future__ import annotations

from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.table import CpuidEntry, CpuidTable

# Leaves whose fields the pvm module owns (the rest of the table passes through).
PVM_OWNED_LEAVES = {1: None, 7: (0, 1), 0xD: None}
PVM_DROPPED = (0x1D, 0x1E, 0x24)


def _masks(host: HostProfile) -> dict[tuple[int, int], dict[str, tuple[int, int]]]:
    return host.rewrite_registers


def _dropped(host: HostProfile) -> frozenset[int]:
    return frozenset((host.vendor_rewrite or {}).get("dropped", PVM_DROPPED))


def pvm_rewrite(table: CpuidTable, host: HostProfile) -> CpuidTable:
    """Apply the host's measured pvm rewrite: forced bits per register, dropped leaves, appended 0xD entries."""
    masks = _masks(host)
    # only entries of the masked functions can be rewritten (or shadow one that is)
    dropped, masked = _dropped(host), frozenset(fn for fn, _ in masks)
    out: list[CpuidEntry] = []
    append = out.append
    seen_first: set[tuple[int, int]] = set()
    has_leaf1 = has_0xd = False
    for e in table:
        fn = e.function
        if fn in dropped:
            continue
        if fn == 1:
            has_leaf1 = True
        elif fn == 0xD:
            has_0xd = True
        if fn not in masked:
            append(e)
            continue
        key = (fn, e.index if e.flags & 1 else 0)
        first = key not in seen_first
        seen_first.add(key)
        regs = masks.get((fn, e.index)) if first else None
        if regs:
            vals = {r: (e.reg(r) | f1) & ~f0 & 0xFFFFFFFF for r, (f1, f0) in regs.items()}
            e = CpuidEntry.trusted(
                fn,
                e.index,
                e.flags,
                vals.get("eax", e.eax),
                vals.get("ebx", e.ebx),
                vals.get("ecx", e.ecx),
                vals.get("edx", e.edx),
            )
        append(e)
    appended = (host.vendor_rewrite or {}).get("appended", [])
    # measured: the 0xD entries are appended only while the table as set, plus them, fits
    # KVM_MAX_CPUID_ENTRIES (a 251-entry table got none, 248 after the drops); all or none
    if has_leaf1 and not has_0xd and len(table) + len(appended) <= 256:
        out.extend(CpuidEntry(**a) for a in appended)
    return CpuidTable._of(out)


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
