"""The checks: a table as a guest reads it (``View``) and one check per rule id (dependency rules from data)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from cpuidkit.analysis.lint.model import (
    AMD_ONLY_LEAVES,
    APX,
    ARCH_INDEXED_FUNCTIONS,
    HYPERVISOR_BASES,
    INTEL_ONLY_LEAVES,
    INTEL_VENDORS,
    LEGACY_AND_HEADER,
    MPX,
    RANGES,
    SUBLEAF_MAX_LEAVES,
    SUPERVISOR_COMPONENTS,
    USER_COMPONENTS,
    XCR0_RESERVED,
    Hit,
    components_text,
    dependencies,
    kvm_indexed,
    leaf_field,
    xcr0_field,
    xfeature_name,
    xss_field,
)
from cpuidkit.core.addresses import linear_width_of
from cpuidkit.core.bits import extract_bits, set_bits
from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.supported import KVM_SIGNATURE
from cpuidkit.core.table import AMD_VENDORS, CpuidEntry, CpuidTable
from cpuidkit.core.xsave import components_of

if TYPE_CHECKING:  # pragma: no cover
    from cpuidkit.core.hosts import HostProfile


# -- a table as a guest reads it -------------------------------------------------------------------


class View:
    """The table, the host, and the reads every rule needs."""

    def __init__(self, table: CpuidTable, host: HostProfile | None):
        self.table = table
        self.host = host
        self.max_basic = table.max_basic_leaf
        self.max_ext = table.max_extended_leaf
        self._visible: dict[tuple[int, int], CpuidEntry | None] = {}  # the table never changes under a view
        self._fields: dict[str, int | None] = {}

    def range_max(self, function: int) -> int | None:
        """The maximum leaf of ``function``'s range, or None when the range is not judged."""
        for lo, hi in RANGES:
            if lo <= function < hi:
                if lo == 0:
                    return self.max_basic
                if lo == 0x80000000:
                    return self.max_ext
                base = self.table.get(lo)
                return base.eax if base is not None and lo <= base.eax < hi else lo
        return None

    def in_range(self, function: int) -> bool:
        if function in (0, 0x80000000):
            return True
        top = self.range_max(function)
        if top is None:
            # no leaf 0 / no 0x80000000: a guest cannot tell, so the basic range is taken as given;
            # the extended range without 0x80000000 is absent for KVM and guests alike
            return function < 0x80000000 or not 0x80000000 <= function < 0x80860000
        return function <= top

    def visible(self, function: int, index: int = 0) -> CpuidEntry | None:
        """The entry a guest that follows the SDM would read, or None."""
        key = (function, index)
        if key in self._visible:
            return self._visible[key]
        e = self.table.get(function, index)
        if e is None or not self.in_range(function):
            e = None
        elif function == 7 and index > 0:
            e0 = self.table.get(7, 0)
            if e0 is None or index > e0.eax:
                e = None
        self._visible[key] = e
        return e

    def field(self, name: str) -> int | None:
        if name in self._fields:
            return self._fields[name]
        f = _field(name)
        e = self.visible(f.leaf, f.sub_lo)
        value = None if e is None else extract_bits(e.reg(f.register), f.hi, f.lo)
        self._fields[name] = value
        return value

    def flag(self, name: str) -> int:
        return self.field(name) or 0

    @functools.cached_property
    def xcr0(self) -> int:
        e = self.visible(0xD, 0)
        return 0 if e is None else e.eax | e.edx << 32

    @functools.cached_property
    def xss(self) -> int:
        e = self.visible(0xD, 1)
        return 0 if e is None else e.ecx | e.edx << 32

    @functools.cached_property
    def components(self):
        return components_of(self.table)

    def ref(self, ref: str) -> int:
        kind, _, num = ref.partition(":")
        if kind == "xcr0" and num:
            return self.xcr0 >> int(num) & 1
        if kind == "xss" and num:
            return self.xss >> int(num) & 1
        return self.flag(ref)

    @property
    def guest_maxphyaddr(self) -> int:
        """What KVM derives (cpuid_query_maxphyaddr): 0x80000008.EAX[7:0] if reachable, else 36."""
        e = self.visible(0x80000008)
        return 36 if e is None or self.max_ext is None or self.max_ext < 0x80000008 else e.eax & 0xFF


@functools.cache
def _field(name: str):
    return catalog().resolve(name)


def _ref_field(ref: str) -> str:
    kind, _, num = ref.partition(":")
    if kind == "xcr0" and num:
        return xcr0_field(int(num))
    if kind == "xss" and num:
        return xss_field(int(num))
    return ref


def _ref_text(ref: str) -> str:
    kind, _, num = ref.partition(":")
    if kind == "xcr0" and num:
        return f"XCR0 bit {num} ({xfeature_name(int(num))}) in 0xD.0"
    if kind == "xss" and num:
        return f"IA32_XSS bit {num} ({xfeature_name(int(num))}) in 0xD.1"
    return ref


# -- the rules -------------------------------------------------------------------------------------

_CHECKS: dict[str, Callable[[View], Iterable[Hit]]] = {}


def _rule(rule_id: str):
    def register(fn):
        if rule_id in _CHECKS:
            raise RuntimeError(f"two implementations of lint rule {rule_id}")
        _CHECKS[rule_id] = fn
        return fn

    return register


# ---- illegal


@_rule("linear_width_invalid")
def _linear_width_invalid(v: View):
    e = v.table.get(0x80000008)  # KVM checks the entry whenever it is present
    if e is None:
        return
    width = linear_width_of(e)
    lm = v.flag("lm")
    allowed = (48, 57) if lm else (0, 32, 48, 57)
    if width not in allowed:
        cpu = "a 64-bit CPU (lm=1)" if lm else "a CPU without long mode"
        yield Hit(
            ("virt_addr_bits",), f"0x80000008.EAX[15:8] = {width} on {cpu}; expected {' or '.join(map(str, allowed))}"
        )


@_rule("xcr0_supervisor_component")
def _xcr0_supervisor_component(v: View):
    bad = [b for b in set_bits(v.xcr0) if b in SUPERVISOR_COMPONENTS]
    if bad:
        yield Hit(tuple(xcr0_field(b) for b in bad), f"0xD.0 lists supervisor component(s) {components_text(bad)}")


@_rule("xcr0_reserved_bit")
def _xcr0_reserved_bit(v: View):
    if v.xcr0 & XCR0_RESERVED:
        yield Hit((xcr0_field(63),), "0xD.0 EDX[31] (XCR0 bit 63) is set")


@_rule("xcr0_fp_sse_missing")
def _xcr0_fp_sse_missing(v: View):
    if not v.flag("xsave") or v.visible(0xD, 0) is None:
        return
    missing = [b for b in (0, 1) if not v.xcr0 >> b & 1]
    if missing:
        yield Hit(
            ("xsave", *(xcr0_field(b) for b in missing)),
            f"XSAVE is set but 0xD.0 EAX lacks {components_text(missing)}",
        )


@_rule("xcr0_ymm_without_sse")
def _xcr0_ymm_without_sse(v: View):
    if v.xcr0 & 0b100 and not v.xcr0 & 0b10:
        yield Hit((xcr0_field(2), xcr0_field(1)), "0xD.0 EAX[2] (YMM) is set and EAX[1] (SSE) is clear")


@_rule("xss_user_component")
def _xss_user_component(v: View):
    bad = [b for b in set_bits(v.xss) if b in USER_COMPONENTS]
    if bad:
        yield Hit(tuple(xss_field(b) for b in bad), f"0xD.1 ECX/EDX lists user component(s) {components_text(bad)}")


@_rule("xsave_supervisor_flag_mismatch")
def _xsave_supervisor_flag_mismatch(v: View):
    for bit, c in sorted(v.components.items()):
        in_xcr0, in_xss = v.xcr0 >> bit & 1, v.xss >> bit & 1
        if in_xcr0 and c.supervisor:
            yield Hit(
                (f"0xd.{bit}.ecx[0]", xcr0_field(bit)),
                f"component {bit} ({c.name}) is listed in 0xD.0 (user) but 0xD.{bit} ECX[0] says supervisor",
            )
        elif in_xss and not c.supervisor:
            yield Hit(
                (f"0xd.{bit}.ecx[0]", xss_field(bit)),
                f"component {bit} ({c.name}) is listed in 0xD.1 (supervisor) but 0xD.{bit} ECX[0] says user",
            )


def _listed_user_components(v: View):
    return [
        (b, v.components[b])
        for b in set_bits(v.xcr0)
        if b >= 2 and b in v.components and not v.components[b].supervisor and b != 63
    ]


@_rule("xsave_max_size_too_small")
def _xsave_max_size_too_small(v: View):
    e = v.visible(0xD, 0)
    if e is None or not v.xcr0:
        return
    if e.ecx < LEGACY_AND_HEADER:
        yield Hit(("xsave_size_max",), f"0xD.0 ECX = {e.ecx} is below {LEGACY_AND_HEADER} (legacy area and header)")
        return
    for b, c in _listed_user_components(v):
        if c.offset + c.size > e.ecx:
            yield Hit(
                ("xsave_size_max", f"0xd.{b}.eax", f"0xd.{b}.ebx"),
                f"component {b} ({c.name}) ends at {c.offset + c.size} but 0xD.0 ECX = {e.ecx}",
            )


@_rule("xsave_offsets_overlap")
def _xsave_offsets_overlap(v: View):
    comps = [(b, c) for b, c in _listed_user_components(v) if c.size]
    for b, c in comps:
        if c.offset < LEGACY_AND_HEADER:
            yield Hit(
                (f"0xd.{b}.ebx",),
                f"component {b} ({c.name}) starts at {c.offset}, inside the legacy "
                f"area and header (the first {LEGACY_AND_HEADER} bytes)",
            )
    for i, (b1, c1) in enumerate(comps):
        for b2, c2 in comps[i + 1 :]:
            if {b1, b2} & {APX} and {b1, b2} & set(MPX):
                continue
            if c1.offset < c2.offset + c2.size and c2.offset < c1.offset + c1.size:
                yield Hit(
                    (f"0xd.{b1}.ebx", f"0xd.{b2}.ebx"),
                    f"component {b1} ({c1.name}) at {c1.offset}+{c1.size} overlaps component {b2} "
                    f"({c2.name}) at {c2.offset}+{c2.size}",
                )


@_rule("maxphyaddr_out_of_range")
def _maxphyaddr_out_of_range(v: View):
    pa = v.field("phys_addr_bits")
    if pa is not None and not 32 <= pa <= 52:
        yield Hit(("phys_addr_bits",), f"0x80000008.EAX[7:0] = {pa}; a real CPU has 32..52")


# ---- insane: XCR0 pairs


@_rule("xcr0_amx_pair")
def _xcr0_amx_pair(v: View):
    cfg, data = v.xcr0 >> 17 & 1, v.xcr0 >> 18 & 1
    if cfg != data:
        have, lack = (17, 18) if cfg else (18, 17)
        yield Hit(
            (xcr0_field(17), xcr0_field(18)),
            f"0xD.0 lists {components_text([have])} without {components_text([lack])}",
        )


@_rule("xcr0_avx512_partial")
def _xcr0_avx512_partial(v: View):
    m = v.xcr0 >> 5 & 0b111
    if m and m != 0b111:
        listed = [b for b in (5, 6, 7) if m >> (b - 5) & 1]
        yield Hit(
            tuple(xcr0_field(b) for b in (5, 6, 7)),
            f"0xD.0 lists only {components_text(listed)} of the three AVX-512 components",
        )
    elif m == 0b111 and not v.xcr0 & 0b100:
        yield Hit((xcr0_field(2), xcr0_field(5)), "0xD.0 lists the AVX-512 components but not YMM (bit 2)")


@_rule("xcr0_mpx_pair")
def _xcr0_mpx_pair(v: View):
    regs, csr = v.xcr0 >> 3 & 1, v.xcr0 >> 4 & 1
    if regs != csr:
        have, lack = (3, 4) if regs else (4, 3)
        yield Hit(
            (xcr0_field(3), xcr0_field(4)),
            f"0xD.0 lists {components_text([have])} without {components_text([lack])}",
        )


# ---- insane: addresses


@_rule("la57_width_without_flag")
def _la57_width_without_flag(v: View):
    if v.field("virt_addr_bits") == 57 and not v.flag("la57"):
        yield Hit(("virt_addr_bits", "la57"), "linear width 57 with CPUID.7.0.ECX.LA57 = 0")


@_rule("la57_flag_without_width")
def _la57_flag_without_width(v: View):
    width = v.field("virt_addr_bits")
    if v.flag("la57") and width == 48:
        yield Hit(("la57", "virt_addr_bits"), "CPUID.7.0.ECX.LA57 = 1 with linear width 48")


@_rule("maxphyaddr_above_host")
def _maxphyaddr_above_host(v: View):
    h = v.host
    if h is None or not h.tdp:
        return
    guest, host = v.guest_maxphyaddr, h.maxphyaddr
    if guest > host:
        yield Hit(("phys_addr_bits",), f"guest MAXPHYADDR {guest} > host {h.name} MAXPHYADDR {host}")


@_rule("maxphyaddr_below_host")
def _maxphyaddr_below_host(v: View):
    h = v.host
    if h is None or not h.tdp or h.allow_smaller_maxphyaddr:
        return
    guest, host = v.guest_maxphyaddr, h.maxphyaddr
    if guest < host:
        yield Hit(
            ("phys_addr_bits",),
            f"guest MAXPHYADDR {guest} < host {h.name} MAXPHYADDR {host} (allow_smaller_maxphyaddr off)",
        )


@_rule("guest_phys_bits_above_maxphyaddr")
def _guest_phys_bits_above_maxphyaddr(v: View):
    e = v.visible(0x80000008)
    if e is None:
        return
    gpb, pa = extract_bits(e.eax, 23, 16), e.eax & 0xFF
    if gpb > pa:
        yield Hit(("guest_phys_addr_bits", "phys_addr_bits"), f"GuestPhysBits {gpb} > MAXPHYADDR {pa}")


@_rule("xcr0_beyond_host")
def _xcr0_beyond_host(v: View):
    h = v.host
    if h is None or not v.xcr0:
        return
    ok = h.kvm_supported_xcr0(h.vendor_for()) | 1
    extra = [b for b in set_bits(v.xcr0 & ~ok) if b not in SUPERVISOR_COMPONENTS and b != 63]
    if extra:
        yield Hit(
            tuple(xcr0_field(b) for b in extra),
            f"0xD.0 lists {components_text(extra)}, which KVM on host {h.name} cannot give a guest",
        )


@_rule("sgx_xfrm_not_subset")
def _sgx_xfrm_not_subset(v: View):
    if not v.flag("sgx") or not v.flag("sgx1"):
        return
    e = v.visible(0x12, 1)
    if e is None:
        return
    xfrm = e.ecx | e.edx << 32
    extra = set_bits(xfrm & ~(v.xcr0 | 0b11))
    if extra:
        yield Hit(
            ("sgx_xfrm_lo", "sgx_xfrm_hi", "xcr0_supported_lo"),
            f"0x12.1 allows XFRM bit(s) {components_text(extra)} that 0xD.0 does not list",
        )


# ---- insane: table structure


@_rule("leaf_beyond_max_basic")
def _leaf_beyond_max_basic(v: View):
    yield from _beyond(v, lambda f: f < 0x40000000, "maximum basic leaf")


@_rule("leaf_beyond_max_extended")
def _leaf_beyond_max_extended(v: View):
    yield from _beyond(v, lambda f: f >= 0x80000000, "maximum extended leaf")


def _beyond(v: View, which: Callable[[int], bool], what: str):
    for f in sorted(set(v.table.functions())):
        if not which(f) or f in (lo for lo, _ in RANGES):
            continue
        top = v.range_max(f)
        if top is None and 0x80000000 <= f < 0x80860000:
            yield Hit((leaf_field(f),), f"leaf {f:#x} without a 0x80000000 entry to announce it")
        elif top is not None and f > top:
            yield Hit((leaf_field(f),), f"leaf {f:#x} is above the {what} {top:#x}")


@_rule("subleaf_beyond_max")
def _subleaf_beyond_max(v: View):
    for leaf in SUBLEAF_MAX_LEAVES:
        e0 = v.visible(leaf, 0)
        if e0 is None:
            continue
        beyond = sorted({e.index for e in v.table if e.function == leaf and e.significant_index and e.index > e0.eax})
        if beyond:
            yield Hit(
                tuple(leaf_field(leaf, i) for i in beyond),
                f"subleaf(s) {', '.join(map(str, beyond))} of leaf {leaf:#x} above its maximum {e0.eax}",
            )


def _kvm_bases(v: View) -> list[int]:
    out = []
    present = set(v.table.functions())
    for base in HYPERVISOR_BASES:
        if base not in present:
            continue
        e = v.table.get(base)
        if e is not None and (e.ebx, e.ecx, e.edx) == KVM_SIGNATURE:
            out.append(base)
    return out


@_rule("kvm_pv_without_hypervisor")
def _kvm_pv_without_hypervisor(v: View):
    bases = _kvm_bases(v)
    if bases and not v.flag("hypervisor"):
        yield Hit(
            ("hypervisor", f"{bases[0]:#x}.0.ebx"), f"KVM signature at {bases[0]:#x} but CPUID.1.ECX.hypervisor = 0"
        )


@_rule("kvm_pv_features_without_signature")
def _kvm_pv_features_without_signature(v: View):
    for e in v.table:
        if not 0x40000000 <= e.function < 0x40010000 or e.function & 0xFF != 1 or not (e.eax or e.edx):
            continue
        base = e.function & ~0xFF
        b = v.table.get(base)
        if b is None or not (b.ebx or b.ecx or b.edx):
            yield Hit(
                (leaf_field(e.function, 0), leaf_field(base, 0)),
                f"features leaf {e.function:#x} has bits set but {base:#x} "
                f"{'is missing' if b is None else 'has no signature'}",
            )


@_rule("vendor_leaf_mismatch")
def _vendor_leaf_mismatch(v: View):
    vendor = v.table.vendor
    if vendor in AMD_VENDORS:
        foreign, owner = INTEL_ONLY_LEAVES, "Intel"
    elif vendor in INTEL_VENDORS:
        foreign, owner = AMD_ONLY_LEAVES, "AMD"
    else:
        return
    used = [
        f
        for f in foreign
        if v.in_range(f) and any(e.function == f and (e.eax or e.ebx or e.ecx or e.edx) for e in v.table)
    ]
    if used:
        yield Hit(
            ("cpu_vendorid_0", *(leaf_field(f) for f in used)),
            f"vendor {vendor} with {owner}-only leaf/leaves {', '.join(f'{f:#x}' for f in used)} filled in",
        )


@_rule("duplicate_entry")
def _duplicate_entry(v: View):
    seen: set[tuple[int, int]] = set()
    seen_fn: set[int] = set()
    for pos, e in enumerate(v.table):
        indexed = e.function in ARCH_INDEXED_FUNCTIONS
        dup = (e.function, e.index) in seen if indexed else e.function in seen_fn
        if dup:
            yield Hit(
                (leaf_field(e.function, e.index),),
                f"entry {pos} ({e.function:#x}.{e.index}) repeats an earlier entry; KVM uses the first",
            )
        seen.add((e.function, e.index))
        seen_fn.add(e.function)


# How a guest learns that an indexed leaf has no subleaf above 0, read from subleaf 0 alone
# (Intel SDM Vol. 2A CPUID; AMD APM Vol. 3 App. E): a maximum subleaf of 0 in EAX, a bitmap of
# valid subleaves with none above 0, or a null type that ends the enumeration.
_ENDS_AT_SUBLEAF_0: dict[int, Callable[[CpuidEntry], bool]] = {
    **{f: (lambda e: e.eax == 0) for f in (0x7, 0x14, 0x17, 0x18, 0x1D, 0x20, 0x24)},
    0x23: lambda e: e.eax & ~1 == 0,
    0x4: lambda e: e.eax & 0x1F == 0,
    0x8000001D: lambda e: e.eax & 0x1F == 0,
    0xB: lambda e: extract_bits(e.ecx, 15, 8) == 0,
    0x1F: lambda e: extract_bits(e.ecx, 15, 8) == 0,
    0x80000026: lambda e: extract_bits(e.ecx, 15, 8) == 0,
    0x1B: lambda e: e.eax & 0xFFF == 0,
}


def _lone_entry_harmless(e: CpuidEntry) -> bool:
    """A single unflagged entry does no harm when every subleaf would read zeros or none but 0 is read."""
    if not (e.eax or e.ebx or e.ecx or e.edx):
        return True
    ends = _ENDS_AT_SUBLEAF_0.get(e.function)
    return e.index == 0 and ends is not None and ends(e)


@_rule("indexed_leaf_without_flag")
def _indexed_leaf_without_flag(v: View):
    kvm = kvm_indexed()
    for f in sorted(set(v.table.functions()) & ARCH_INDEXED_FUNCTIONS):
        ents = [e for e in v.table if e.function == f]
        bare = [e for e in ents if not e.significant_index]
        if not bare or (len(ents) == 1 and _lone_entry_harmless(ents[0])):
            continue
        why = (
            ""
            if f in kvm
            else (
                " (KVM's cpuid_function_is_indexed does not list this leaf, so tables built "
                "by KVM's rules leave the flag off)"
            )
        )
        yield Hit(
            (leaf_field(f),),
            f"{len(bare)} of {len(ents)} entr{'y' if len(ents) == 1 else 'ies'} of leaf "
            f"{f:#x} lack{'s' if len(bare) == 1 else ''} the significant-index flag; KVM returns subleaf "
            f"{bare[0].index}'s data for every subleaf not listed before it{why}",
        )


@_rule("flag_on_unindexed_leaf")
def _flag_on_unindexed_leaf(v: View):
    for f in sorted({e.function for e in v.table if e.significant_index} - ARCH_INDEXED_FUNCTIONS):
        yield Hit((leaf_field(f),), f"leaf {f:#x} takes no subleaf but carries the significant-index flag")


# ---- insane: XSAVE enumeration


@_rule("xsave_without_leaf_0xd")
def _xsave_without_leaf_0xd(v: View):
    if not v.flag("xsave") or v.visible(0xD, 0) is not None:
        return
    where = "is above the maximum basic leaf" if v.table.get(0xD, 0) is not None else "is missing"
    yield Hit(("xsave", leaf_field(0xD, 0)), f"XSAVE is set but leaf 0xD.0 {where}")


@_rule("xstate_component_without_subleaf")
def _xstate_component_without_subleaf(v: View):
    listed = [b for b in set_bits(v.xcr0 | v.xss) if 2 <= b < 63]
    missing = [b for b in listed if b not in v.components or not v.components[b].size]
    if missing:
        yield Hit(
            tuple(leaf_field(0xD, b) for b in missing),
            f"listed component(s) {components_text(missing)} have no 0xD subleaf with a size",
        )


@_rule("os_bit_without_feature")
def _os_bit_without_feature(v: View):
    for os_bit, feature in (("osxsave", "xsave"), ("ospke", "pku")):
        if v.flag(os_bit) and not v.flag(feature):
            yield Hit((os_bit, feature), f"{os_bit} = 1 while {feature} = 0")


# ---- info


@_rule("runtime_owned_value")
def _runtime_owned_value(v: View):
    for name, reset, driver in (
        ("osxsave", 0, "CR4.OSXSAVE"),
        ("ospke", 0, "CR4.PKE"),
        ("apic", 1, "IA32_APIC_BASE.EN"),
    ):
        val = v.field(name)
        if val is not None and val != reset:
            yield Hit((name,), f"{name} = {val}; KVM stores {driver} there ({reset} after reset)")
    d0 = v.visible(0xD, 0)
    if d0 is not None and d0.ebx != LEGACY_AND_HEADER:
        yield Hit(
            ("xsave_size_enabled",),
            f"0xD.0 EBX = {d0.ebx}; KVM stores the XSAVE size for the current "
            f"XCR0 there ({LEGACY_AND_HEADER} after reset)",
        )
    d1 = v.visible(0xD, 1)
    if d1 is not None and d1.eax & 0b1010 and d1.ebx != LEGACY_AND_HEADER:
        yield Hit(
            ("xsaves_size_enabled",),
            f"0xD.1 EBX = {d1.ebx}; with XSAVEC/XSAVES KVM stores the compacted "
            f"size for XCR0 (| IA32_XSS) there ({LEGACY_AND_HEADER} after reset)",
        )


@_rule("sgx_flag_without_leaf")
def _sgx_flag_without_leaf(v: View):
    if v.flag("sgx") and not v.flag("sgx1"):
        where = "has no SGX1 bit" if v.visible(0x12, 0) is not None else "is missing"
        yield Hit(("sgx", "sgx1"), f"SGX is set but leaf 0x12.0 {where}")


@_rule("no_phys_addr_leaf")
def _no_phys_addr_leaf(v: View):
    if v.table.get(0) is None:
        return
    if v.visible(0x80000008) is None or v.max_ext is None or v.max_ext < 0x80000008:
        yield Hit(("phys_addr_bits",), "no reachable 0x80000008 entry: KVM uses MAXPHYADDR 36")


# ---- dependency rules (data/feature-deps.csv)


def _dependency_check(rule_id: str) -> Callable[[View], Iterator[Hit]]:
    def check(v: View) -> Iterator[Hit]:
        needs: dict[str, list[str]] = {}
        for d in dependencies():
            if d.rule == rule_id:
                needs.setdefault(d.feature, []).append(d.requires)
        for feature, reqs in needs.items():
            if not v.ref(feature):
                continue
            missing = [r for r in reqs if not v.ref(r)]
            if missing:
                yield Hit(
                    (_ref_field(feature), *(_ref_field(r) for r in missing)),
                    f"{_ref_text(feature)} is set but {', '.join(_ref_text(r) for r in missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not",
                )

    check.__name__ = f"dependency_{rule_id}"
    return check


@functools.cache
def implementations() -> dict[str, Callable[[View], Iterable[Hit]]]:
    """Rule id -> its check: the functions above, and one graph walk per dependency rule."""
    out = dict(_CHECKS)
    for d in dependencies():
        if d.rule in _CHECKS:
            raise RuntimeError(f"rule {d.rule} has both a function and dependency rows")
        out.setdefault(d.rule, _dependency_check(d.rule))
    return out
