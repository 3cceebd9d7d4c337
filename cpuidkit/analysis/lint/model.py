"""The lint's data: classes, rules (``data/lint-rules.csv``), dependencies (``data/feature-deps.csv``), findings, and the facts the rules use."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from cpuidkit._files import data_path, read_csv
from cpuidkit.core.indexed import ARCH_ONLY_INDEXED, INDEXED_FUNCTIONS
from cpuidkit.core.xsave import XFEATURE_NAMES
from cpuidkit.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    pass


CLASSES = ("illegal", "insane", "info")
RANK = {c: n for n, c in enumerate(CLASSES)}

# -- facts the rules use (each with its source) ---------------------------------------------------

# Leaves whose subleaves differ: KVM's cpuid_function_is_indexed() list plus those the SDM/APM define with
# subleaves but KVM does not list (both in cpuidkit.core.indexed, which the importers use too).
_ARCH_ONLY_INDEXED = ARCH_ONLY_INDEXED


def kvm_indexed() -> frozenset[int]:
    return INDEXED_FUNCTIONS


ARCH_INDEXED_FUNCTIONS = frozenset(kvm_indexed() | _ARCH_ONLY_INDEXED)

# XSAVE state components (Intel SDM Vol. 1 13.1, table "XSAVE-managed state components";
# AMD APM Vol. 2 for LWP, bit 62).
SUPERVISOR_COMPONENTS = frozenset({8, 10, 11, 12, 13, 14, 15, 16})
USER_COMPONENTS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 9, 17, 18, 19, 62})
XCR0_RESERVED = 1 << 63
APX, MPX = 19, (3, 4)  # APX reuses the MPX area in the standard format (the two never coexist)
LEGACY_AND_HEADER = 576

# Leaves only one vendor defines (Intel SDM Vol. 2A CPUID; AMD APM Vol. 3 App. E).
INTEL_ONLY_LEAVES = (0x12, 0x14, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x20, 0x23, 0x24)
AMD_ONLY_LEAVES = (0x8000000A, *range(0x80000019, 0x80000024), 0x80000026)
INTEL_VENDORS = ("GenuineIntel",)

HYPERVISOR_BASES = range(0x40000000, 0x40010000, 0x100)

# Ranges of leaves, each with its own maximum in its base leaf's EAX.  The basic and extended
# ranges are the architectural ones; 0x20000000 (Xeon Phi), 0x80860000 (Transmeta) and
# 0xC0000000 (Centaur) are probed by dump tools and judged against their own base.
RANGES = (
    (0x0, 0x20000000),
    (0x20000000, 0x40000000),
    (0x80000000, 0x80860000),
    (0x80860000, 0x80870000),
    (0xC0000000, 0xC0010000),
)

# Leaves whose subleaf 0 EAX is the maximum subleaf (Intel SDM Vol. 2A CPUID).
SUBLEAF_MAX_LEAVES = (0x7, 0x14, 0x1D, 0x24)

HOST_RULES = frozenset({"maxphyaddr_above_host", "maxphyaddr_below_host", "xcr0_beyond_host"})


def xfeature_name(bit: int) -> str:
    return {62: "lwp"}.get(bit) or XFEATURE_NAMES.get(bit, f"xfeature{bit}")


def xcr0_field(bit: int) -> str:
    return f"0xd.0.eax[{bit}]" if bit < 32 else f"0xd.0.edx[{bit - 32}]"


def xss_field(bit: int) -> str:
    return f"0xd.1.ecx[{bit}]" if bit < 32 else f"0xd.1.edx[{bit - 32}]"


def leaf_field(function: int, index: int | None = None) -> str:
    return f"{function:#x}.*" if index is None else f"{function:#x}.{index}"


def components_text(bits: Iterable[int]) -> str:
    return ", ".join(f"{b} ({xfeature_name(b)})" for b in bits)


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


class Hit(NamedTuple):
    fields: tuple[str, ...]
    detail: str
