"""Firecracker CPU fingerprints (``guest_cpu_config.cpuid_modifiers``) and custom CPU templates.

Each modifier gives a leaf, a subleaf, flags and per-register 32-character
bitmaps (``"0b0101…"``).  A fingerprint records what the guest saw, so every bit
is 0 or 1.  A template may use ``x`` ("leave as is"); such a template is not a
table by itself, and the import says so.
"""

from __future__ import annotations

from cpuidkit.core.bits import REGISTERS
from cpuidkit.core.sources._common import load_json, number, shorten
from cpuidkit.core.table import CpuidEntry
from cpuidkit.errors import InputError


def _bitmap(text: object, where: str, source: str | None) -> int:
    if not isinstance(text, str) or not text.startswith("0b"):
        raise InputError(f'bitmap must be a string "0b" + 32 bits, got {shorten(text)}', source=source, where=where)
    bits = text[2:]
    if len(bits) != 32:
        raise InputError(f"bitmap must have 32 bits, got {len(bits)}", source=source, where=where)
    if set(bits) - {"0", "1"}:
        if "x" in bits.lower():
            raise InputError(
                "bitmap has 'x' (don't-care) bits: this is a CPU template to apply to a host, not a CPUID table",
                source=source,
                where=where,
            )
        raise InputError(f"bitmap may only hold 0 and 1, got {shorten(bits, 40)}", source=source, where=where)
    return int(bits, 2)


def parse(text: str, source: str | None) -> list[CpuidEntry]:
    doc = load_json(text, source)
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object (Firecracker fingerprint or template)", source=source)
    cfg = doc.get("guest_cpu_config", doc)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cpuid_modifiers"), list):
        raise InputError('expected "cpuid_modifiers" to be a list', source=source, where="guest_cpu_config")
    out = []
    for i, mod in enumerate(cfg["cpuid_modifiers"]):
        where = f"cpuid_modifiers[{i}]"
        if not isinstance(mod, dict):
            raise InputError("expected an object with leaf, subleaf, flags, modifiers", source=source, where=where)
        for key in ("leaf", "subleaf", "modifiers"):
            if key not in mod:
                raise InputError(f'missing "{key}"', source=source, where=where)
        leaf = number(mod["leaf"], field="leaf", where=where, source=source)
        sub = number(mod["subleaf"], field="subleaf", where=where, source=source)
        flags = number(mod.get("flags", 0), field="flags", where=where, source=source)
        where = f"cpuid_modifiers[{i}] (leaf {leaf:#x}.{sub})"
        if not isinstance(mod["modifiers"], list):
            raise InputError('"modifiers" must be a list', source=source, where=where)
        regs = dict.fromkeys(REGISTERS, 0)
        seen = set()
        for j, rm in enumerate(mod["modifiers"]):
            w = f"{where} modifiers[{j}]"
            if not isinstance(rm, dict) or "register" not in rm or "bitmap" not in rm:
                raise InputError('expected {"register": …, "bitmap": "0b…"}', source=source, where=w)
            reg = rm["register"]
            if reg not in REGISTERS:
                raise InputError(
                    f"register must be one of {', '.join(REGISTERS)}, got {shorten(reg)}", source=source, where=w
                )
            if reg in seen:
                raise InputError(f"register {reg} given twice", source=source, where=w)
            seen.add(reg)
            regs[reg] = _bitmap(rm["bitmap"], w, source)
        out.append(CpuidEntry(leaf, sub, flags, **regs))
    return out
