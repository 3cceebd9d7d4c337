"""The matrix: KVM's verdict (accepted / rejected) against the lint's class, with one example per cell."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cpuidkit.analysis.lint.model import ARCH_INDEXED_FUNCTIONS, LEGACY_AND_HEADER, Finding
from cpuidkit.analysis.lint.runner import MATRIX_CLASSES, MATRIX_VERDICTS, lint_class, lint_table
from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import InputError
from cpuidkit.kvm.check import check
from cpuidkit.live import resolve_host

if TYPE_CHECKING:  # pragma: no cover
    from cpuidkit.core.hosts import HostProfile


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


def guest_template(host=None) -> CpuidTable:
    """A host's own CPUID as a guest template that a process without any XSAVE permission can set:
    :func:`guest_ready` with AMX taken out (its leaf-7 flags, and TILECFG/TILEDATA in 0xD.0), as a VMM
    does when it has not called ``arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)``."""
    h = host if isinstance(host, HostProfile) else resolve_host(host)
    plain = guest_ready(h.cpuid)
    for name in _AMX_FLAGS:
        if plain.get_field(name):
            plain = plain.set_field(name, 0)
    if plain.get(0xD, 0) is not None:
        plain = plain.set_field("0xd.0.eax[17]", 0).set_field("0xd.0.eax[18]", 0)
    return plain


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
        t = t.set_field("xsave_size_enabled", LEGACY_AND_HEADER)
    d1 = t.get(0xD, 1)
    if d1 is not None and d1.eax & 0b1010:
        t = t.set_field("xsaves_size_enabled", LEGACY_AND_HEADER)
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
    plain = guest_template(h)  # accepted by KVM without any permission
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
