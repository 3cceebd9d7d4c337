"""Explain what changed between guest CPUID tables recorded on different host kernels.

Firecracker copies KVM_GET_SUPPORTED_CPUID into its guests, so its fingerprints
of one CPU under host kernels 5.10, 6.1 and 6.18 show what KVM learned to
virtualize in between.  ``data/kvm-feature-history.csv`` ties fields to the
behaviours of ``data/kvm-behaviours.csv`` whose version ranges predict them;
:func:`fingerprint_changes` lists every change and says which the kernel
profiles predict, and whether the prediction holds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cpuidkit._files import read_csv
from cpuidkit.core.bits import extract_bits
from cpuidkit.core.catalog import catalog
from cpuidkit.core.kernels import kernel_profile
from cpuidkit.core.table import CpuidTable, diff

__all__ = ["Change", "fingerprint_changes", "predicted_present"]


@functools.cache
def _history() -> dict[str, dict[str, str]]:
    return {r["field"]: r for r in read_csv("kvm-feature-history.csv")}


def predicted_present(field: str, kernel: str) -> bool | None:
    """Whether the kernel profile says KVM reports ``field`` (None: no prediction for it)."""
    row = _history().get(field)
    if row is None or not row["behaviour"]:
        return None
    k = kernel_profile(kernel)
    rule = row["value_rule"]
    value = k.value(row["behaviour"])
    if rule == "flag":
        return k.flag(row["behaviour"])
    if rule.startswith("mask:"):
        return bool(int(value, 0) >> int(rule[5:]) & 1)
    if rule == "rows":
        return value.strip().lower() not in ("0", "false", "", "none")
    raise ValueError(f"unknown value_rule {rule!r} for {field}")


@dataclass(frozen=True)
class Change:
    old_kernel: str
    new_kernel: str
    leaf: int
    subleaf: int
    field: str  # catalog name, or "LEAF.SUB" for a whole entry
    old: int | None
    new: int | None
    predicted: bool | None  # None: no profile predicts it; True/False: the prediction holds / is contradicted
    note: str

    def __str__(self) -> str:
        o = "-" if self.old is None else f"{self.old:#x}"
        n = "-" if self.new is None else f"{self.new:#x}"
        p = {None: "not predicted", True: "predicted", False: "CONTRADICTS the profile"}[self.predicted]
        return f"{self.old_kernel}->{self.new_kernel} {self.field}: {o} -> {n} ({p}{': ' + self.note if self.note else ''})"


def _judge(name: str, old_k: str, new_k: str, old: int | None, new: int | None) -> tuple[bool | None, str]:
    row = _history().get(name)
    p_old, p_new = predicted_present(name, old_k), predicted_present(name, new_k)
    if p_old is None:
        return None, ""
    assert row is not None  # predicted_present() returns None for a field without a row
    appeared = not old and bool(new)
    vanished = bool(old) and not new
    if appeared:
        return (not p_old and p_new), row["note"]
    if vanished:
        return (p_old and not p_new), row["note"]
    return (p_old == p_new), row["note"]  # changed value while present in both: fine only if the rule did not flip


def fingerprint_changes(tables: dict[str, CpuidTable]) -> list[Change]:
    """Every field-level change between consecutive kernels (``{"5.10": t, "6.1": t, "6.18": t}``)."""
    kernels = sorted(tables, key=lambda v: tuple(int(x) for x in v.split(".")))
    cat = catalog()
    out: list[Change] = []
    for a, b in zip(kernels, kernels[1:]):
        ta, tb = tables[a], tables[b]
        for c in diff(ta, tb):
            if c.register is None or c.register == "flags":
                key = f"{c.function:#x}.{c.index}"
                if c.register is None:
                    old = None if c.kind == "added" else 1
                    new = 1 if c.kind == "added" else None
                    pred, note = _judge(key, a, b, old, new)
                    out.append(Change(a, b, c.function, c.index, key, old, new, pred, note))
                continue
            assert c.old is not None and c.new is not None  # diff() gives both values for a changed register
            changed = c.old ^ c.new
            named = [f for f in cat.in_register(c.function, c.index, c.register) if f.mask & changed]
            for f in named:
                old, new = extract_bits(c.old, f.hi, f.lo), extract_bits(c.new, f.hi, f.lo)
                if f.name == "xcr0_supported_lo":
                    # judge the AMX part of the mask (the rest is host-dependent)
                    old, new = old >> 17 & 3, new >> 17 & 3
                    if old == new:
                        continue
                pred, note = _judge(f.name, a, b, old, new)
                out.append(Change(a, b, c.function, c.index, f.name, old, new, pred, note))
            covered = 0
            for f in named:
                covered |= f.mask
            if changed & ~covered:
                out.append(
                    Change(
                        a,
                        b,
                        c.function,
                        c.index,
                        f"{c.function:#x}.{c.index}.{c.register}",
                        c.old & ~covered,
                        c.new & ~covered,
                        None,
                        "bits the catalog does not name",
                    )
                )
    return out
