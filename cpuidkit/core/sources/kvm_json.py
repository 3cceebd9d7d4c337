"""KVM JSON: a list of ``kvm_cpuid_entry2`` objects, or ``{"entries": [...]}``.

Numbers may be JSON integers or strings (``"0x1f"`` or ``"31"``).  ``index``
and ``flags`` default to 0 (raw host dumps carry no flags); the function and
the four registers are required.
"""

from __future__ import annotations

import json

from cpuidkit.core.bits import REGISTERS
from cpuidkit.core.sources._common import load_json, number, shorten
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import InputError

_KNOWN = {"function", "index", "flags", *REGISTERS, "padding"}


def parse(text: str, source: str | None) -> list[CpuidEntry]:
    return parse_doc(load_json(text, source), source)


def parse_doc(doc: object, source: str | None) -> list[CpuidEntry]:
    """Entries from already-decoded KVM JSON (a list, or an object with "entries")."""
    if isinstance(doc, dict):
        if "entries" not in doc:
            raise InputError('expected a list of entries or an object with "entries"', source=source)
        doc = doc["entries"]
    if not isinstance(doc, list):
        raise InputError(f"expected a list of entries, got {type(doc).__name__}", source=source)
    out = []
    for i, item in enumerate(doc):
        where = f"entry {i}"
        if not isinstance(item, dict):
            raise InputError(
                f"expected an object with function/index/flags/eax/ebx/ecx/edx, got {type(item).__name__}",
                source=source,
                where=where,
            )
        if "function" not in item:
            raise InputError('missing "function"', source=source, where=where)
        fn = number(item["function"], field="function", where=where, source=source)
        where = f"entry {i} (function {fn:#x})"
        unknown = sorted(set(item) - _KNOWN)
        if unknown:
            raise InputError(
                f"unknown key(s) {', '.join(shorten(k, 30) for k in unknown[:5])}", source=source, where=where
            )
        missing = [r for r in REGISTERS if r not in item]
        if missing:
            raise InputError(f"missing register(s) {', '.join(missing)}", source=source, where=where)
        vals = {
            k: number(item[k], field=k, where=where, source=source) for k in ("index", "flags", *REGISTERS) if k in item
        }
        out.append(CpuidEntry(fn, **vals))
    return out


def dump(table: CpuidTable) -> str:
    """KVM JSON in the style of the shared live dumps: hex strings for function and registers."""
    items = [
        {
            "function": f"{e.function:#x}",
            "index": e.index,
            "flags": e.flags,
            **{r: f"{e.reg(r):#010x}" for r in REGISTERS},
        }
        for e in table
    ]
    return json.dumps(items, indent=1) + "\n"
