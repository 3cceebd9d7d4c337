"""``cpuidkit review``: one CPU template against one host, as a report for a design doc.

:func:`review` collects what the other parts of cpuidkit say about a template
(a guest CPUID table) on a host, for a kernel version and vendor module:

1. KVM's verdict on KVM_SET_CPUID2 (errno, rule, kernel source) and the state
   KVM derives (:func:`cpuidkit.kvm.check.check`);
2. the fields the template sets that KVM owns at run time (pointless to set);
3. the features it advertises beyond what KVM virtualizes on that host
   (``migrate``'s feature rules against KVM's supported CPUID: measured where
   the host profile has KVM_GET_SUPPORTED_CPUID, else derived from the host's
   own CPUID, and the report says which);
4. the sanity lint (:func:`cpuidkit.analysis.lint.lint_table`);
5. XSAVE: the XCR0 the template allows, KVM's sizes on the host's offsets;
6. MAXPHYADDR and the linear-address width against the host (``migrate``'s
   rules);
7. kernel-version notes: the rows of ``data/kvm-behaviours.csv`` that change
   between 5.10 and 6.18 and touch something this template uses.

The result is a small document (sections of paragraphs, lists, tables and
figures) rendered as Markdown or HTML; the HTML embeds two figures as inline
SVG (a bit grid of the feature registers, the XSAVE layout), drawn here
without matplotlib.  Nothing in a report depends on the time or the machine
(file names are shown without their folders), so a review is reproducible.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cpuidkit.analysis.addressing import (
    guest_linear_bits,
    guest_maxphyaddr,
    guest_phys_bits_field,
    host_has_five_level_tdp,
    memslot_limit_check,
    usable_gpa_bits,
)
from cpuidkit.analysis.lint import lint_table, summarize
from cpuidkit.analysis.migrate import _VIRTUALIZABLE_REGS, migrate
from cpuidkit.core.bits import extract_bits
from cpuidkit.core.catalog import catalog
from cpuidkit.core.history import _history, predicted_present
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import all_behaviour_ids, behaviour_rows, kernel_profile, named_kernels, parse_version
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import (
    XFEATURE_NAMES,
    compacted_size,
    components_of,
    mask_names,
    standard_size,
    supported_xcr0,
    supported_xss,
)
from cpuidkit.errors import InputError
from cpuidkit.kvm.check import check
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE
from cpuidkit.kvm.runtime import KVM_FEATURE_PV_UNHALT, kvm_pv_base
from cpuidkit.live import resolve_host

if TYPE_CHECKING:  # pragma: no cover
    from cpuidkit.core.hosts import HostProfile

__all__ = [
    "Review",
    "review",
    "render_markdown",
    "render_html",
    "render",
    "FORMATS",
    "RELEVANCE",
    "GENERAL",
    "NOT_ABOUT_THE_TABLE",
]

FORMATS = ("markdown", "html", "json")
_TILEDATA = 1 << 18
_OLDEST, _NEWEST = "5.10", "6.18"

# -- the document -----------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)

    def p(self, text: str) -> Section:
        self.blocks.append(("p", text))
        return self

    def ul(self, items: list[str]) -> Section:
        if items:
            self.blocks.append(("ul", list(items)))
        return self

    def table(self, header: list[str], rows: list[list[str]]) -> Section:
        self.blocks.append(("table", header, rows))
        return self

    def figure(self, name: str, caption: str) -> Section:
        self.blocks.append(("figure", name, caption))
        return self


@dataclass
class Review:
    """A review: a title, a header table, sections, figures (SVG text) and the data behind them."""

    title: str
    header: list[tuple[str, str]]
    sections: list[Section]
    figures: dict[str, str]
    data: dict

    def as_dict(self) -> dict:
        return self.data


# -- small helpers ------------------------------------------------------------------------------


def _hex(n: int | None) -> str:
    return "-" if n is None else f"{n:#x}"


def _names(items, limit: int = 0) -> str:
    items = list(items)
    if limit and len(items) > limit:
        return ", ".join(f"`{x}`" for x in items[:limit]) + f" and {len(items) - limit} more"
    return ", ".join(f"`{x}`" for x in items)


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _cpu_text(t: CpuidTable) -> str:
    parts = [t.vendor or "vendor unknown"]
    e1 = t.get(1)
    if e1 is not None:
        fam, model = extract_bits(e1.eax, 11, 8), extract_bits(e1.eax, 7, 4)
        if fam == 0xF:
            fam += extract_bits(e1.eax, 27, 20)
        if fam in (6, 0xF) or fam > 0xF:
            model |= extract_bits(e1.eax, 19, 16) << 4
        parts.append(f"family {fam:#x} model {model:#x} stepping {extract_bits(e1.eax, 3, 0)}")
    brand = _brand(t)
    if brand:
        parts.append(f"“{brand}”")
    return ", ".join(parts)


def _brand(t: CpuidTable) -> str:
    raw = b""
    for leaf in (0x80000002, 0x80000003, 0x80000004):
        e = t.get(leaf)
        if e is None:
            return ""
        raw += b"".join(v.to_bytes(4, "little") for v in (e.eax, e.ebx, e.ecx, e.edx))
    return " ".join(raw.decode("latin-1").replace("\0", " ").split())


def _flag(t: CpuidTable, name: str) -> bool:
    for f in catalog().by_name(name):
        e = t.get(f.leaf, f.sub_lo)
        if e is not None and extract_bits(e.reg(f.register), f.hi, f.lo):
            return True
    return False


def _display(name: str) -> str:
    """A file name without its folder (reports never carry paths of the machine that wrote them)."""
    return Path(name).name if ("/" in name or "\\" in name) else name


# -- what the report reads ------------------------------------------------------------------------


@dataclass
class _Ctx:
    t: CpuidTable
    host: HostProfile
    kernel: str
    vendor: str
    outcome: object
    migration: object
    beyond: list[str]
    m0: int
    g_maxpa: int
    usable: int
    kvm_pv_unhalt: bool

    def has(self, name: str) -> bool:
        return _flag(self.t, name)


def _kvm_pv_unhalt(t: CpuidTable) -> bool:
    base = kvm_pv_base(list(t))
    if base is None:
        return False
    e = t.get(base | 1)
    return bool(e and e.eax >> KVM_FEATURE_PV_UNHALT & 1)


# -- kernel-version notes ---------------------------------------------------------------------------
#
# A behaviour whose value changes inside the modelled range matters to a template when the template uses what
# the behaviour is about.  Every id that changes must appear in exactly one of RELEVANCE (a test on the
# template), GENERAL (about every table: re-setting CPUID after KVM_RUN, runtime updates) or NOT_ABOUT_THE_TABLE
# (VMM calls whose outcome does not depend on the table); tests/test_review.py checks that.

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


def _token_rule(table: dict[str, tuple[str, ...]], what: str) -> Relevance:
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


RELEVANCE: dict[str, Relevance] = {
    "amx_dynamic_eperm": _tiledata,
    "supported_xcr0_mask": _amx,
    "xcr0_rules": _amx,
    "cet_off_with_smaller_maxphyaddr": _cet_smaller,
    "cpu_caps_intersection": _caps,
    "cr4_reserved_from_cpuid": _token_rule(_CR4_FEATURE_FLAGS, "CR4"),
    "efer_checks": _token_rule(_EFER_FEATURE_FLAGS, "EFER"),
    "guest_phys_bits_reported": _gpb,
    "guest_phys_bits_consumed": _gpb,
    "kvm_pv_base_lookup": _pv_base,
    "memslot_above_host_width": _memslot,
    "osxsave_runtime": _osxsave,
    "ospke_runtime": _ospke,
    "osxsave_ospke_unconditional": _os_both,
    "pv_unhalt_at_set": _pv_unhalt,
    "pv_unhalt_runtime": _pv_unhalt,
    "pv_unhalt_first_set_missed": _pv_unhalt,
    "disable_exits_after_vcpu": _pv_unhalt,
    "set_cpuid_clears_nx_without_host_nx": _nx,
    "sgx_ecreate_xfrm_check": _sgx,
    "sgx_virtualized": _sgx,
    "sgx_xfrm_adjust": _sgx,
    "supported_xss": _cet_xss,
    "xss_in_0xd1_ebx": _xsaves,
    "xss_write_rule": _xsaves,
    "xss_write_triggers_runtime": _xsaves,
    "supported_cpuid_amx_filter": _amx,
    "xsave_size_runtime": _compacted,
    "xstate_compacted_alignment": _alignment,
}
# About every table that has runtime-owned fields or is set again after KVM_RUN (snapshot restore, hotplug).
GENERAL = frozenset(
    {
        "post_run_set_cpuid",
        "post_run_compare_flags",
        "post_run_runtime_update_incoming",
        "failed_set_keeps_old",
        "set_cpuid_refreshes_current",
        "runtime_update_mode",
        "cr4_before_set_cpuid",
    }
)
# VMM calls whose outcome does not depend on the CPUID table's content.
NOT_ABOUT_THE_TABLE = frozenset(
    {
        "apic_base_unchanged_noop",
        "get_cpuid2_copies_entries",
        "get_cpuid2_nent_on_success",
        "sregs_efer_checked",
        "disable_exits_after_vcpu_rejected",  # the model's boolean twin of disable_exits_after_vcpu
        "disable_exits_unallowed_bits",  # which KVM_CAP_X86_DISABLE_EXITS bits are accepted
    }
)


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
            if bid in RELEVANCE:
                why = RELEVANCE[bid](c, old.value, new.value)
                if why:
                    specific.append(dict(note, why=why))
            elif bid in GENERAL:
                general.append(note)
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
            out.append(
                f"`{name}`: KVM {c.kernel} reports it where the host has it, and this host has it; the "
                f"template leaves it out ({row['note']})."
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


_KERNEL_AXIS = [f"5.{m}" for m in range(10, 20)] + [f"6.{m}" for m in range(0, 19)]


# -- building the review ----------------------------------------------------------------------------


def review(
    template: CpuidTable,
    host: HostProfile | str | None = None,
    *,
    kernel: str = "6.18",
    vendor: str | None = None,
    template_name: str | None = None,
    xfeature_permission: bool = True,
) -> Review:
    """Review ``template`` on ``host`` for ``kernel`` and ``vendor`` (default: the host's vendor module).

    ``xfeature_permission``: the VMM asks for AMX permission before KVM_SET_CPUID2 when the template enables
    TILEDATA (as Firecracker and QEMU do); the report also says what happens without it.
    """

    h = resolve_host(host)
    kp = kernel_profile(kernel)
    vend = h.vendor_for(vendor)
    tname = _display(template_name or template.source or "template")
    m0 = supported_xcr0(template)
    wants_amx = bool(m0 & _TILEDATA)
    perm = _TILEDATA if (xfeature_permission and wants_amx) else 0
    out = check(template, kernel=kp.name, vendor=vend, host=h, state={"xfeature_permission": perm})
    without = check(template, kernel=kp.name, vendor=vend, host=h) if perm else None
    gsx = out.derived["guest_supported_xcr0"]
    booted = None
    if out.accepted:
        booted = check(template, kernel=kp.name, vendor=vend, host=h, state=_booted_state(out, template, perm))
    mig = migrate(template, h, kernel=kp.name, vendor=vend, guest_name=tname)
    lint = lint_table(template, host=h)

    tdp = h.tdp and vend != "pvm"
    usable = usable_gpa_bits(h.maxphyaddr, tdp=tdp, five_level_tdp=host_has_five_level_tdp(h))
    beyond, synthesized, measured = _beyond(h, out, mig)
    ctx = _Ctx(
        t=template,
        host=h,
        kernel=kp.name,
        vendor=vend,
        outcome=out,
        migration=mig,
        beyond=beyond,
        m0=m0,
        g_maxpa=guest_maxphyaddr(template),
        usable=usable,
        kvm_pv_unhalt=_kvm_pv_unhalt(template),
    )
    specific, general = _kernel_notes(ctx)
    history = _history_notes(ctx)
    figures: dict[str, str] = {}
    header = _header(template, tname, h, kp.name, vend, measured, perm)
    sections = [
        _verdict_section(out, without, perm, gsx),
        _runtime_section(out, booted, template),
        _beyond_section(out, beyond, synthesized, measured),
        _lint_section(lint),
        _xsave_section(template, h, out, mig, kp, booted),
        _address_section(template, h, mig, kp, vend, usable),
        _kernel_section(kp.name, specific, general, history),
    ]
    summary = _summary(out, mig, lint, beyond, synthesized, ctx, specific, booted, template, h)
    sections.insert(0, summary)
    figures["bits"] = _svg_bits(template, out, beyond, synthesized)
    figures["xsave"] = _svg_xsave(template, h, m0)
    data = {
        "template": tname,
        "host": h.name,
        "kernel": kp.name,
        "vendor": vend,
        "supported_cpuid": "measured" if measured else "derived from the host's CPUID",
        "verdict": out.verdict,
        "errno": out.errno,
        "rule": out.error.rule if out.error else None,
        "verdict_without_permission": (without.verdict if without else None),
        "runtime_fields": [
            {"name": o.field.name, "template": _field_value(template, o), "stored": o.value, "driver": o.driver}
            for o in out.fields
            if o.owner == "runtime"
        ],
        "vendor_fields": [o.field.name for o in out.fields if o.owner == "vendor"],
        "beyond": beyond,
        "synthesized": synthesized,
        "lint": summarize(lint),
        "lint_findings": [f.as_dict() for f in lint],
        "migration": mig.as_dict(),
        "derived": {k: v for k, v in out.derived.items()},
        "kernel_notes": specific,
        "general_kernel_notes": [n["id"] for n in general],
        "history_notes": history,
    }
    title = f"CPUID review: {tname} on {h.name}"
    return Review(title=title, header=header, sections=sections, figures=figures, data=data)


def _booted_state(out, template: CpuidTable, perm: int) -> dict:
    """The vCPU state after a guest OS enabled what it was offered: CR4.OSXSAVE/PKE, XCR0 = all it may use."""

    reserved = out.derived["cr4_reserved_bits"]
    cr4 = 0
    if _flag(template, "xsave") and not reserved & CR4_OSXSAVE:
        cr4 |= CR4_OSXSAVE
    if _flag(template, "pku") and not reserved & CR4_PKE:
        cr4 |= CR4_PKE
    state: dict = {"cr4": cr4, "xfeature_permission": perm}
    if cr4 & CR4_OSXSAVE:
        state["xcr0"] = _os_xcr0(out.derived["guest_supported_xcr0"])
    return state


def _os_xcr0(gsx: int) -> int:
    """What an OS enables: every offered component, with the all-or-none groups kept whole."""
    x = gsx | 1
    for group in (0b11 << 3, 0b111 << 5, 0b11 << 17):
        if x & group != group:
            x &= ~group
    if not x & 2:
        x &= ~4
    if not x & 4:
        x &= ~(0b111 << 5)
    return x


def _field_value(t: CpuidTable, o) -> int | None:
    e = t.get(o.field.leaf, o.subleaf)
    return None if e is None else extract_bits(e.reg(o.field.register), o.field.hi, o.field.lo)


def _beyond(h: HostProfile, out, mig) -> tuple[list[str], list[str], bool]:
    """(beyond, synthesized, measured): the template's features KVM does not virtualize on the host."""
    measured = h.supported is not None
    missing = next((f.fields for f in mig.findings if f.rule == "feature_missing"), [])
    synthesized = next((f.fields for f in mig.findings if f.rule == "feature_synthesized"), [])
    if measured:
        beyond = list(dict.fromkeys(out.derived["not_virtualized"]))
    else:
        beyond = list(missing)
    return beyond, list(synthesized), measured


# -- sections ---------------------------------------------------------------------------------------


def _header(
    t: CpuidTable, tname: str, h: HostProfile, kernel: str, vendor: str, measured: bool, perm: int
) -> list[tuple[str, str]]:
    src = h.source if h.description else _display(h.source or h.name)
    host = f"`{h.name}`: {_cpu_text(h.cpuid)}; MAXPHYADDR {h.maxphyaddr}, {h.linear_bits}-bit linear"
    if h.description:
        host += f" ({h.description})"
    rows = [
        ("template", f"`{tname}`: {len(t)} entries, {_cpu_text(t)}"),
        ("host", host),
        ("host data", src),
        ("kernel", f"{kernel}" + (f" ({named_kernels()[kernel]['name']})" if kernel in named_kernels() else "")),
        ("vendor module", f"`{vendor}`"),
        (
            "KVM's supported CPUID",
            "measured: KVM_GET_SUPPORTED_CPUID recorded on this host"
            if measured
            else "derived from the host's own CPUID (no KVM_GET_SUPPORTED_CPUID was recorded for this host): a feature "
            "the CPU lacks is taken as not virtualized, and bits KVM sets from the host kernel's state (mitigations, microcode, what the vendor module can emulate) "
            "or microcode are not conclusive",
        ),
        (
            "vCPU",
            "fresh; the template is the first KVM_SET_CPUID2"
            + ("; the VMM requested AMX permission first (arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18))" if perm else ""),
        ),
    ]
    return rows


def _summary(out, mig, lint, beyond, synthesized, c: _Ctx, specific, booted, t, h) -> Section:
    s = Section("Summary")
    items = []
    if out.accepted:
        items.append(
            "**KVM_SET_CPUID2: accepted**"
            + (f"; {_plural(len(out.state_errors), 'later state write')} refused" if out.state_errors else "")
        )
    else:
        items.append(
            f"**KVM_SET_CPUID2: rejected with {out.errno}** (rule `{out.error.rule}`): {out.error.explanation}"
        )
    rt = [o for o in out.fields if o.owner == "runtime"]
    diff_rt = [o.field.name for o in rt if _field_value(t, o) != o.value]
    items.append(
        f"{_plural(len(rt), 'field')} the template sets are KVM's at run time ({_names(o.field.name for o in rt)})"
        + (
            f"; KVM already stores other values than the template in {_names(diff_rt)}"
            if diff_rt
            else "; the template holds their reset values"
        )
    )
    if beyond:
        items.append(
            f"**{_plural(len(beyond), 'feature')} beyond what KVM virtualizes on this host**: {_names(beyond, 12)}"
        )
    else:
        items.append(
            "no feature beyond what KVM virtualizes on this host"
            + (" (apart from bits KVM sets from the host kernel's state)" if synthesized else "")
        )
    n = summarize(lint)
    items.append(f"lint: {n['illegal']} illegal, {n['insane']} insane, {n['info']} info")
    blockers = [f for f in mig.blockers if not f.rule.startswith("feature_")]
    items.append(_xsave_summary(t, h, out))
    mp = [
        f for f in mig.findings if f.rule in ("maxphyaddr", "linear_width", "guest_phys_bits") and f.severity != "info"
    ]
    items.append(
        f"addresses: MAXPHYADDR {c.g_maxpa} on a {h.maxphyaddr}-bit host"
        + (f" ({', '.join(f'{f.severity} `{f.rule}`' for f in mp)})" if mp else " (fine)")
    )
    if blockers:
        items.append(f"other problems on this host: {', '.join(f'`{f.rule}`' for f in blockers)}")
    if mig.findings and any(f.rule == "vendor" for f in mig.findings):
        items.append(f"**vendor mismatch**: the template is {t.vendor}, the host {h.vendor}")
    items.append(f"{_plural(len(specific), 'kernel-version note')} for this template")
    return s.ul(items)


def _xsave_summary(t: CpuidTable, h, out) -> str:
    x = _os_xcr0(out.derived["guest_supported_xcr0"])
    hc = h.xsave_components
    text = f"XSAVE: a guest enables XCR0 {_hex(x)} ({', '.join(mask_names(x))}): {standard_size(hc, x)} bytes"
    d0, d1 = t.get(0xD, 0), t.get(0xD, 1)
    if d1 is not None and d1.eax & 0b1010:
        text += f", {compacted_size(hc, x)} compacted"
    if d0 is not None and standard_size(hc, t.get(0xD, 0).eax | d0.edx << 32 | 1) > d0.ecx:
        text += f"; **the template's 0xD.0 ECX ({d0.ecx}) is smaller than this host's area**"
    return text


def _verdict_section(out, without, perm: int, gsx: int) -> Section:
    s = Section("1. KVM's verdict")
    if out.accepted:
        s.p("KVM_SET_CPUID2 returns 0: the table is stored.")
    else:
        e = out.error
        s.p(f"KVM_SET_CPUID2 fails with **{e.errno_name}** (rule `{e.rule}`): {e.explanation}.")
        s.p(f"Source: {e.source}.")
    if perm and without is not None:
        if without.accepted:
            s.p("Without the AMX permission request KVM would accept it too.")
        else:
            e = without.error
            s.p(
                f"Without `arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)` before the vCPU is created, KVM answers "
                f"**{e.errno_name}** (rule `{e.rule}`; {e.source})."
            )
    d = out.derived
    s.table(
        ["derived by KVM", "value"],
        [
            ["MAXPHYADDR", str(d["maxphyaddr"])],
            ["reserved GPA bits", _hex(d["reserved_gpa_bits"])],
            ["guest_supported_xcr0", f"{_hex(gsx)}"],
            ["CR4 bits KVM_SET_SREGS refuses", _hex(d["cr4_reserved_bits"])],
            ["EFER bits a guest may set", _hex(d["efer_allowed"])],
            ["KVM leaf base", _hex(d["kvm_pv_base"])],
            ["KVM's own feature checks read", d["capabilities"]],
        ],
    )
    for e in out.state_errors:
        s.p(f"State write `{e['step']}` refused: {e['errno']}: {e['explanation']}.")
    return s


def _runtime_section(out, booted, t: CpuidTable) -> Section:
    s = Section("2. Fields KVM owns at run time")
    rt = [o for o in out.fields if o.owner == "runtime"]
    if not rt:
        return s.p("The template sets no field KVM rewrites at run time.")
    s.p(
        "KVM recomputes these from vCPU state at KVM_SET_CPUID2 and on every trigger (CR4, XCR0, MSR writes), so "
        "what the template puts there is never what the guest reads; only the reset values avoid a difference "
        "on readback. The third column is a fresh vCPU, the fourth after a guest enabled what it was offered "
        "(CR4.OSXSAVE/PKE and XCR0)."
    )
    after = {(o.field.name, o.subleaf): o.value for o in booted.fields} if booted is not None else {}
    rows = []
    for o in rt:
        f = o.field
        tv = _field_value(t, o)
        rows.append(
            [
                f"`{f.name}`",
                f"{f.leaf:#x}.{o.subleaf}.{f.register}[{f.bits}]",
                _val(tv, f),
                _val(o.value, f),
                _val(after.get((f.name, o.subleaf)), f),
                o.driver or "",
            ]
        )
    s.table(["field", "position", "template", "KVM stores", "after boot", "driven by"], rows)
    vend = [o for o in out.fields if o.owner == "vendor"]
    if vend:
        changed = [o for o in vend if _field_value(t, o) != o.value]
        s.p(
            f"The `{out.vendor}` module decides {_plural(len(vend), 'more field')} after KVM_SET_CPUID2 "
            f"(measured on the host); it stored other values than the template in {_plural(len(changed), 'field')}"
            + (f": {_names((o.field.name for o in changed), 20)}." if changed else ".")
        )
    return s


def _val(v: int | None, f) -> str:
    if v is None:
        return "-"
    return str(v) if v < 1 << 20 else f"{v:#x}"


def _beyond_section(out, beyond, synthesized, measured) -> Section:
    s = Section("3. Features beyond what KVM virtualizes on this host")
    if measured:
        s.p(
            "Compared with KVM_GET_SUPPORTED_CPUID measured on this host: a guest sees these bits, but KVM's "
            "capabilities lack them, so KVM treats the features as absent."
        )
    else:
        s.p(
            "Compared with the host CPU's own CPUID, in the registers KVM offers CPU features in (KVM's "
            "`kvm_set_cpu_caps` words), with the bits KVM provides on any host (x2APIC, TSC deadline, "
            "ARCH_CAPABILITIES …) taken as present. KVM_SET_CPUID2 accepts the bits regardless; a guest that "
            "uses them meets #UD, #GP or different behaviour."
        )
    if beyond:
        s.p(f"**{_plural(len(beyond), 'feature')}**: {_names(beyond)}.")
    else:
        s.p("None.")
    if synthesized:
        s.p(
            f"Not conclusive ({_plural(len(synthesized), 'bit')} KVM sets from the host kernel's "
            f"state, not from raw CPUID): {_names(synthesized)}."
        )
    s.p(f"From 6.14 KVM's own checks read guest CPUID ∩ its capabilities; this kernel: {out.derived['capabilities']}.")
    return s


def _lint_section(lint) -> Section:
    s = Section("4. Lint")
    if not lint:
        return s.p("No findings: nothing illegal, insane or worth a note (host rules included).")
    rows = []
    for f in lint:
        sev = f.severity + (" (intended)" if f.intended else "")
        rows.append([sev, f"`{f.rule}`", ", ".join(f"`{x}`" for x in f.fields), f.detail or ""])
    s.table(["class", "rule", "fields", "detail"], rows)
    seen = []
    for f in lint:
        if f.rule not in seen:
            seen.append(f.rule)
            s.p(
                f"`{f.rule}`: {f.explanation} If ignored: {f.if_ignored} ({f.reference}"
                f"{'; KVM checks this' if f.kvm_checks else ''})."
            )
    return s


def _xsave_section(t: CpuidTable, h, out, mig, kp, booted) -> Section:
    s = Section("5. XSAVE")
    m0 = supported_xcr0(t)
    if not m0:
        return s.p(
            "The template has no 0xD.0 leaf (or an empty XCR0 mask): the guest has no XSAVE state beyond x87/SSE."
        )
    gsx = out.derived["guest_supported_xcr0"]
    x = _os_xcr0(gsx)
    s.p(
        f"The template's 0xD.0 EDX:EAX allows XCR0 {_hex(m0)} ({', '.join(mask_names(m0))}). On this host and "
        f"kernel KVM supports {_hex(gsx)} of it (guest_supported_xcr0), so a guest OS enables {_hex(x)}."
    )
    lost = m0 & ~(gsx | 1)
    if lost:
        s.p(
            f"**Not supported here**: {', '.join(mask_names(lost))} ({_hex(lost)}): XSETBV with them raises #GP "
            "in the guest, KVM_SET_XCRS fails with EINVAL."
        )
    hc, tc = h.xsave_components, components_of(t)
    d0, d1 = t.get(0xD, 0), t.get(0xD, 1)
    aligned = kp.flag("xstate_compacted_alignment")
    rows = [
        [
            "standard size for all of 0xD.0",
            str(d0.ecx) if d0 else "-",
            str(standard_size(hc, m0 | 1)),
            "0xD.0 ECX (the template's, fixed)",
        ],
        [
            f"standard size for XCR0 {_hex(x)}",
            str(standard_size(tc, x)) if tc else "-",
            str(standard_size(hc, x)),
            "0xD.0 EBX (KVM computes it from the host's offsets)",
        ],
    ]
    if d1 is not None and d1.eax & 0b1010:
        rows.append(
            [
                f"compacted size for XCR0 {_hex(x)}",
                str(compacted_size(tc, x, honour_alignment=aligned)) if tc else "-",
                str(compacted_size(hc, x, honour_alignment=aligned)),
                "0xD.1 EBX (KVM computes it"
                + (", 64-byte alignment honoured)" if aligned else ", alignment flag ignored before 5.17)"),
            ]
        )
    s.table(["", "template's offsets", "this host", "in CPUID"], rows)
    if booted is not None:
        e0, e1 = booted.stored.get(0xD, 0), booted.stored.get(0xD, 1)
        s.p(
            f"After the guest sets XCR0 {_hex(x)}, KVM stores 0xD.0 EBX = {e0.ebx if e0 else '-'}"
            + (f" and 0xD.1 EBX = {e1.ebx}" if e1 is not None and e1.eax & 0b1010 else "")
            + "."
        )
    comp_rows = []
    for bit in sorted(set(tc) | {b for b in hc if (m0 | supported_xss(t)) >> b & 1}):
        a, b = tc.get(bit), hc.get(bit)
        same = a is not None and b is not None and (a.offset, a.size) == (b.offset, b.size)
        comp_rows.append(
            [
                str(bit),
                mask_names(1 << bit)[0],
                _comp(a),
                _comp(b),
                "same" if same else ("**differs**" if a and b else ""),
            ]
        )
    if comp_rows:
        s.table(["bit", "component", "template (size@offset)", "host (size@offset)", ""], comp_rows)
    _migrate_findings(s, mig, ("xcr0_components", "xsave_layout", "amx_permission", "sgx_xfrm", "xsave_size"))
    s.figure("xsave", "XSAVE standard-format layout: the template's 0xD subleaves against the host CPU's")
    return s


def _migrate_findings(s: Section, mig, rules: tuple[str, ...], keep_info: bool = False) -> None:
    hits = [f for f in mig.findings if f.rule in rules and (keep_info or f.severity != "info")]
    if hits:
        s.p("`cpuidkit migrate` of a guest with this template to this host (the destination) says:")
        s.ul([f"{f.severity} `{f.rule}`: {f.explanation}" for f in hits])


def _comp(c) -> str:
    if c is None:
        return "-"
    return f"{c.size}@{c.offset}" if not c.supervisor else f"{c.size} (supervisor)"


def _address_section(t: CpuidTable, h, mig, kp, vendor: str, usable: int) -> Section:
    s = Section("6. Physical and linear address width")
    g = guest_maxphyaddr(t)
    e8 = t.get(0x80000008)
    five = host_has_five_level_tdp(h)
    e7 = t.get(7, 0)
    g57 = bool(e7 and e7.ecx >> 16 & 1)
    h7 = h.cpuid.get(7, 0)
    h57 = bool(h7 and h7.ecx >> 16 & 1)
    lin_field = extract_bits(e8.eax, 15, 8) if e8 else 0
    allowed = kp.value("vaddr_width_values").replace(";", ", ")
    rows = [
        ["MAXPHYADDR", f"{g}" + ("" if e8 else " (no 0x80000008 leaf: 36)"), str(h.maxphyaddr)],
        ["GuestPhysBits (0x80000008 EAX[23:16])", str(guest_phys_bits_field(t)), "-"],
        ["guest-physical bits KVM can map", "-", f"{usable}" + ("" if five else " (no LA57: 4-level EPT/NPT)")],
        [
            "linear width (0x80000008 EAX[15:8])",
            f"{lin_field} → {guest_linear_bits(t)}-bit" if lin_field else f"not set → {guest_linear_bits(t)}-bit",
            f"{h.linear_bits}-bit",
        ],
        ["LA57 (7.0 ECX[16])", "yes" if g57 else "no", "yes" if h57 else "no"],
    ]
    s.table(["", "template", "host"], rows)
    s.p(
        f"KVM_SET_CPUID2 accepts a linear width of {allowed} only (rule `vaddr_width_values`); it never checks "
        "MAXPHYADDR against the host."
    )
    _migrate_findings(s, mig, ("maxphyaddr", "guest_phys_bits", "linear_width"), keep_info=True)
    if g > h.maxphyaddr:
        s.p(
            f"Memslots above 2^{h.maxphyaddr} on kernel {kp.name}: {memslot_limit_check(kp.name)} "
            "(rule `memslot_above_host_width`)."
        )
    return s


def _kernel_section(kernel: str, specific: list[dict], general: list[dict], history: list[str]) -> Section:
    s = Section("7. Kernel-version notes")
    s.p(
        f"Rows of `data/kvm-behaviours.csv` whose value changes between {_OLDEST} and {_NEWEST} and that touch "
        f"something this template uses: “in effect” changes are already in {kernel}, the others come with an "
        "upgrade."
    )
    if specific:
        rows = [
            [
                n["version"],
                n["when"],
                f"`{n['id']}`",
                _change_text(n["old"], n["new"]),
                n["why"],
                f"{n['summary']} ({n['source']})",
            ]
            for n in specific
        ]
        s.table(["since", "for " + kernel, "behaviour", "change", "why it matters here", "what and where"], rows)
    else:
        s.p("None specific to this template.")
    if history:
        s.p("What KVM reports in KVM_GET_SUPPORTED_CPUID for this kernel (`data/kvm-feature-history.csv`):")
        s.ul(history)
    if general:
        ids = []
        for n in general:
            if n["id"] not in ids:
                ids.append(n["id"])

        def when(i: str) -> str:
            now = [n["version"] for n in general if n["id"] == i and n["when"] == "in effect"]
            later = [n["version"] for n in general if n["id"] == i and n["when"] != "in effect"]
            return ", ".join(now + ([f"{', '.join(later)} after an upgrade"] if later else []))

        s.p(
            "For every template (setting CPUID again after KVM_RUN, the runtime update): "
            + "; ".join(f"`{i}` ({when(i)})" for i in ids)
            + ". See `docs/model.md`."
        )
    return s


# -- figures (inline SVG, drawn by hand: deterministic, no matplotlib) -----------------------------------

_COLOURS = {
    "clear": "#ffffff",
    "passthrough": "#a5d6a7",
    "runtime": "#90caf9",
    "vendor": "#ce93d8",
    "beyond": "#ef9a9a",
    "synthesized": "#ffe082",
    "unnamed": "#e0e0e0",
}
_LEGEND = [
    ("passthrough", "set, passed through"),
    ("runtime", "KVM's at run time"),
    ("vendor", "vendor module"),
    ("beyond", "not virtualized here"),
    ("synthesized", "set from the host kernel's state"),
    ("unnamed", "set, no name"),
]


def _svg_bits(t: CpuidTable, out, beyond, synthesized) -> str:
    owners = {(o.field.leaf, o.subleaf, o.field.register, o.field.lo): o.owner for o in out.fields if o.field.is_flag}
    regs = [r for r in sorted(_VIRTUALIZABLE_REGS) if t.get(r[0], r[1]) is not None]
    cell, left, top = 20, 132, 28
    width = left + 32 * cell + 10
    height = top + len(regs) * (cell + 6) + 54
    p = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">',
        "<title>The template's feature registers, bit 31 on the left, coloured by what KVM does with each set "
        "bit</title>",
    ]
    for b in (31, 24, 16, 8, 0):
        x = left + (31 - b) * cell + cell / 2
        p.append(f'<text x="{x:g}" y="{top - 8}" text-anchor="middle" fill="#555">{b}</text>')
    cat = catalog()
    bset, sset = set(beyond), set(synthesized)
    for row, (leaf, sub, reg) in enumerate(regs):
        y = top + row * (cell + 6)
        value = t.get(leaf, sub).reg(reg)
        p.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{leaf:#x}.{sub} {reg.upper()}</text>')
        for b in range(32):
            x = left + (31 - b) * cell
            on = value >> b & 1
            f = cat.at(leaf, sub, reg, b)
            name = f.name if f is not None else f"{leaf:#x}.{sub}.{reg}[{b}]"
            if not on:
                kind = "clear"
            elif f is None:
                kind = "unnamed"
            elif name in bset:
                kind = "beyond"
            elif name in sset:
                kind = "synthesized"
            else:
                kind = owners.get((leaf, sub, reg, b), "passthrough")
                kind = "beyond" if kind == "not-virtualized" else kind
            tip = html.escape(f"{leaf:#x}.{sub}.{reg}[{b}] {name} = {on}" + (f" ({kind})" if on else ""))
            p.append(
                f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{_COLOURS[kind]}" '
                f'stroke="#888" stroke-width="0.5"><title>{tip}</title></rect>'
            )
            if on:
                p.append(f'<text x="{x + cell / 2 - 0.5:g}" y="{y + 13}" text-anchor="middle">1</text>')
    y = top + len(regs) * (cell + 6) + 12
    x = 8
    for kind, label in _LEGEND:
        p.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{_COLOURS[kind]}" stroke="#888" stroke-width="0.5"/>'
        )
        p.append(f'<text x="{x + 16}" y="{y + 10}">{html.escape(label)}</text>')
        x += 16 + 6 * len(label) + 14
    p.append("</svg>")
    return "\n".join(p)


def _svg_xsave(t: CpuidTable, h, m0: int) -> str:
    rows = [("template", components_of(t)), ("host CPU", h.xsave_components)]
    mask = m0 | 1
    ends = [standard_size(c, mask) for _, c in rows]
    span = max(ends + [576])
    left, width, bar = 90, 760, 26
    scale = width / span
    height = 30 + len(rows) * (bar + 22) + 20
    p = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{height}" '
        f'viewBox="0 0 {left + width + 20} {height}" font-family="sans-serif" font-size="10">',
        f"<title>Standard-format XSAVE layout for XCR0 {mask:#x}</title>",
    ]
    for n, (label, comps) in enumerate(rows):
        y = 20 + n * (bar + 22)
        p.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{html.escape(label)}</text>')
        p.append(
            f'<rect x="{left}" y="{y}" width="{512 * scale:.1f}" height="{bar}" fill="#cfd8dc" stroke="#555" '
            'stroke-width="0.5"><title>legacy area (x87, SSE): 512 bytes at 0</title></rect>'
        )
        p.append(
            f'<rect x="{left + 512 * scale:.1f}" y="{y}" width="{64 * scale:.1f}" height="{bar}" fill="#eceff1" '
            'stroke="#555" stroke-width="0.5"><title>XSAVE header: 64 bytes at 512</title></rect>'
        )
        for bit in sorted(comps):
            c = comps[bit]
            if c.supervisor or not mask >> bit & 1 or not c.size:
                continue
            x0 = left + c.offset * scale
            name = XFEATURE_NAMES.get(bit, f"x{bit}")
            tip = html.escape(f"{bit} {name}: {c.size} bytes at {c.offset}")
            p.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(c.size * scale, 1):.1f}" height="{bar}" '
                f'fill="#80cbc4" stroke="#333" stroke-width="0.5"><title>{tip}</title></rect>'
            )
            if c.size * scale >= 14:
                p.append(f'<text x="{x0 + c.size * scale / 2:.1f}" y="{y + 16}" text-anchor="middle">{bit}</text>')
        end = standard_size(comps, mask)
        p.append(
            f'<line x1="{left + end * scale:.1f}" y1="{y - 3}" x2="{left + end * scale:.1f}" y2="{y + bar + 3}" '
            'stroke="#c62828" stroke-width="1.5"/>'
        )
        p.append(
            f'<text x="{left + end * scale:.1f}" y="{y + bar + 14}" text-anchor="end" fill="#c62828">{end} bytes</text>'
        )
    p.append("</svg>")
    return "\n".join(p)


# -- rendering ---------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(r: Review) -> str:
    lines = [f"# {r.title}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_md_cell(v)} |" for k, v in r.header]
    for s in r.sections:
        lines += ["", f"## {s.title}", ""]
        for block in s.blocks:
            kind = block[0]
            if kind == "p":
                lines += [block[1], ""]
            elif kind == "ul":
                lines += [f"- {x}" for x in block[1]] + [""]
            elif kind == "table":
                _, head, rows = block
                lines.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
                lines.append("|" + "---|" * len(head))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif kind == "figure":
                lines += [f"*Figure: {block[2]} (in the HTML report).*", ""]
        while lines and lines[-1] == "":
            lines.pop()
    lines += [
        "",
        "*Generated by `cpuidkit review`; the model's rules and their kernel sources are in "
        "`data/kvm-behaviours.csv` and `docs/model.md`.*",
        "",
    ]
    return "\n".join(lines)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    out = html.escape(str(text), quote=False)
    out = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", out)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 7px;vertical-align:top;font-size:.92em}
th{background:#f3f3f3;text-align:left}code{background:#f4f4f4;padding:0 2px;border-radius:2px}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}"""


def render_html(r: Review) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(r.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(r.title)}</h1>",
        "<table>",
    ]
    out += [f"<tr><th>{html.escape(k)}</th><td>{_inline(v)}</td></tr>" for k, v in r.header]
    out.append("</table>")
    for n, s in enumerate(r.sections):
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        for block in s.blocks:
            kind = block[0]
            if kind == "p":
                out.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in block[1]) + "</ul>")
            elif kind == "table":
                _, head, rows = block
                out.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows]
                out.append("</table>")
            elif kind == "figure":
                out += ["<figure>", r.figures[block[1]], f"<figcaption>{_inline(block[2])}</figcaption>", "</figure>"]
        if n == 0:
            out += [
                "<figure>",
                r.figures["bits"],
                "<figcaption>The template's feature registers: every set bit "
                "coloured by what KVM does with it on this host (hover for the field).</figcaption>",
                "</figure>",
            ]
    out += [
        "<p><em>Generated by <code>cpuidkit review</code>; the model's rules and their kernel sources are in "
        "<code>data/kvm-behaviours.csv</code> and <code>docs/model.md</code>.</em></p>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def render(r: Review, format: str = "markdown") -> str:
    if format == "markdown":
        return render_markdown(r)
    if format == "html":
        return render_html(r)
    if format == "json":
        return json.dumps(r.as_dict(), indent=1, sort_keys=True) + "\n"

    raise InputError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
