"""Sanity lint for CPUID tables: sane is not legal, and KVM judges almost neither.

KVM checks almost nothing in a table (the entry count, the linear-address
width, AMX permission) and leaves sanity to userspace.  This module judges it,
rule by rule, with three classes of finding:

==========  ==================================================================
``illegal`` the architecture forbids it, or a guest that follows the SDM/APM
            faults (a linear width other than 48/57, supervisor components in
            0xD.0, YMM without SSE …)
``insane``  legal, but unusable or self-contradictory (TILECFG without
            TILEDATA, AVX-512F without its XCR0 components, PKU without PKRU,
            guest MAXPHYADDR above the host's, dead or shadowed entries …)
``info``    worth knowing, harmless by itself (values KVM overwrites at run
            time, a MAXPHYADDR smaller than the host's …)
==========  ==================================================================

Every rule's words live in ``data/lint-rules.csv`` (id, class, fields,
explanation, reference, whether KVM checks it, what happens in a guest); the
feature dependency graph lives in ``data/feature-deps.csv``.  The logic of a
rule is a function here with the rule's id, or, for dependency rules, the
generic walk over the graph.

A finding can be marked **intended** ("insane on purpose", e.g. for a test VM):
pass ``intended`` as a set of keys or a ``{key: note}`` mapping, where a key is
a rule id or ``rule@field``.  Intended findings are still reported, with
``intended=True`` and the note.

:func:`matrix` sets KVM's verdict (the model in :mod:`cpuidkit.kvm.check`)
beside the lint class, with :func:`example_cases` giving a table for every
cell.

The lint reads a table the way a guest does: a leaf above the maximum leaf of
its range, or a leaf-7 subleaf above 7.0.EAX, counts as absent.  Rules about
KVM's lookup (duplicates, flags) look at every entry.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from cpuidkit._files import data_path, read_csv
from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX, extract_bits, set_bits
from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.indexed import INDEXED_FUNCTIONS
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.core.xsave import XFEATURE_NAMES, components_of
from cpuidkit.errors import InputError
from cpuidkit.kvm.check import check
from cpuidkit.live import resolve_host

if TYPE_CHECKING:  # pragma: no cover
    from cpuidkit.core.hosts import HostProfile

__all__ = [
    "CLASSES",
    "Rule",
    "Dependency",
    "Finding",
    "rules",
    "dependencies",
    "implementations",
    "lint_table",
    "load_intended",
    "parse_intended",
    "summarize",
    "rules_markdown",
    "lint_class",
    "Case",
    "MatrixRow",
    "Matrix",
    "matrix",
    "example_cases",
    "guest_ready",
    "ARCH_INDEXED_FUNCTIONS",
]

CLASSES = ("illegal", "insane", "info")
_RANK = {c: n for n, c in enumerate(CLASSES)}

# -- facts the rules use (each with its source) ---------------------------------------------------

# Leaves whose subleaves differ: KVM's cpuid_function_is_indexed() list (cpuidkit.core.indexed)
# plus those the SDM/APM define with subleaves but KVM does not list: 0x1B (PCONFIG), 0x20
# (HRESET), 0x23 (architectural performance monitoring extensions), 0x80000020 (AMD PQoS),
# 0x80000026 (AMD extended CPU topology).
_ARCH_ONLY_INDEXED = frozenset({0x1B, 0x20, 0x23, 0x80000020, 0x80000026})


def _kvm_indexed() -> frozenset[int]:
    return INDEXED_FUNCTIONS


ARCH_INDEXED_FUNCTIONS = frozenset(_kvm_indexed() | _ARCH_ONLY_INDEXED)

# XSAVE state components (Intel SDM Vol. 1 13.1, table "XSAVE-managed state components";
# AMD APM Vol. 2 for LWP, bit 62).
_SUPERVISOR_COMPONENTS = frozenset({8, 10, 11, 12, 13, 14, 15, 16})
_USER_COMPONENTS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 9, 17, 18, 19, 62})
_XCR0_RESERVED = 1 << 63
_APX, _MPX = 19, (3, 4)  # APX reuses the MPX area in the standard format (the two never coexist)
_LEGACY_AND_HEADER = 576

# Leaves only one vendor defines (Intel SDM Vol. 2A CPUID; AMD APM Vol. 3 App. E).
_INTEL_ONLY_LEAVES = (0x12, 0x14, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x20, 0x23, 0x24)
_AMD_ONLY_LEAVES = (0x8000000A, *range(0x80000019, 0x80000024), 0x80000026)
_AMD_VENDORS = ("AuthenticAMD", "HygonGenuine")
_INTEL_VENDORS = ("GenuineIntel",)

# KVM's PV signature "KVMKVMKVM\0\0\0" as ebx, ecx, edx (Documentation/virt/kvm/x86/cpuid.rst)
_KVM_SIGNATURE = (0x4B4D564B, 0x564B4D56, 0x0000004D)
_HYPERVISOR_BASES = range(0x40000000, 0x40010000, 0x100)

# Ranges of leaves, each with its own maximum in its base leaf's EAX.  The basic and extended
# ranges are the architectural ones; 0x20000000 (Xeon Phi), 0x80860000 (Transmeta) and
# 0xC0000000 (Centaur) are probed by dump tools and judged against their own base.
_RANGES = (
    (0x0, 0x20000000),
    (0x20000000, 0x40000000),
    (0x80000000, 0x80860000),
    (0x80860000, 0x80870000),
    (0xC0000000, 0xC0010000),
)

# Leaves whose subleaf 0 EAX is the maximum subleaf (Intel SDM Vol. 2A CPUID).
_SUBLEAF_MAX_LEAVES = (0x7, 0x14, 0x1D, 0x24)

_HOST_RULES = frozenset({"maxphyaddr_above_host", "maxphyaddr_below_host", "xcr0_beyond_host"})


def _xfeature_name(bit: int) -> str:
    return {62: "lwp"}.get(bit) or XFEATURE_NAMES.get(bit, f"xfeature{bit}")


def _xcr0_field(bit: int) -> str:
    return f"0xd.0.eax[{bit}]" if bit < 32 else f"0xd.0.edx[{bit - 32}]"


def _xss_field(bit: int) -> str:
    return f"0xd.1.ecx[{bit}]" if bit < 32 else f"0xd.1.edx[{bit - 32}]"


def _leaf_field(function: int, index: int | None = None) -> str:
    return f"{function:#x}.*" if index is None else f"{function:#x}.{index}"


def _components_text(bits: Iterable[int]) -> str:
    return ", ".join(f"{b} ({_xfeature_name(b)})" for b in bits)


# -- the data ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of ``data/lint-rules.csv``."""

    id: str
    severity: str
    fields: tuple[str, ...]
    explanation: str
    reference: str
    kvm_checks: bool
    if_ignored: str

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "class": self.severity,
            "fields": list(self.fields),
            "explanation": self.explanation,
            "reference": self.reference,
            "kvm_checks": self.kvm_checks,
            "if_ignored": self.if_ignored,
        }


@dataclass(frozen=True, slots=True)
class Dependency:
    """One edge of ``data/feature-deps.csv``: ``feature`` needs ``requires``."""

    rule: str
    feature: str
    requires: str
    source: str


@functools.cache
def rules() -> dict[str, Rule]:
    """Every rule, by id, in the order of ``data/lint-rules.csv``."""
    source = str(data_path("lint-rules.csv"))
    out: dict[str, Rule] = {}
    for n, row in enumerate(read_csv("lint-rules.csv"), start=1):
        where = f"rule row {n} ({row.get('id', '?')})"
        rid = row["id"]
        if not rid or not all(c.islower() or c.isdigit() or c == "_" for c in rid):
            raise InputError(f"rule id must be lower_case_with_underscores, got {rid!r}", source=source, where=where)
        if rid in out:
            raise InputError(f"duplicate rule id {rid!r}", source=source, where=where)
        if row["class"] not in CLASSES:
            raise InputError(
                f"class must be one of {', '.join(CLASSES)}, got {row['class']!r}", source=source, where=where
            )
        if row["kvm_checks"] not in ("yes", "no"):
            raise InputError(f"kvm_checks must be yes or no, got {row['kvm_checks']!r}", source=source, where=where)
        for col in ("explanation", "reference", "if_ignored"):
            if not row[col]:
                raise InputError(f"{col} is empty", source=source, where=where)
        out[rid] = Rule(
            rid,
            row["class"],
            tuple(f for f in row["fields"].split(";") if f),
            row["explanation"],
            row["reference"],
            row["kvm_checks"] == "yes",
            row["if_ignored"],
        )
    return out


@functools.cache
def dependencies() -> tuple[Dependency, ...]:
    """The feature dependency graph from ``data/feature-deps.csv``."""
    source = str(data_path("feature-deps.csv"))
    known = rules()
    out = []
    for n, row in enumerate(read_csv("feature-deps.csv"), start=1):
        where = f"dependency row {n}"
        if row["rule"] not in known:
            raise InputError(f"unknown rule {row['rule']!r} (not in lint-rules.csv)", source=source, where=where)
        for col in ("feature", "requires"):
            _check_ref(row[col], source, where)
        out.append(Dependency(row["rule"], row["feature"], row["requires"], row["source"]))
    return tuple(out)


def _check_ref(ref: str, source: str, where: str) -> None:
    kind, _, num = ref.partition(":")
    if kind in ("xcr0", "xss") and num:
        if not num.isdigit() or not 0 <= int(num) <= 63:
            raise InputError(f"{ref!r}: the bit must be 0..63", source=source, where=where)
    elif not ref or ":" in ref:
        raise InputError(f"expected a field name, xcr0:N or xss:N, got {ref!r}", source=source, where=where)


# -- findings ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule firing on one table (``as_dict()`` is the JSON shape of ``cpuidkit lint``)."""

    rule: str
    severity: str
    fields: tuple[str, ...]
    explanation: str
    reference: str
    detail: str = ""
    kvm_checks: bool = False
    if_ignored: str = ""
    intended: bool = False
    note: str | None = None

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "fields": list(self.fields),
            "detail": self.detail,
            "explanation": self.explanation,
            "reference": self.reference,
            "kvm_checks": self.kvm_checks,
            "if_ignored": self.if_ignored,
            "intended": self.intended,
            "note": self.note,
        }

    def __str__(self) -> str:
        mark = " (intended)" if self.intended else ""
        return f"{self.severity} {self.rule}{mark}: {self.detail or self.explanation}"


class _Hit(NamedTuple):
    fields: tuple[str, ...]
    detail: str


# -- a table as a guest reads it -------------------------------------------------------------------


class _View:
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
        for lo, hi in _RANGES:
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
        return _xcr0_field(int(num))
    if kind == "xss" and num:
        return _xss_field(int(num))
    return ref


def _ref_text(ref: str) -> str:
    kind, _, num = ref.partition(":")
    if kind == "xcr0" and num:
        return f"XCR0 bit {num} ({_xfeature_name(int(num))}) in 0xD.0"
    if kind == "xss" and num:
        return f"IA32_XSS bit {num} ({_xfeature_name(int(num))}) in 0xD.1"
    return ref


# -- the rules -------------------------------------------------------------------------------------

_CHECKS: dict[str, Callable[[_View], Iterable[_Hit]]] = {}


def _rule(rule_id: str):
    def register(fn):
        if rule_id in _CHECKS:
            raise RuntimeError(f"two implementations of lint rule {rule_id}")
        _CHECKS[rule_id] = fn
        return fn

    return register


# ---- illegal


@_rule("linear_width_invalid")
def _linear_width_invalid(v: _View):
    e = v.table.get(0x80000008)  # KVM checks the entry whenever it is present
    if e is None:
        return
    width = extract_bits(e.eax, 15, 8)
    lm = v.flag("lm")
    allowed = (48, 57) if lm else (0, 32, 48, 57)
    if width not in allowed:
        cpu = "a 64-bit CPU (lm=1)" if lm else "a CPU without long mode"
        yield _Hit(
            ("virt_addr_bits",), f"0x80000008.EAX[15:8] = {width} on {cpu}; expected {' or '.join(map(str, allowed))}"
        )


@_rule("xcr0_supervisor_component")
def _xcr0_supervisor_component(v: _View):
    bad = [b for b in set_bits(v.xcr0) if b in _SUPERVISOR_COMPONENTS]
    if bad:
        yield _Hit(tuple(_xcr0_field(b) for b in bad), f"0xD.0 lists supervisor component(s) {_components_text(bad)}")


@_rule("xcr0_reserved_bit")
def _xcr0_reserved_bit(v: _View):
    if v.xcr0 & _XCR0_RESERVED:
        yield _Hit((_xcr0_field(63),), "0xD.0 EDX[31] (XCR0 bit 63) is set")


@_rule("xcr0_fp_sse_missing")
def _xcr0_fp_sse_missing(v: _View):
    if not v.flag("xsave") or v.visible(0xD, 0) is None:
        return
    missing = [b for b in (0, 1) if not v.xcr0 >> b & 1]
    if missing:
        yield _Hit(
            ("xsave", *(_xcr0_field(b) for b in missing)),
            f"XSAVE is set but 0xD.0 EAX lacks {_components_text(missing)}",
        )


@_rule("xcr0_ymm_without_sse")
def _xcr0_ymm_without_sse(v: _View):
    if v.xcr0 & 0b100 and not v.xcr0 & 0b10:
        yield _Hit((_xcr0_field(2), _xcr0_field(1)), "0xD.0 EAX[2] (YMM) is set and EAX[1] (SSE) is clear")


@_rule("xss_user_component")
def _xss_user_component(v: _View):
    bad = [b for b in set_bits(v.xss) if b in _USER_COMPONENTS]
    if bad:
        yield _Hit(tuple(_xss_field(b) for b in bad), f"0xD.1 ECX/EDX lists user component(s) {_components_text(bad)}")


@_rule("xsave_supervisor_flag_mismatch")
def _xsave_supervisor_flag_mismatch(v: _View):
    for bit, c in sorted(v.components.items()):
        in_xcr0, in_xss = v.xcr0 >> bit & 1, v.xss >> bit & 1
        if in_xcr0 and c.supervisor:
            yield _Hit(
                (f"0xd.{bit}.ecx[0]", _xcr0_field(bit)),
                f"component {bit} ({c.name}) is listed in 0xD.0 (user) but 0xD.{bit} ECX[0] says supervisor",
            )
        elif in_xss and not c.supervisor:
            yield _Hit(
                (f"0xd.{bit}.ecx[0]", _xss_field(bit)),
                f"component {bit} ({c.name}) is listed in 0xD.1 (supervisor) but 0xD.{bit} ECX[0] says user",
            )


def _listed_user_components(v: _View):
    return [
        (b, v.components[b])
        for b in set_bits(v.xcr0)
        if b >= 2 and b in v.components and not v.components[b].supervisor and b != 63
    ]


@_rule("xsave_max_size_too_small")
def _xsave_max_size_too_small(v: _View):
    e = v.visible(0xD, 0)
    if e is None or not v.xcr0:
        return
    if e.ecx < _LEGACY_AND_HEADER:
        yield _Hit(("xsave_size_max",), f"0xD.0 ECX = {e.ecx} is below {_LEGACY_AND_HEADER} (legacy area and header)")
        return
    for b, c in _listed_user_components(v):
        if c.offset + c.size > e.ecx:
            yield _Hit(
                ("xsave_size_max", f"0xd.{b}.eax", f"0xd.{b}.ebx"),
                f"component {b} ({c.name}) ends at {c.offset + c.size} but 0xD.0 ECX = {e.ecx}",
            )


@_rule("xsave_offsets_overlap")
def _xsave_offsets_overlap(v: _View):
    comps = [(b, c) for b, c in _listed_user_components(v) if c.size]
    for b, c in comps:
        if c.offset < _LEGACY_AND_HEADER:
            yield _Hit(
                (f"0xd.{b}.ebx",),
                f"component {b} ({c.name}) starts at {c.offset}, inside the legacy "
                f"area and header (the first {_LEGACY_AND_HEADER} bytes)",
            )
    for i, (b1, c1) in enumerate(comps):
        for b2, c2 in comps[i + 1 :]:
            if {b1, b2} & {_APX} and {b1, b2} & set(_MPX):
                continue
            if c1.offset < c2.offset + c2.size and c2.offset < c1.offset + c1.size:
                yield _Hit(
                    (f"0xd.{b1}.ebx", f"0xd.{b2}.ebx"),
                    f"component {b1} ({c1.name}) at {c1.offset}+{c1.size} overlaps component {b2} "
                    f"({c2.name}) at {c2.offset}+{c2.size}",
                )


@_rule("maxphyaddr_out_of_range")
def _maxphyaddr_out_of_range(v: _View):
    pa = v.field("phys_addr_bits")
    if pa is not None and not 32 <= pa <= 52:
        yield _Hit(("phys_addr_bits",), f"0x80000008.EAX[7:0] = {pa}; a real CPU has 32..52")


# ---- insane: XCR0 pairs


@_rule("xcr0_amx_pair")
def _xcr0_amx_pair(v: _View):
    cfg, data = v.xcr0 >> 17 & 1, v.xcr0 >> 18 & 1
    if cfg != data:
        have, lack = (17, 18) if cfg else (18, 17)
        yield _Hit(
            (_xcr0_field(17), _xcr0_field(18)),
            f"0xD.0 lists {_components_text([have])} without {_components_text([lack])}",
        )


@_rule("xcr0_avx512_partial")
def _xcr0_avx512_partial(v: _View):
    m = v.xcr0 >> 5 & 0b111
    if m and m != 0b111:
        listed = [b for b in (5, 6, 7) if m >> (b - 5) & 1]
        yield _Hit(
            tuple(_xcr0_field(b) for b in (5, 6, 7)),
            f"0xD.0 lists only {_components_text(listed)} of the three AVX-512 components",
        )
    elif m == 0b111 and not v.xcr0 & 0b100:
        yield _Hit((_xcr0_field(2), _xcr0_field(5)), "0xD.0 lists the AVX-512 components but not YMM (bit 2)")


@_rule("xcr0_mpx_pair")
def _xcr0_mpx_pair(v: _View):
    regs, csr = v.xcr0 >> 3 & 1, v.xcr0 >> 4 & 1
    if regs != csr:
        have, lack = (3, 4) if regs else (4, 3)
        yield _Hit(
            (_xcr0_field(3), _xcr0_field(4)),
            f"0xD.0 lists {_components_text([have])} without {_components_text([lack])}",
        )


# ---- insane: addresses


@_rule("la57_width_without_flag")
def _la57_width_without_flag(v: _View):
    if v.field("virt_addr_bits") == 57 and not v.flag("la57"):
        yield _Hit(("virt_addr_bits", "la57"), "linear width 57 with CPUID.7.0.ECX.LA57 = 0")


@_rule("la57_flag_without_width")
def _la57_flag_without_width(v: _View):
    width = v.field("virt_addr_bits")
    if v.flag("la57") and width == 48:
        yield _Hit(("la57", "virt_addr_bits"), "CPUID.7.0.ECX.LA57 = 1 with linear width 48")


@_rule("maxphyaddr_above_host")
def _maxphyaddr_above_host(v: _View):
    h = v.host
    if h is None or not h.tdp:
        return
    guest, host = v.guest_maxphyaddr, h.maxphyaddr
    if guest > host:
        yield _Hit(("phys_addr_bits",), f"guest MAXPHYADDR {guest} > host {h.name} MAXPHYADDR {host}")


@_rule("maxphyaddr_below_host")
def _maxphyaddr_below_host(v: _View):
    h = v.host
    if h is None or not h.tdp or h.allow_smaller_maxphyaddr:
        return
    guest, host = v.guest_maxphyaddr, h.maxphyaddr
    if guest < host:
        yield _Hit(
            ("phys_addr_bits",),
            f"guest MAXPHYADDR {guest} < host {h.name} MAXPHYADDR {host} (allow_smaller_maxphyaddr off)",
        )


@_rule("guest_phys_bits_above_maxphyaddr")
def _guest_phys_bits_above_maxphyaddr(v: _View):
    e = v.visible(0x80000008)
    if e is None:
        return
    gpb, pa = extract_bits(e.eax, 23, 16), e.eax & 0xFF
    if gpb > pa:
        yield _Hit(("guest_phys_addr_bits", "phys_addr_bits"), f"GuestPhysBits {gpb} > MAXPHYADDR {pa}")


@_rule("xcr0_beyond_host")
def _xcr0_beyond_host(v: _View):
    h = v.host
    if h is None or not v.xcr0:
        return
    ok = h.kvm_supported_xcr0(h.vendor_for()) | 1
    extra = [b for b in set_bits(v.xcr0 & ~ok) if b not in _SUPERVISOR_COMPONENTS and b != 63]
    if extra:
        yield _Hit(
            tuple(_xcr0_field(b) for b in extra),
            f"0xD.0 lists {_components_text(extra)}, which KVM on host {h.name} cannot give a guest",
        )


@_rule("sgx_xfrm_not_subset")
def _sgx_xfrm_not_subset(v: _View):
    if not v.flag("sgx") or not v.flag("sgx1"):
        return
    e = v.visible(0x12, 1)
    if e is None:
        return
    xfrm = e.ecx | e.edx << 32
    extra = set_bits(xfrm & ~(v.xcr0 | 0b11))
    if extra:
        yield _Hit(
            ("sgx_xfrm_lo", "sgx_xfrm_hi", "xcr0_supported_lo"),
            f"0x12.1 allows XFRM bit(s) {_components_text(extra)} that 0xD.0 does not list",
        )


# ---- insane: table structure


@_rule("leaf_beyond_max_basic")
def _leaf_beyond_max_basic(v: _View):
    yield from _beyond(v, lambda f: f < 0x40000000, "maximum basic leaf")


@_rule("leaf_beyond_max_extended")
def _leaf_beyond_max_extended(v: _View):
    yield from _beyond(v, lambda f: f >= 0x80000000, "maximum extended leaf")


def _beyond(v: _View, which: Callable[[int], bool], what: str):
    for f in sorted(set(v.table.functions())):
        if not which(f) or f in (lo for lo, _ in _RANGES):
            continue
        top = v.range_max(f)
        if top is None and 0x80000000 <= f < 0x80860000:
            yield _Hit((_leaf_field(f),), f"leaf {f:#x} without a 0x80000000 entry to announce it")
        elif top is not None and f > top:
            yield _Hit((_leaf_field(f),), f"leaf {f:#x} is above the {what} {top:#x}")


@_rule("subleaf_beyond_max")
def _subleaf_beyond_max(v: _View):
    for leaf in _SUBLEAF_MAX_LEAVES:
        e0 = v.visible(leaf, 0)
        if e0 is None:
            continue
        beyond = sorted({e.index for e in v.table if e.function == leaf and e.significant_index and e.index > e0.eax})
        if beyond:
            yield _Hit(
                tuple(_leaf_field(leaf, i) for i in beyond),
                f"subleaf(s) {', '.join(map(str, beyond))} of leaf {leaf:#x} above its maximum {e0.eax}",
            )


def _kvm_bases(v: _View) -> list[int]:
    out = []
    present = set(v.table.functions())
    for base in _HYPERVISOR_BASES:
        if base not in present:
            continue
        e = v.table.get(base)
        if e is not None and (e.ebx, e.ecx, e.edx) == _KVM_SIGNATURE:
            out.append(base)
    return out


@_rule("kvm_pv_without_hypervisor")
def _kvm_pv_without_hypervisor(v: _View):
    bases = _kvm_bases(v)
    if bases and not v.flag("hypervisor"):
        yield _Hit(
            ("hypervisor", f"{bases[0]:#x}.0.ebx"), f"KVM signature at {bases[0]:#x} but CPUID.1.ECX.hypervisor = 0"
        )


@_rule("kvm_pv_features_without_signature")
def _kvm_pv_features_without_signature(v: _View):
    for e in v.table:
        if not 0x40000000 <= e.function < 0x40010000 or e.function & 0xFF != 1 or not (e.eax or e.edx):
            continue
        base = e.function & ~0xFF
        b = v.table.get(base)
        if b is None or not (b.ebx or b.ecx or b.edx):
            yield _Hit(
                (_leaf_field(e.function, 0), _leaf_field(base, 0)),
                f"features leaf {e.function:#x} has bits set but {base:#x} "
                f"{'is missing' if b is None else 'has no signature'}",
            )


@_rule("vendor_leaf_mismatch")
def _vendor_leaf_mismatch(v: _View):
    vendor = v.table.vendor
    if vendor in _AMD_VENDORS:
        foreign, owner = _INTEL_ONLY_LEAVES, "Intel"
    elif vendor in _INTEL_VENDORS:
        foreign, owner = _AMD_ONLY_LEAVES, "AMD"
    else:
        return
    used = [
        f
        for f in foreign
        if v.in_range(f) and any(e.function == f and (e.eax or e.ebx or e.ecx or e.edx) for e in v.table)
    ]
    if used:
        yield _Hit(
            ("cpu_vendorid_0", *(_leaf_field(f) for f in used)),
            f"vendor {vendor} with {owner}-only leaf/leaves {', '.join(f'{f:#x}' for f in used)} filled in",
        )


@_rule("duplicate_entry")
def _duplicate_entry(v: _View):
    seen: set[tuple[int, int]] = set()
    seen_fn: set[int] = set()
    for pos, e in enumerate(v.table):
        indexed = e.function in ARCH_INDEXED_FUNCTIONS
        dup = (e.function, e.index) in seen if indexed else e.function in seen_fn
        if dup:
            yield _Hit(
                (_leaf_field(e.function, e.index),),
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
def _indexed_leaf_without_flag(v: _View):
    kvm = _kvm_indexed()
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
        yield _Hit(
            (_leaf_field(f),),
            f"{len(bare)} of {len(ents)} entr{'y' if len(ents) == 1 else 'ies'} of leaf "
            f"{f:#x} lack{'s' if len(bare) == 1 else ''} the significant-index flag; KVM returns subleaf "
            f"{bare[0].index}'s data for every subleaf not listed before it{why}",
        )


@_rule("flag_on_unindexed_leaf")
def _flag_on_unindexed_leaf(v: _View):
    for f in sorted({e.function for e in v.table if e.significant_index} - ARCH_INDEXED_FUNCTIONS):
        yield _Hit((_leaf_field(f),), f"leaf {f:#x} takes no subleaf but carries the significant-index flag")


# ---- insane: XSAVE enumeration


@_rule("xsave_without_leaf_0xd")
def _xsave_without_leaf_0xd(v: _View):
    if not v.flag("xsave") or v.visible(0xD, 0) is not None:
        return
    where = "is above the maximum basic leaf" if v.table.get(0xD, 0) is not None else "is missing"
    yield _Hit(("xsave", _leaf_field(0xD, 0)), f"XSAVE is set but leaf 0xD.0 {where}")


@_rule("xstate_component_without_subleaf")
def _xstate_component_without_subleaf(v: _View):
    listed = [b for b in set_bits(v.xcr0 | v.xss) if 2 <= b < 63]
    missing = [b for b in listed if b not in v.components or not v.components[b].size]
    if missing:
        yield _Hit(
            tuple(_leaf_field(0xD, b) for b in missing),
            f"listed component(s) {_components_text(missing)} have no 0xD subleaf with a size",
        )


@_rule("os_bit_without_feature")
def _os_bit_without_feature(v: _View):
    for os_bit, feature in (("osxsave", "xsave"), ("ospke", "pku")):
        if v.flag(os_bit) and not v.flag(feature):
            yield _Hit((os_bit, feature), f"{os_bit} = 1 while {feature} = 0")


# ---- info


@_rule("runtime_owned_value")
def _runtime_owned_value(v: _View):
    for name, reset, driver in (
        ("osxsave", 0, "CR4.OSXSAVE"),
        ("ospke", 0, "CR4.PKE"),
        ("apic", 1, "IA32_APIC_BASE.EN"),
    ):
        val = v.field(name)
        if val is not None and val != reset:
            yield _Hit((name,), f"{name} = {val}; KVM stores {driver} there ({reset} after reset)")
    d0 = v.visible(0xD, 0)
    if d0 is not None and d0.ebx != _LEGACY_AND_HEADER:
        yield _Hit(
            ("xsave_size_enabled",),
            f"0xD.0 EBX = {d0.ebx}; KVM stores the XSAVE size for the current "
            f"XCR0 there ({_LEGACY_AND_HEADER} after reset)",
        )
    d1 = v.visible(0xD, 1)
    if d1 is not None and d1.eax & 0b1010 and d1.ebx != _LEGACY_AND_HEADER:
        yield _Hit(
            ("xsaves_size_enabled",),
            f"0xD.1 EBX = {d1.ebx}; with XSAVEC/XSAVES KVM stores the compacted "
            f"size for XCR0 (| IA32_XSS) there ({_LEGACY_AND_HEADER} after reset)",
        )


@_rule("sgx_flag_without_leaf")
def _sgx_flag_without_leaf(v: _View):
    if v.flag("sgx") and not v.flag("sgx1"):
        where = "has no SGX1 bit" if v.visible(0x12, 0) is not None else "is missing"
        yield _Hit(("sgx", "sgx1"), f"SGX is set but leaf 0x12.0 {where}")


@_rule("no_phys_addr_leaf")
def _no_phys_addr_leaf(v: _View):
    if v.table.get(0) is None:
        return
    if v.visible(0x80000008) is None or v.max_ext is None or v.max_ext < 0x80000008:
        yield _Hit(("phys_addr_bits",), "no reachable 0x80000008 entry: KVM uses MAXPHYADDR 36")


# ---- dependency rules (data/feature-deps.csv)


def _dependency_check(rule_id: str) -> Callable[[_View], Iterator[_Hit]]:
    def check(v: _View) -> Iterator[_Hit]:
        needs: dict[str, list[str]] = {}
        for d in dependencies():
            if d.rule == rule_id:
                needs.setdefault(d.feature, []).append(d.requires)
        for feature, reqs in needs.items():
            if not v.ref(feature):
                continue
            missing = [r for r in reqs if not v.ref(r)]
            if missing:
                yield _Hit(
                    (_ref_field(feature), *(_ref_field(r) for r in missing)),
                    f"{_ref_text(feature)} is set but {', '.join(_ref_text(r) for r in missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not",
                )

    check.__name__ = f"dependency_{rule_id}"
    return check


@functools.cache
def implementations() -> dict[str, Callable[[_View], Iterable[_Hit]]]:
    """Rule id -> its check: the functions above, and one graph walk per dependency rule."""
    out = dict(_CHECKS)
    for d in dependencies():
        if d.rule in _CHECKS:
            raise RuntimeError(f"rule {d.rule} has both a function and dependency rows")
        out.setdefault(d.rule, _dependency_check(d.rule))
    return out


# -- intended findings ---------------------------------------------------------------------------


def parse_intended(spec, source: str | None = None) -> dict[str, str]:
    """``{key: note}`` from a set/list of keys, a mapping, or None; keys are ``rule`` or ``rule@field``."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = [(k, "") for k in spec]
    known = rules()
    out: dict[str, str] = {}
    for key, note in items:
        if not isinstance(key, str) or not key:
            raise InputError(f"an intended key must be a rule id or rule@field, got {key!r}", source=source)
        if note is None:
            note = ""
        if not isinstance(note, str):
            raise InputError(f"the note for {key!r} must be a string", source=source, where=key)
        rid = key.partition("@")[0]
        if rid not in known:
            raise InputError(f"unknown lint rule {rid!r} in intended key {key!r}", source=source, where=key)
        out[key] = note
    return out


def load_intended(path: str | Path) -> dict[str, str]:
    """Read an ``--intended`` file: ``{"intended": {"rule" or "rule@field": "note", ...}}``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", source=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", source=str(path)) from None
    except json.JSONDecodeError as e:
        raise InputError(
            f"not valid JSON: {e.msg}", source=str(path), where=f"line {e.lineno} column {e.colno}"
        ) from None
    if not isinstance(doc, dict) or set(doc) - {"intended", "comment"} or not isinstance(doc.get("intended"), dict):
        raise InputError(
            'expected {"intended": {"rule or rule@field": "note", ...}} (and optionally "comment")', source=str(path)
        )
    return parse_intended(doc["intended"], source=str(path))


def _intended_note(intended: dict[str, str], f: Finding) -> str | None:
    if f.rule in intended:
        return intended[f.rule]
    for fld in f.fields:
        key = f"{f.rule}@{fld}"
        if key in intended:
            return intended[key]
    return None


# -- running the lint ------------------------------------------------------------------------------


def _resolve_host(host) -> HostProfile | None:
    if host is None:
        return None

    if isinstance(host, CpuidTable):
        return HostProfile.from_table(host)
    return resolve_host(host)


def lint_table(table: CpuidTable, host=None, intended=None) -> list[Finding]:
    """Every finding for ``table``, worst class first (rules in data order within a class).

    ``host`` (a HostProfile, a built-in host name, a dump path, ``"live"`` or a
    CpuidTable) enables the rules that compare the guest with its host;
    ``intended`` marks findings as insane on purpose (see :func:`parse_intended`).
    """
    if not isinstance(table, CpuidTable):
        raise InputError(f"lint_table needs a CpuidTable, got {type(table).__name__}")
    marks = parse_intended(intended)
    view = _View(table, _resolve_host(host))
    impl = implementations()
    order = {rid: n for n, rid in enumerate(rules())}
    out: list[Finding] = []
    for rid, rule in rules().items():
        if rid in _HOST_RULES and view.host is None:
            continue
        for hit in impl[rid](view):
            f = Finding(
                rid,
                rule.severity,
                hit.fields,
                rule.explanation,
                rule.reference,
                hit.detail,
                rule.kvm_checks,
                rule.if_ignored,
            )
            note = _intended_note(marks, f)
            if note is not None:
                f = replace(f, intended=True, note=note)
            out.append(f)
    out.sort(key=lambda f: (_RANK[f.severity], order[f.rule]))
    return out


def rules_markdown() -> str:
    """The rules as a Markdown table (docs/lint.md carries this text; a test keeps the two equal)."""
    deps: dict[str, list[str]] = {}
    for d in dependencies():
        deps.setdefault(d.rule, []).append(f"{d.feature} → {d.requires}")

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| id | class | KVM checks | what it says | reference | if ignored |", "|---|---|---|---|---|---|"]
    for r in rules().values():
        what = r.explanation
        if r.id in deps:
            what += " Edges: " + ", ".join(deps[r.id]) + "."
        lines.append(
            f"| `{r.id}` | {r.severity} | {'yes' if r.kvm_checks else 'no'} | {cell(what)} | "
            f"{cell(r.reference)} | {cell(r.if_ignored)} |"
        )
    return "\n".join(lines)


def summarize(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts by class, and how many findings are marked intended."""
    counts = {c: 0 for c in CLASSES}
    counts["intended"] = 0
    for f in findings:
        counts[f.severity] += 1
        counts["intended"] += f.intended
    return counts


MATRIX_VERDICTS = ("accepted", "rejected")
MATRIX_CLASSES = ("clean", "info", "insane", "insane on purpose", "illegal")


def lint_class(findings: Iterable[Finding]) -> str:
    """The matrix column of a table: its worst finding that is not intended.

    ``illegal`` or ``insane`` when such a finding is not marked intended;
    ``insane on purpose`` when every insane or illegal finding is intended;
    ``info`` or ``clean`` otherwise.
    """
    fs = list(findings)
    for c in ("illegal", "insane"):
        if any(f.severity == c and not f.intended for f in fs):
            return c
    if any(f.severity in ("illegal", "insane") for f in fs):
        return "insane on purpose"
    return "info" if fs else "clean"


# -- the matrix: KVM's verdict x lint class -------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A table to place in the matrix, with what the user intends and the vCPU state to check it with."""

    name: str
    table: CpuidTable
    intended: object = None
    state: dict | None = None
    description: str = ""


@dataclass
class MatrixRow:
    name: str
    verdict: str
    errno: str | None
    kvm_rule: str | None
    lint_class: str
    findings: list[Finding]
    description: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "errno": self.errno,
            "kvm_rule": self.kvm_rule,
            "lint_class": self.lint_class,
            "description": self.description,
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass
class Matrix:
    """KVM's verdict (rows) against the lint class (columns), with the cases in each cell."""

    rows: list[MatrixRow]
    kernel: str
    vendor: str
    host: str

    def cell(self, verdict: str, klass: str) -> list[MatrixRow]:
        return [r for r in self.rows if r.verdict == verdict and r.lint_class == klass]

    @property
    def cells(self) -> dict[tuple[str, str], list[str]]:
        return {(v, c): [r.name for r in self.cell(v, c)] for v in MATRIX_VERDICTS for c in MATRIX_CLASSES}

    def empty_cells(self) -> list[tuple[str, str]]:
        return [k for k, names in self.cells.items() if not names]

    def as_markdown(self) -> str:
        head = "| KVM \\ lint | " + " | ".join(MATRIX_CLASSES) + " |"
        lines = [head, "|" + "---|" * (len(MATRIX_CLASSES) + 1)]
        for v in MATRIX_VERDICTS:
            cells = [", ".join(self.cells[(v, c)]) or "-" for c in MATRIX_CLASSES]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "kernel": self.kernel,
            "vendor": self.vendor,
            "host": self.host,
            "cells": {f"{v}/{c}": names for (v, c), names in self.cells.items()},
            "rows": [r.as_dict() for r in self.rows],
        }


def _cases(cases) -> list[Case]:
    if isinstance(cases, Mapping):
        cases = list(cases.items())
    out = []
    for c in cases:
        if isinstance(c, Case):
            out.append(c)
        elif isinstance(c, tuple) and 2 <= len(c) <= 3 and isinstance(c[1], CpuidTable):
            out.append(Case(c[0], c[1], c[2] if len(c) == 3 else None))
        else:
            raise InputError(f"a matrix case must be a Case or (name, table[, intended]), got {c!r:.80}")
    return out


def matrix(cases, kernel: str = DEFAULT_KERNEL, vendor: str = "vmx", host=None) -> Matrix:
    """Check each case with KVM's model and with the lint, and place it in the matrix.

    ``cases``: Case objects, ``(name, table[, intended])`` tuples, or a
    ``{name: table}`` mapping.  The same host serves the KVM model and the
    lint's host rules (None: the model's default host).
    """

    h = host if isinstance(host, HostProfile) else resolve_host(host)
    rows = []
    for c in _cases(cases):
        out = check(c.table, kernel=kernel, vendor=vendor, host=h, state=c.state)
        fs = lint_table(c.table, host=h, intended=c.intended)
        rows.append(
            MatrixRow(
                c.name, out.verdict, out.errno, out.error.rule if out.error else None, lint_class(fs), fs, c.description
            )
        )
    return Matrix(rows, kernel, vendor, h.name)


def guest_ready(table: CpuidTable) -> CpuidTable:
    """``table`` with what a bare-metal dump carries and a guest template should not.

    The significant-index flag is set on every entry of an indexed leaf, and the
    fields KVM computes at run time get the values KVM stores after
    KVM_SET_CPUID2 on a reset vCPU (OSXSAVE 0, OSPKE 0, APIC 1, XSAVE sizes 576).
    """
    ents = [
        e.replace(flags=e.flags | FLAG_SIGNIFICANT_INDEX) if e.function in ARCH_INDEXED_FUNCTIONS else e for e in table
    ]
    t = CpuidTable(ents, source=table.source)
    for name, value in (("osxsave", 0), ("ospke", 0), ("apic", 1)):
        if t.get_field(name) is not None:
            t = t.set_field(name, value)
    if t.get(0xD, 0) is not None:
        t = t.set_field("xsave_size_enabled", _LEGACY_AND_HEADER)
    d1 = t.get(0xD, 1)
    if d1 is not None and d1.eax & 0b1010:
        t = t.set_field("xsaves_size_enabled", _LEGACY_AND_HEADER)
    return t


_AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "amx_complex")


def example_cases(host=None) -> list[Case]:
    """One table for every cell of the matrix, built from a host's own CPUID.

    Rejections come from AMX without permission (EPERM) when the host has AMX,
    otherwise from more than 256 entries (E2BIG); "illegal and rejected" is a
    linear width of 50 (EINVAL).
    """

    h = host if isinstance(host, HostProfile) else resolve_host(host)
    full = guest_ready(h.cpuid)
    plain = full  # accepted by KVM without any permission
    for name in _AMX_FLAGS:
        if plain.get_field(name):
            plain = plain.set_field(name, 0)
    if plain.get(0xD, 0) is not None:
        plain = plain.set_field("0xd.0.eax[17]", 0).set_field("0xd.0.eax[18]", 0)
    if h.supports_amx and full.get_field("0xd.0.eax[18]"):
        rejected, why = full, "AMX tile data without ARCH_REQ_XCOMP_GUEST_PERM: EPERM"
    else:
        pad = [CpuidEntry(0x40000100 + n) for n in range(257 - len(plain))]
        rejected, why = plain.appended(*pad), "more than 256 entries: E2BIG"

    def no_avx512_state(t: CpuidTable) -> CpuidTable:
        if not t.get_field("avx512f"):
            t = t.set_field("avx512f", 1)
        return t.set_fields({"0xd.0.eax[5]": 0, "0xd.0.eax[6]": 0, "0xd.0.eax[7]": 0})

    def zen2_pkru(t: CpuidTable) -> CpuidTable:
        return t.set_fields({"pku": 0, "0xd.0.eax[9]": 1})

    on_purpose = {"pkru_without_pku": "mimics an AMD Zen 2 host (PKRU state listed, PKU not) on purpose"}
    return [
        Case("clean", plain, description="the host's CPUID as a guest template (runtime fields at reset values)"),
        Case(
            "runtime-values",
            plain.set_field("osxsave", 1),
            description="OSXSAVE=1 as in a bare-metal dump: KVM overwrites it",
        ),
        Case(
            "avx512-without-state",
            no_avx512_state(plain),
            description="AVX-512F set, its three XCR0 components not listed",
        ),
        Case(
            "zen2-pkru-intended",
            zen2_pkru(plain),
            intended=on_purpose,
            description="PKRU state without PKU, marked intended",
        ),
        Case(
            "supervisor-in-xcr0",
            plain.set_field("0xd.0.eax[11]", 1),
            description="CET_U (a supervisor component) listed in 0xD.0: KVM masks it and accepts",
        ),
        Case("rejected-clean", rejected, description=why),
        Case("rejected-runtime-values", rejected.set_field("osxsave", 1), description=why + "; OSXSAVE=1"),
        Case("rejected-avx512-without-state", no_avx512_state(rejected), description=why + "; AVX-512F without state"),
        Case(
            "rejected-zen2-pkru-intended",
            zen2_pkru(rejected),
            intended=on_purpose,
            description=why + "; PKRU without PKU, marked intended",
        ),
        Case(
            "linear-width-50",
            plain.set_field("virt_addr_bits", 50),
            description="0x80000008.EAX[15:8] = 50: illegal, and KVM says EINVAL",
        ),
    ]
