"""Firecracker CPU fingerprints (``guest_cpu_config.cpuid_modifiers``) and custom CPU templates.

Each modifier gives a leaf, a subleaf, flags and per-register 32-character
bitmaps (``"0b0101…"``).  A fingerprint records what the guest saw, so every bit
is 0 or 1.  A template may use ``x`` ("leave as is"); such a template is not a
table by itself, and the import says so.
"""

from __future__ import annotations

from cpuidkit.core.bits import REGISTERS, U32, U64
from cpuidkit.core.sources._common import load_json, number, shorten
from cpuidkit.core.table import CpuidEntry
from cpuidkit.core.templates import CpuTemplate, Modifier, MsrModifier
from cpuidkit.errors import InputError


def _bitmap_bits(text: object, where: str, source: str | None, width: int = 32) -> tuple[int, int]:
    """``(mask, value)`` of a ``"0b…"`` bitmap of ``width`` bits: ``0``/``1`` are forced (in ``mask``), ``x``
    leaves the bit as it is; ``_`` separates (Firecracker's template schema)."""
    if not isinstance(text, str) or not text.startswith("0b"):
        raise InputError(
            f'bitmap must be a string "0b" + {width} bits, got {shorten(text)}', source=source, where=where
        )
    bits = text[2:].replace("_", "").lower()
    if len(bits) != width:
        raise InputError(f"bitmap must have {width} bits, got {len(bits)}", source=source, where=where)
    if set(bits) - {"0", "1", "x"}:
        raise InputError(f"bitmap may only hold 0, 1 and x, got {shorten(bits, 40)}", source=source, where=where)
    mask = int(bits.replace("0", "1").replace("x", "0"), 2)
    value = int(bits.replace("x", "0"), 2)
    return mask, value


def _not_a_table(where: str, source: str | None) -> InputError:
    return InputError(
        "bitmap has 'x' (don't-care) bits: this is a CPU template to apply to a host, not a CPUID table "
        "(`cpuidkit review TEMPLATE --host H` applies it)",
        source=source,
        where=where,
    )


def _modifiers(text: str, source: str | None):
    """The document's config object and, per ``cpuid_modifiers`` item, (leaf, subleaf, flags, {register:
    (mask, value)}), every failure an InputError naming the item."""
    doc = load_json(text, source)
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object (Firecracker fingerprint or template)", source=source)
    cfg = doc.get("guest_cpu_config", doc)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cpuid_modifiers"), list):
        where = "guest_cpu_config" if "guest_cpu_config" in doc else "top level"
        if isinstance(cfg, dict) and ("vcpu_features" in cfg or "reg_modifiers" in cfg):
            raise InputError(
                "this is an aarch64 template (vcpu_features/reg_modifiers): cpuidkit reviews x86 CPUID only",
                source=source,
                where=where,
            )
        raise InputError('expected "cpuid_modifiers" to be a list', source=source, where=where)
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
        regs: dict[str, tuple[int, int, str]] = {}
        for j, rm in enumerate(mod["modifiers"]):
            w = f"{where} modifiers[{j}]"
            if not isinstance(rm, dict) or "register" not in rm or "bitmap" not in rm:
                raise InputError('expected {"register": …, "bitmap": "0b…"}', source=source, where=w)
            reg = rm["register"]
            if reg not in REGISTERS:
                raise InputError(
                    f"register must be one of {', '.join(REGISTERS)}, got {shorten(reg)}", source=source, where=w
                )
            if reg in regs:
                raise InputError(f"register {reg} given twice", source=source, where=w)
            regs[reg] = (*_bitmap_bits(rm["bitmap"], w, source), w)
        out.append((leaf, sub, flags, regs, where))
    return cfg, out


def parse(text: str, source: str | None) -> list[CpuidEntry]:
    """A fingerprint (or a template whose bitmaps are all 0/1) as a table; an ``x`` bit is an InputError."""
    _cfg, mods = _modifiers(text, source)
    out = []
    for leaf, sub, flags, regs, _where in mods:
        values = dict.fromkeys(REGISTERS, 0)
        for reg, (mask, value, w) in regs.items():
            if mask != U32:
                raise _not_a_table(w, source)
            values[reg] = value
        out.append(CpuidEntry(leaf, sub, flags, **values))
    return out


def is_template(text: str) -> bool:
    """True for a Firecracker custom CPU template (``cpuid_modifiers`` at the top level), False for a
    fingerprint (``guest_cpu_config``) or anything else."""
    head = text.lstrip("\ufeff \t\r\n")
    return head.startswith("{") and '"cpuid_modifiers"' in text and '"guest_cpu_config"' not in text


def parse_template(text: str, source: str | None, name: str | None = None) -> CpuTemplate:
    """A Firecracker custom CPU template (x86_64): its ``cpuid_modifiers`` (0 forced clear, 1 forced set, x left
    to the host), ``msr_modifiers`` (64-bit bitmaps) and ``kvm_capabilities`` (listed in the notes)."""
    cfg, mods = _modifiers(text, source)
    modifiers = [
        Modifier(leaf, sub, reg, mask, value, flags)
        for leaf, sub, flags, regs, _where in mods
        # a leaf with no register modifier is still looked up (Firecracker refuses a missing one) and takes the flags
        for reg, (mask, value, _w) in (regs.items() or [("eax", (0, 0, ""))])
    ]
    msrs = []
    raw_msrs = cfg.get("msr_modifiers", [])
    if not isinstance(raw_msrs, list):
        raise InputError('"msr_modifiers" must be a list', source=source, where="msr_modifiers")
    for i, m in enumerate(raw_msrs):
        where = f"msr_modifiers[{i}]"
        if not isinstance(m, dict) or "addr" not in m or "bitmap" not in m:
            raise InputError('expected {"addr": "0x…", "bitmap": "0b…"}', source=source, where=where)
        addr = number(m["addr"], field="addr", where=where, source=source)
        mask, value = _bitmap_bits(m["bitmap"], where, source, width=64)
        msrs.append(MsrModifier(addr, mask & U64, value))
    notes = []
    caps = cfg.get("kvm_capabilities")
    if isinstance(caps, list) and caps:
        notes.append("kvm_capabilities " + ", ".join(shorten(c, 12) for c in caps[:20]) + " (checked by Firecracker)")
    label = name or (source or "template")
    return CpuTemplate(
        name=label,
        kind="firecracker",
        modifiers=tuple(modifiers),
        msr_modifiers=tuple(msrs),
        source=source,
        notes=tuple(notes),
    )
