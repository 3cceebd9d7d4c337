"""Kernel-version notes: which rows of ``data/kvm-behaviours.csv`` that change between 5.10 and 6.18 touch
something a template uses, and what ``data/kvm-feature-history.csv`` says about the template's fields.

Which changes touch a template is data: the ``review`` column of ``data/kvm-behaviours.csv`` names, per id, a
condition of :data:`CONDITIONS`, or ``general`` or ``vmm_call``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cpuidkit._files import data_path
from cpuidkit.analysis.addressing import guest_phys_bits_field
from cpuidkit.analysis.review.document import _names, _plural
from cpuidkit.analysis.review.facts import _TILEDATA, _Ctx, _flag
from cpuidkit.core.bits import extract_bits
from cpuidkit.core.catalog import catalog
from cpuidkit.core.history import _history, predicted_present
from cpuidkit.core.kernels import (
    MODELLED_KERNELS,
    all_behaviour_ids,
    behaviour_class,
    behaviour_rows,
    parse_version,
)
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import compacted_size, supported_xss
from cpuidkit.errors import InputError
from cpuidkit.kvm.runtime import kvm_pv_base

__all__ = ["CONDITIONS", "GENERAL", "VMM_CALL", "REVIEW_CLASSES", "review_class", "changing_behaviours"]

_OLDEST, _NEWEST = MODELLED_KERNELS[0], MODELLED_KERNELS[-1]
_KERNEL_AXIS = MODELLED_KERNELS

# -- kernel-version notes ---------------------------------------------------------------------------
#
# A behaviour whose value changes inside the modelled range matters to a template when the template uses what
# the behaviour is about.  The ``review`` column of data/kvm-behaviours.csv classifies every id: the name of a
# condition of CONDITIONS (a test on the template), GENERAL (about every table: re-setting CPUID after KVM_RUN,
# runtime updates) or VMM_CALL (VMM calls whose outcome does not depend on the table); tests/test_review.py
# checks that every id has one of them.

Relevance = Callable[[_Ctx, str, str], "str | None"]


def _amx(c: _Ctx, old: str, new: str) -> str | None:
    if c.m0 & (0b11 << 17):
        return "the template enables AMX state in 0xD.0 EAX (bits 17-18)"
    return None


def _tiledata(c: _Ctx, old: str, new: str) -> str | None:
    if c.m0 & _TILEDATA:
        return "the template enables AMX TILEDATA (0xD.0 EAX[18]), a dynamic XSAVE feature"
    return None


def _cet_smaller(c: _Ctx, old: str, new: str) -> str | None:
    if (c.has("shstk") or c.has("ibt")) and c.g_maxpa < c.host.maxphyaddr and c.vendor == "vmx":
        return (
            f"the template has CET (shstk/ibt) and a MAXPHYADDR ({c.g_maxpa}) below the host's "
            f"({c.host.maxphyaddr}), which a host may handle with kvm_intel.allow_smaller_maxphyaddr=1"
        )
    return None


def _caps(c: _Ctx, old: str, new: str) -> str | None:
    if c.beyond:
        return (
            f"the template advertises {_plural(len(c.beyond), 'feature')} KVM does not virtualize on this "
            f"host ({_names(c.beyond, 6)})"
        )
    return None


def _added_tokens(old: str, new: str) -> list[str]:
    a = {x.split("<-")[0].strip(): x for x in old.split(";") if x.strip()}
    b = {x.split("<-")[0].strip(): x for x in new.split(";") if x.strip()}
    return [b[k] for k in b if k not in a] + [a[k] for k in a if k not in b]


_CR4_FEATURE_FLAGS = {
    "PCIDE": ("pcid",),
    "LAM_SUP": ("lam",),
    "CET": ("shstk", "ibt"),
    "OSXSAVE": ("xsave",),
    "SMEP": ("smep",),
    "SMAP": ("smap",),
    "FSGSBASE": ("fsgsbase",),
    "PKE": ("pku",),
    "LA57": ("la57",),
    "UMIP": ("umip",),
    "VMXE": ("vmx",),
}
_EFER_FEATURE_FLAGS = {
    "AUTOIBRS": ("autoibrs",),
    "LME": ("lm",),
    "LMA": ("lm",),
    "NX": ("nx",),
    "SVME": ("svm",),
    "FFXSR": ("fxsr_opt",),
}


def _token_rule(table: Mapping[str, tuple[str, ...]], what: str) -> Relevance:
    def rel(c: _Ctx, old: str, new: str) -> str | None:
        hits = []
        for tok in _added_tokens(old, new):
            bit = tok.split("<-")[0].strip()
            flags = table.get(bit, ())
            if any(c.has(f) for f in flags):
                hits.append(f"{what}.{bit} ({'/'.join(flags)} in the template)")
        return f"it concerns {', '.join(hits)}" if hits else None

    return rel


def _gpb(c: _Ctx, old: str, new: str) -> str | None:
    gpb = guest_phys_bits_field(c.t)
    if gpb:
        return f"the template sets GuestPhysBits (0x80000008 EAX[23:16]) to {gpb}"
    if c.g_maxpa > c.usable:
        return (
            f"the template's MAXPHYADDR ({c.g_maxpa}) is above what this host can map ({c.usable} bits), "
            "which is what GuestPhysBits tells firmware"
        )
    return None


def _pv_base(c: _Ctx, old: str, new: str) -> str | None:
    bases = sorted({e.function for e in c.t if 0x40000000 <= e.function < 0x40010000 and not e.function & 0xFF})
    kvm = kvm_pv_base(list(c.t))
    if kvm is not None and (kvm != 0x40000000 or len(bases) > 1):
        return f"the template's KVM leaves start at {kvm:#x} (hypervisor bases {', '.join(map(hex, bases))})"
    return None


def _memslot(c: _Ctx, old: str, new: str) -> str | None:
    if c.g_maxpa > c.host.maxphyaddr:
        return f"the template's MAXPHYADDR ({c.g_maxpa}) is above the host's ({c.host.maxphyaddr})"
    return None


def _osxsave(c: _Ctx, old: str, new: str) -> str | None:
    if c.has("xsave") and not c.host.has_xsave:
        return "the template has XSAVE and the host does not: OSXSAVE tracks CR4 only from 6.14"
    return None


def _ospke(c: _Ctx, old: str, new: str) -> str | None:
    if c.has("pku") and not c.host.has_pku:
        return "the template has PKU and the host does not: OSPKE tracks CR4 only from 6.14"
    return None


def _os_both(c: _Ctx, old: str, new: str) -> str | None:
    return _osxsave(c, old, new) or _ospke(c, old, new)


def _pv_unhalt(c: _Ctx, old: str, new: str) -> str | None:
    if c.kvm_pv_unhalt:
        return "the template offers KVM_FEATURE_PV_UNHALT, which KVM clears when HLT exits are disabled"
    return None


def _nx(c: _Ctx, old: str, new: str) -> str | None:
    if c.has("nx") and not _flag(c.host.cpuid, "nx"):
        return "the template has NX and the host does not"
    return None


def _sgx(c: _Ctx, old: str, new: str) -> str | None:
    if c.has("sgx"):
        return "the template advertises SGX"
    return None


def _cet_xss(c: _Ctx, old: str, new: str) -> str | None:
    if supported_xss(c.t) & (0b11 << 11) or c.has("shstk") or c.has("ibt"):
        return "the template enumerates CET (shstk/ibt, or CET_U/CET_S in 0xD.1 ECX)"
    return None


def _xsaves(c: _Ctx, old: str, new: str) -> str | None:
    if c.has("xsaves"):
        return "the template has XSAVES (0xD.1 EAX[3])"
    return None


def _compacted(c: _Ctx, old: str, new: str) -> str | None:
    if c.has("xsavec") or c.has("xsaves"):
        return "the template has XSAVEC/XSAVES, so KVM computes the compacted size in 0xD.1 EBX"
    return None


def _alignment(c: _Ctx, old: str, new: str) -> str | None:
    if not (c.has("xsavec") or c.has("xsaves")):
        return None
    comps = c.host.xsave_components
    x = c.m0 | 1
    a, u = compacted_size(comps, x), compacted_size(comps, x, honour_alignment=False)
    if a != u:
        return (
            f"for the template's XCR0 {x:#x} the compacted size is {u} bytes without and {a} with the "
            "alignment flag on this host's components"
        )
    return None


# The named conditions the review column may use; each takes the context and the old and new value.
CONDITIONS: dict[str, Relevance] = {
    "amx": _amx,
    "tiledata": _tiledata,
    "cet_smaller_maxphyaddr": _cet_smaller,
    "beyond_host": _caps,
    "cr4_bits": _token_rule(_CR4_FEATURE_FLAGS, "CR4"),
    "efer_bits": _token_rule(_EFER_FEATURE_FLAGS, "EFER"),
    "guest_phys_bits": _gpb,
    "pv_base": _pv_base,
    "maxphyaddr_above_host": _memslot,
    "osxsave": _osxsave,
    "ospke": _ospke,
    "osxsave_or_ospke": _os_both,
    "pv_unhalt": _pv_unhalt,
    "nx_without_host_nx": _nx,
    "sgx": _sgx,
    "cet": _cet_xss,
    "xsaves": _xsaves,
    "compacted": _compacted,
    "compacted_alignment": _alignment,
}
# About every table that has runtime-owned fields or is set again after KVM_RUN (snapshot restore, hotplug).
GENERAL = "general"
# VMM calls whose outcome does not depend on the CPUID table's content.
VMM_CALL = "vmm_call"
REVIEW_CLASSES = frozenset(CONDITIONS) | {GENERAL, VMM_CALL}


def review_class(bid: str) -> str:
    """The review class of a behaviour id, from the ``review`` column of ``data/kvm-behaviours.csv``."""

    cls = behaviour_class(bid)
    if cls not in REVIEW_CLASSES:
        raise InputError(
            f"review class {cls!r} of {bid!r} is not one of: {', '.join(sorted(REVIEW_CLASSES))}",
            source=str(data_path("kvm-behaviours.csv")),
            where=bid,
        )
    return cls


def _transitions(bid: str) -> list[tuple]:
    """Value changes of a behaviour inside [5.10, 6.18]: (version, old row, new row)."""

    lo, hi = parse_version(_OLDEST), parse_version(_NEWEST)
    rows = sorted(behaviour_rows(bid), key=lambda r: r.since or (0, 0))
    out = []
    for a, b in zip(rows, rows[1:]):
        if b.since is None or not lo < b.since <= hi:
            continue
        if a.value != b.value:
            out.append((b.since, a, b))
    return out


def changing_behaviours() -> list[str]:
    """Ids whose value changes between 5.10 and 6.18."""

    return [bid for bid in all_behaviour_ids() if _transitions(bid)]


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _change_text(old: str, new: str) -> str:
    """``old → new``; for ';'-lists only what was added (+) or removed (-)."""
    if ";" in old and ";" in new:
        a = [x.strip() for x in old.split(";") if x.strip()]
        b = [x.strip() for x in new.split(";") if x.strip()]
        parts = [f"+{x}" for x in b if x not in a] + [f"-{x}" for x in a if x not in b]
        return "; ".join(parts) if parts else "reordered"
    return f"{_short(old)} → {_short(new)}"


def _kernel_notes(c: _Ctx) -> tuple[list[dict], list[dict]]:
    k = parse_version(c.kernel)
    specific, general = [], []
    for bid in changing_behaviours():
        for since, old, new in _transitions(bid):
            when = "in effect" if since <= k else "after an upgrade"
            note = {
                "id": bid,
                "version": f"{since[0]}.{since[1]}",
                "when": when,
                "old": old.value,
                "new": new.value,
                "summary": new.summary,
                "source": new.source,
                "verified": new.verified,
            }
            cls = review_class(bid)
            if cls == GENERAL:
                general.append(note)
            elif cls != VMM_CALL:
                why = CONDITIONS[cls](c, old.value, new.value)
                if why:
                    specific.append(dict(note, why=why))
    return specific, general


def _history_notes(c: _Ctx) -> list[str]:
    """Fields of kvm-feature-history.csv the template sets while the kernel does not report them, or leaves
    out while the kernel would report them on this host."""

    out = []
    for name, row in _history().items():
        pred = predicted_present(name, c.kernel)
        if pred is None:
            continue

        def present(t: CpuidTable, name: str = name) -> bool:
            if name[:2] == "0x" and "." in name and not catalog().by_name(name):
                leaf, sub = name.split(".")
                e = t.get(int(leaf, 16), int(sub))
                return e is not None and e.index == int(sub) and bool(e.eax or e.ebx or e.ecx or e.edx)
            for f in catalog().by_name(name):
                e = t.get(f.leaf, f.sub_lo)
                if e is not None and extract_bits(e.reg(f.register), f.hi, f.lo):
                    if name == "xcr0_supported_lo":
                        return bool(e.eax & (0b11 << 17))
                    return True
            return False

        if present(c.t) and not pred:
            out.append(
                f"`{name}`: the template has it, but KVM {c.kernel} does not report it in "
                f"KVM_GET_SUPPORTED_CPUID ({row['note']})."
            )
        elif pred and not present(c.t) and present(c.host.cpuid):
            # one source for "KVM offers it here": the measured KVM_GET_SUPPORTED_CPUID where the host has one (the
            # table the header and section 3 use), else the kernel's history and the host CPU
            if c.host.supported is None or present(c.host.supported):
                out.append(
                    f"`{name}`: KVM {c.kernel} reports it where the host has it, and this host has it"
                    + (" (measured: KVM_GET_SUPPORTED_CPUID has it)" if c.host.supported is not None else "")
                    + f"; the template leaves it out ({row['note']})."
                )
            else:
                out.append(
                    f"`{name}`: this host's CPU has it, but KVM does not offer it here (the measured "
                    f"KVM_GET_SUPPORTED_CPUID lacks it), so leaving it out is right ({row['note']})."
                )
        elif not pred and not present(c.t) and present(c.host.cpuid):
            later = next(
                (v for v in _KERNEL_AXIS if parse_version(v) > parse_version(c.kernel) and predicted_present(name, v)),
                None,
            )
            if later:
                out.append(
                    f"`{name}`: this host has it; KVM reports it from {later} (an upgrade), so a template "
                    f"recorded there would include it ({row['note']})."
                )
    return out
