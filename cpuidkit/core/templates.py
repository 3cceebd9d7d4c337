"""CPU templates: what a VMM forces on top of KVM's supported CPUID, applied the way the VMM applies it.

A :class:`CpuTemplate` is a list of register modifiers: for a (leaf, subleaf, register), a ``mask`` of the
bits the template forces and the ``value`` they are forced to; every other bit is left to the base (the
host's KVM_GET_SUPPORTED_CPUID, or a table given with ``--base``).  Two kinds exist:

* ``firecracker``: a Firecracker custom CPU template (``cpuid_modifiers`` with ``0``/``1``/``x`` bitmaps,
  ``msr_modifiers``), read by :func:`cpuidkit.core.sources.firecracker.parse_template`;
* ``qemu``: a QEMU CPU model, from QEMU's own ``query-cpu-model-expansion`` answer
  (:func:`qemu_template`; the feature names map to CPUID bits through ``data/qemu-cpu-features.csv``).

:func:`apply_template` follows the VMM:

* Firecracker (``apply_template_to_cpuid()`` in ``src/vmm/src/cpu_config/x86_64/mod.rs``): a modifier whose
  (leaf, subleaf) is not in the base is an error (Firecracker refuses to start: "Template changes a CPUID
  entry not supported by KVM"); a matching entry takes the modifier's flags and the forced bits.  Then the
  CPUID normalisation runs on every vCPU (``Cpuid::normalize()``, ``cpu_config/x86_64/cpuid/normalize.rs`` and
  its intel/amd modules): the steps are rows of ``data/firecracker-normalisation.csv``, each saying whether
  cpuidkit models it.
* QEMU: the model's feature words are forced whole (a named feature on or off, an unnamed bit 0), with the
  family, model, stepping, vendor, ``level`` and ``xlevel`` and the brand string (``model-id``); QEMU computes
  the other leaves (caches, topology, XSAVE sizes) itself, which cpuidkit does not model: they are shown as the
  base's values, and the result says so.

Nothing here decides what KVM does with the result: the review runs the model on the applied table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

from cpuidkit._files import data_path, read_csv
from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX, REGISTERS, U32
from cpuidkit.core.catalog import catalog, qemu_feature_rows
from cpuidkit.core.indexed import function_is_indexed
from cpuidkit.core.table import AMD_VENDORS, CpuidEntry, CpuidTable
from cpuidkit.errors import InputError

__all__ = [
    "TEMPLATE_KINDS",
    "Modifier",
    "MsrModifier",
    "CpuTemplate",
    "NormalisationStep",
    "AppliedTemplate",
    "normalisation_steps",
    "qemu_template",
    "apply_template",
    "MAX_VCPUS_FIRECRACKER",
    "firecracker_brand",
]

TEMPLATE_KINDS = ("firecracker", "qemu")
MAX_VCPUS_FIRECRACKER = 32  # MAX_SUPPORTED_VCPUS, src/vmm/src/vmm_config/machine_config.rs

Key = tuple[int, int, str]  # (leaf, subleaf, register)


@dataclass(frozen=True)
class Modifier:
    """One register of one leaf: the bits in ``mask`` are forced to ``value``'s; ``flags`` as the template
    gives them (Firecracker copies them onto the entry), or None to keep the base entry's."""

    leaf: int
    subleaf: int
    register: str
    mask: int
    value: int
    flags: int | None = None

    @property
    def key(self) -> Key:
        return (self.leaf, self.subleaf, self.register)


@dataclass(frozen=True)
class MsrModifier:
    address: int
    mask: int
    value: int


@dataclass(frozen=True)
class CpuTemplate:
    """A VMM's CPU template: register modifiers, MSR modifiers, and what it is."""

    name: str
    kind: str
    modifiers: tuple[Modifier, ...]
    msr_modifiers: tuple[MsrModifier, ...] = ()
    source: str | None = None
    notes: tuple[str, ...] = ()
    info: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TEMPLATE_KINDS:
            raise InputError(f"template kind must be one of {', '.join(TEMPLATE_KINDS)}, got {self.kind!r}")

    def forced(self) -> dict[Key, tuple[int, int]]:
        """(leaf, subleaf, register) -> (mask, value) over every modifier (a later one wins bit by bit)."""
        out: dict[Key, tuple[int, int]] = {}
        for m in self.modifiers:
            old_mask, old_value = out.get(m.key, (0, 0))
            out[m.key] = (old_mask | m.mask, (old_value & ~m.mask) | (m.value & m.mask))
        return out

    def forced_ones(self) -> dict[Key, int]:
        """The bits forced to 1, by register."""
        return {k: mask & value for k, (mask, value) in self.forced().items() if mask & value}

    def __repr__(self) -> str:
        return f"<CpuTemplate {self.kind}:{self.name} ({len(self.modifiers)} register modifiers)>"


# -- Firecracker's CPUID normalisation, as data ----------------------------------------------------------


@dataclass(frozen=True)
class NormalisationStep:
    """A row of ``data/firecracker-normalisation.csv``."""

    vendor: str  # any, intel, amd
    leaf: int
    subleaf: int
    register: str  # eax..edx, or "" for a step on a whole entry
    hi: int
    lo: int
    value: str  # a number, or host, index, vcpus, vcpus-1, vcpus>1, pow2(vcpus), cpu_bits, cpus_per_core,
    # insert (add the entry if missing), copy:0xLEAF (copy that leaf's subleaves, if this leaf exists)
    required: bool  # Firecracker fails (refuses to start) when the entry is missing
    modelled: bool
    step: str
    source: str

    @property
    def mask(self) -> int:
        return ((1 << (self.hi - self.lo + 1)) - 1) << self.lo


_EXPRESSIONS = (
    "host",
    "index",
    "vcpus",
    "vcpus-1",
    "vcpus>1",
    "pow2(vcpus)",
    "cpu_bits",
    "cpus_per_core",
    "insert",
    "brand",
    "cache-sharing",
    "cpus_per_core-1",
    "host-leaf",
)
BRAND_LEAVES = (0x80000002, 0x80000003, 0x80000004)
_AMD_BRAND = b"AMD EPYC"  # amd/normalize.rs DEFAULT_BRAND_STRING
_INTEL_BRAND = b"Intel(R) Xeon(R) Processor"  # intel/normalize.rs DEFAULT_BRAND_STRING (and _BASE + " @")


def firecracker_brand(vendor: str, host: CpuidTable | None) -> bytes:
    """The 48-byte brand string Firecracker's normalisation writes: AMD ``AMD EPYC``; Intel ``Intel(R) Xeon(R)
    Processor @`` and the host brand's frequency (the digits before ``GHz``/``MHz``/``THz`` back to a space, and
    the rest of the host's string from the unit on), else ``Intel(R) Xeon(R) Processor``."""
    if vendor == "amd":
        return _AMD_BRAND.ljust(48, b"\0")
    raw = b""
    for leaf in BRAND_LEAVES:
        e = _exact(host, leaf, 0) if host is not None else None
        raw += b"".join(((e.reg(r) if e is not None else 0).to_bytes(4, "little")) for r in REGISTERS)
    unit = next((i for i in range(len(raw) - 2) if raw[i : i + 3] in (b"THz", b"GHz", b"MHz")), None)
    if unit is not None:
        before, after = raw[:unit], raw[unit:]
        i = len(before)
        while i > 0 and (before[i - 1 : i].isdigit() or before[i - 1 : i] == b"."):
            i -= 1
        if i > 0 and before[i - 1 : i] == b" ":
            out = _INTEL_BRAND + b" @" + before[i - 1 :] + after
            if len(out.rstrip(b"\0")) <= 48:
                return out[:48].ljust(48, b"\0")
    return _INTEL_BRAND.ljust(48, b"\0")


@cache
def normalisation_steps() -> tuple[NormalisationStep, ...]:
    """Every row of ``data/firecracker-normalisation.csv``, checked."""
    src = str(data_path("firecracker-normalisation.csv"))
    out = []
    for n, r in enumerate(read_csv("firecracker-normalisation.csv"), start=1):
        where = f"data row {n}"
        try:
            vendor = r["vendor"]
            if vendor not in ("any", "intel", "amd"):
                raise ValueError(f"vendor must be any, intel or amd, got {vendor!r}")
            leaf, sub = int(r["leaf"], 16), int(r["subleaf"])
            reg = r["register"]
            if reg not in REGISTERS and reg != "":
                raise ValueError(f"register must be eax..edx or empty, got {reg!r}")
            hi, _, lo = r["bits"].partition(":")
            hi_i = int(hi) if hi else 31
            lo_i = int(lo) if lo else hi_i if hi else 0
            if not 0 <= lo_i <= hi_i <= 31:
                raise ValueError(f"bits {r['bits']!r} out of range")
            value = r["value"]
            if not (value.isdigit() or value in _EXPRESSIONS or value.startswith("copy:0x")):
                raise ValueError(f"value {value!r} is not a number or one of {', '.join(_EXPRESSIONS)}, copy:0xLEAF")
            out.append(
                NormalisationStep(
                    vendor,
                    leaf,
                    sub,
                    reg,
                    hi_i,
                    lo_i,
                    value,
                    r["required"] == "yes",
                    r["modelled"] == "yes",
                    r["step"],
                    r["source"],
                )
            )
        except (KeyError, ValueError) as e:
            raise InputError(str(e), source=src, where=where) from None
    return tuple(out)


# -- QEMU CPU models ------------------------------------------------------------------------------------


def _qemu_words() -> dict[Key, dict[int, str]]:
    words: dict[Key, dict[int, str]] = {}
    for name, (leaf, sub, reg, bit) in qemu_feature_rows():  # every row: kvmclock names two bits
        words.setdefault((leaf, sub, reg), {})[bit] = name
    return words


def _canonical(name: str) -> str:
    return name.replace("_", "-").lower()


def _vendor_regs(vendor: str) -> tuple[int, int, int]:
    raw = vendor.encode("latin-1", "replace")[:12].ljust(12, b"\0")
    ebx, edx, ecx = (int.from_bytes(raw[i : i + 4], "little") for i in (0, 4, 8))
    return ebx, ecx, edx


def qemu_template(model: str, expansion: Mapping[str, object], *, qemu_version: str = "") -> CpuTemplate:
    """The template a QEMU CPU model is: ``expansion`` is the ``props`` of QEMU's
    ``query-cpu-model-expansion`` (type ``full``) answer for ``model``.

    Every feature word QEMU knows (``data/qemu-cpu-features.csv``) is forced whole: a named feature to the
    expansion's value, an unnamed bit to 0.  ``family``/``model``/``stepping`` force leaf 1 EAX, ``vendor`` leaf
    0, ``level``/``xlevel`` the largest leaves, ``model-id`` the brand string."""
    if not isinstance(expansion, Mapping):
        raise InputError("expected the props of a query-cpu-model-expansion answer (an object)", where=model)
    props = {_canonical(str(k)): v for k, v in expansion.items()}
    info_levels: dict[str, object] = {k: props[k] for k in ("level", "min-level", "xlevel", "min-xlevel") if k in props}
    mods: list[Modifier] = []
    for (leaf, sub, reg), names in sorted(_qemu_words().items()):
        if not _qemu_levels([CpuidEntry(leaf, sub, 0)], info_levels):
            continue  # a word of a leaf beyond the model's level/xlevel: QEMU does not answer it
        value = 0
        for bit, name in names.items():
            if props.get(_canonical(name)) is True:
                value |= 1 << bit
        mods.append(Modifier(leaf, sub, reg, U32, value))

    def num(key: str) -> int | None:
        v = props.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= U32 else None

    fam, mod, step = num("family"), num("model"), num("stepping")
    if fam is not None and mod is not None and step is not None:
        base_fam, ext_fam = (fam, 0) if fam < 0xF else (0xF, fam - 0xF)
        eax = (step & 0xF) | ((mod & 0xF) << 4) | (base_fam << 8) | (((mod >> 4) & 0xF) << 16) | (ext_fam << 20)
        mods.append(Modifier(1, 0, "eax", 0x0FFF0FFF, eax))
    vendor = props.get("vendor")
    if isinstance(vendor, str) and vendor:
        for reg, v in zip(("ebx", "ecx", "edx"), _vendor_regs(vendor)):
            mods.append(Modifier(0, 0, reg, U32, v))
    level, xlevel = num("level"), num("xlevel")
    if level is not None:
        mods.append(Modifier(0, 0, "eax", U32, level))
    if xlevel is not None:
        mods.append(Modifier(0x80000000, 0, "eax", U32, xlevel))
    model_id = props.get("model-id")
    if isinstance(model_id, str):
        raw = model_id.encode("latin-1", "replace")[:48].ljust(48, b"\0")
        for i, leaf in enumerate((0x80000002, 0x80000003, 0x80000004)):
            for j, reg in enumerate(REGISTERS):
                off = 16 * i + 4 * j
                mods.append(Modifier(leaf, 0, reg, U32, int.from_bytes(raw[off : off + 4], "little")))
    info: dict[str, object] = {
        k: props[k]
        for k in ("family", "model", "stepping", "vendor", "model-id", "level", "min-level", "xlevel", "min-xlevel")
        if k in props
    }
    notes = (
        "QEMU computes the cache, topology, XSAVE-size and other non-feature leaves itself; cpuidkit does not "
        "model them, so they are shown with the base's (KVM's supported) values",
        'a forced 1 KVM cannot back: QEMU drops it with a warning ("host doesn\'t support requested feature"), '
        "and refuses to start with -cpu …,enforce",
    )
    return CpuTemplate(
        name=model,
        kind="qemu",
        modifiers=tuple(mods),
        source=f"QEMU {qemu_version} query-cpu-model-expansion" if qemu_version else "QEMU query-cpu-model-expansion",
        notes=notes,
        info=info,
    )


# -- applying a template ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedTemplate:
    """A template applied to a base as its VMM does.

    ``table`` is what the VMM hands KVM_SET_CPUID2 (after its normalisation); ``refused`` lists why the VMM
    would not start at all (empty when it starts); ``normalised`` the bits the VMM's normalisation set, by
    register; ``steps`` the normalisation steps that ran (modelled) and those cpuidkit does not model."""

    template: CpuTemplate
    base: CpuidTable
    base_label: str
    templated: CpuidTable
    table: CpuidTable
    refused: tuple[str, ...]
    normalised: dict[Key, int]
    steps_modelled: tuple[str, ...]
    steps_not_modelled: tuple[str, ...]
    vcpus: int = 1

    @property
    def forced(self) -> dict[Key, tuple[int, int]]:
        return self.template.forced()

    def unbacked(self, provided: Iterable[str] = ()) -> dict[Key, int]:
        """Bits the template forces to 1 that reach the table (the VMM's normalisation did not clear or own them)
        and that the base does not offer (by register).  With KVM's supported CPUID as the base, these are
        features KVM cannot back on the host: a guest that trusts one may meet #UD (or worse, for state KVM does
        not switch).  ``provided``: field names KVM backs whatever its supported table says (e.g. TSC deadline
        before 6.14, which userspace learns from KVM_CAP_TSC_DEADLINE_TIMER)."""
        skip = frozenset(provided)
        out: dict[Key, int] = {}
        cat = catalog()
        for key, ones in self.template.forced_ones().items():
            leaf, sub, reg = key
            final = _exact(self.table, leaf, sub)
            if final is None:
                continue  # a refused modifier: it never reached a table
            e = _exact(self.base, leaf, sub)
            offered = e.reg(reg) if e is not None else 0
            candidates = ones & final.reg(reg) & ~offered & ~self.normalised.get(key, 0)
            missing = 0
            for bit in range(32):
                if candidates & (1 << bit):
                    f = cat.at(leaf, sub, reg, bit)
                    if f is not None and f.is_flag and f.name not in skip:  # a flag, not a bit of a number
                        missing |= 1 << bit
            if missing:
                out[key] = missing
        return out

    def provenance(self, leaf: int, sub: int, reg: str, mask: int) -> str:
        """Who decides the bits of ``mask``: ``vmm`` (its normalisation), ``template``, ``partly template``,
        or ``host`` (the base)."""
        if self.normalised.get((leaf, sub, reg), 0) & mask:
            return "vmm"
        fmask = self.forced.get((leaf, sub, reg), (0, 0))[0]
        if fmask & mask == mask:
            return "template"
        if fmask & mask:
            return "partly template"
        return "host"


def _exact(table: CpuidTable, leaf: int, sub: int) -> CpuidEntry | None:
    for e in table:
        if e.function == leaf and e.index == sub:
            return e
    return None


def _pos(entries: list[CpuidEntry], leaf: int, sub: int) -> int | None:
    """Position of the entry with exactly this (leaf, subleaf), as the VMMs' own maps key them."""
    return next((i for i, e in enumerate(entries) if e.function == leaf and e.index == sub), None)


def _replace_exact(entries: list[CpuidEntry], leaf: int, sub: int, entry: CpuidEntry) -> None:
    for i, e in enumerate(entries):
        if e.function == leaf and e.index == sub:
            entries[i] = entry
            return
    entries.append(entry)


def _pow2ceil(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


def _expr(step: NormalisationStep, host: CpuidTable | None, vcpus: int, index: int) -> int | None:
    v = step.value
    if v.isdigit():
        return int(v)
    if v == "host":
        e = _exact(host, step.leaf, step.subleaf) if host is not None else None
        return None if e is None else (e.reg(step.register) & step.mask) >> step.lo
    cpu_bits = 0  # Firecracker: u8::from(vcpu_count > 1 && smt); smt off by default
    return {
        "index": index,
        "vcpus": vcpus,
        "vcpus-1": vcpus - 1,
        "vcpus>1": int(vcpus > 1),
        "pow2(vcpus)": _pow2ceil(vcpus),
        "cpu_bits": cpu_bits,
        "cpus_per_core": 1 << cpu_bits,
        "cpus_per_core-1": (1 << cpu_bits) - 1,
    }.get(v)


def _firecracker_normalise(
    entries: list[CpuidEntry], host: CpuidTable | None, vendor: str, vcpus: int, index: int
) -> tuple[dict[Key, int], list[str], list[str], list[str]]:
    normalised: dict[Key, int] = {}
    done: list[str] = []
    skipped: list[str] = []
    refused: list[str] = []
    for step in normalisation_steps():
        if step.vendor not in ("any", vendor):
            continue
        label = f"{step.step} ({step.leaf:#x}" + (f".{step.subleaf}" if step.subleaf else "") + ")"
        if not step.modelled:
            if label not in skipped:
                skipped.append(label)
            continue
        if label not in done:
            done.append(label)
        if step.value == "insert":
            if _pos(entries, step.leaf, step.subleaf) is None:
                entries.append(CpuidEntry(step.leaf, step.subleaf, FLAG_SIGNIFICANT_INDEX))
                for reg in REGISTERS:
                    normalised[(step.leaf, step.subleaf, reg)] = U32
            continue
        if step.value == "brand":
            pos = _pos(entries, step.leaf, step.subleaf)
            if pos is None:
                msg = f"Firecracker's normalisation needs leaf {step.leaf:#x}.{step.subleaf}, which the base lacks"
                if step.required and msg not in refused:
                    refused.append(msg)
                continue
            raw = firecracker_brand(vendor, host)
            off = 16 * (step.leaf - BRAND_LEAVES[0])
            regs = {r: int.from_bytes(raw[off + 4 * j : off + 4 * j + 4], "little") for j, r in enumerate(REGISTERS)}
            entries[pos] = entries[pos].replace(**regs)
            for reg in REGISTERS:
                normalised[(step.leaf, step.subleaf, reg)] = U32
            continue
        if step.value == "host-leaf":
            if host is None:
                continue
            subs = range(64) if step.leaf == 0x8000001D else (0,)
            for i in subs:
                e = _exact(host, step.leaf, i)
                if e is None or (step.leaf == 0x8000001D and not e.eax & 0xF):
                    break
                flags = FLAG_SIGNIFICANT_INDEX if step.leaf == 0x8000001D else 0
                _replace_exact(entries, step.leaf, i, e.replace(flags=flags))
                for reg in REGISTERS:
                    normalised[(step.leaf, i, reg)] = U32
            continue
        if step.value == "cache-sharing":
            per_core = 1  # SMT off (cpu_bits 0)
            for i in range(64):
                pos = _pos(entries, step.leaf, i)
                if pos is None:
                    break
                e = entries[pos]
                if vendor == "intel" and not (e.eax or e.ebx or e.ecx or e.edx):
                    break
                level = (e.eax >> 5) & 0x7
                eax = e.eax
                if level in (1, 2):
                    eax = (eax & ~(0xFFF << 14)) | ((per_core - 1) << 14)
                elif level == 3:
                    eax = (eax & ~(0xFFF << 14)) | ((vcpus - 1) << 14)
                mask = 0xFFF << 14 if level in (1, 2, 3) else 0
                if vendor == "intel":
                    eax = (eax & ~(0x3F << 26)) | ((vcpus // per_core - 1) << 26)
                    mask |= 0x3F << 26
                entries[pos] = e.with_reg("eax", eax)
                if mask:
                    key = (step.leaf, i, "eax")
                    normalised[key] = normalised.get(key, 0) | mask
            continue
        if step.value.startswith("copy:"):
            src_leaf = int(step.value[5:], 16)
            if any(e.function == step.leaf for e in entries):
                for e in [e for e in entries if e.function == src_leaf]:
                    _replace_exact(entries, step.leaf, e.index, e.replace(function=step.leaf))
                    for reg in REGISTERS:
                        normalised[(step.leaf, e.index, reg)] = U32
            continue
        pos = _pos(entries, step.leaf, step.subleaf)
        if pos is None:
            if step.required:
                msg = f"Firecracker's normalisation needs leaf {step.leaf:#x}.{step.subleaf}, which the base lacks"
                if msg not in refused:
                    refused.append(msg)
            continue
        value = _expr(step, host, vcpus, index)
        if value is None:
            continue
        e = entries[pos]
        old = e.reg(step.register)
        new = (old & ~step.mask) | ((value << step.lo) & step.mask)
        entries[pos] = e.with_reg(step.register, new)
        if step.leaf == 0xB:
            entries[pos] = entries[pos].replace(flags=FLAG_SIGNIFICANT_INDEX)
        key = (step.leaf, step.subleaf, step.register)
        normalised[key] = normalised.get(key, 0) | step.mask
    return normalised, done, skipped, refused


def _qemu_levels(entries: list[CpuidEntry], info: Mapping[str, object]) -> list[CpuidEntry]:
    """QEMU answers basic leaves up to max(level, min-level) and extended ones up to max(xlevel, min-xlevel): the
    base's entries beyond are dropped (hypervisor leaves 0x40000000+ are QEMU's own and kept)."""

    def top(a: str, b: str) -> int | None:
        vals = [v for v in (info.get(a), info.get(b)) if isinstance(v, int) and not isinstance(v, bool)]
        return max(vals) if vals else None

    level, xlevel = top("level", "min-level"), top("xlevel", "min-xlevel")
    out = []
    for e in entries:
        if level is not None and e.function < 0x40000000 and e.function > level:
            continue
        if xlevel is not None and 0x80000000 <= e.function < 0x80010000 and e.function > xlevel:
            continue
        out.append(e)
    return out


def apply_template(
    template: CpuTemplate,
    base: CpuidTable,
    *,
    host_cpuid: CpuidTable | None = None,
    base_label: str = "",
    vcpus: int = 1,
) -> AppliedTemplate:
    """``template`` applied to ``base`` as its VMM does (see the module text), for vCPU 0 of ``vcpus``.

    ``host_cpuid``: the host's own CPUID (the CPUID instruction), which Firecracker's normalisation copies the
    vendor string and the cache leaves 0x80000005/6 from; without it those steps keep the base's values."""
    if not isinstance(template, CpuTemplate):
        raise InputError("template must be a CpuTemplate", where="template")
    if not isinstance(base, CpuidTable):
        raise InputError("base must be a CpuidTable (the VMM's starting CPUID)", where="base")
    if isinstance(vcpus, bool) or not isinstance(vcpus, int) or not 1 <= vcpus <= MAX_VCPUS_FIRECRACKER:
        raise InputError(f"vcpus must be 1..{MAX_VCPUS_FIRECRACKER}, got {vcpus!r}", where="vcpus")
    entries = list(base)
    refused: list[str] = []
    for m in template.modifiers:
        pos = _pos(entries, m.leaf, m.subleaf)
        if pos is None:
            if template.kind == "firecracker":
                msg = (
                    f"Template changes a CPUID entry not supported by KVM: leaf {m.leaf:#x}, subleaf {m.subleaf:#x} "
                    "(Firecracker refuses to start)"
                )
                if msg not in refused:
                    refused.append(msg)
                continue
            flags = FLAG_SIGNIFICANT_INDEX if function_is_indexed(m.leaf) else 0
            entries.append(CpuidEntry(m.leaf, m.subleaf, flags))
            pos = len(entries) - 1
        e = entries[pos]
        if m.flags is not None:
            e = e.replace(flags=m.flags)
        entries[pos] = e.with_reg(m.register, (e.reg(m.register) & ~m.mask) | (m.value & m.mask))
    templated = CpuidTable(entries, source=f"{template.name} applied to {base_label or base.source or 'a base'}")
    normalised: dict[Key, int] = {}
    done: list[str] = []
    skipped: list[str] = []
    if template.kind == "firecracker":
        vendor = "amd" if (host_cpuid or base).vendor in AMD_VENDORS else "intel"
        normalised, done, skipped, more = _firecracker_normalise(entries, host_cpuid, vendor, vcpus, 0)
        refused += more
        if host_cpuid is None:
            skipped.append("values copied from the host's own CPUID (no host CPUID given: the base's kept)")
    else:
        skipped.append("QEMU's own cache, topology, XSAVE-size and PMU leaves (the base's values kept)")
        entries[:] = _qemu_levels(entries, template.info)
    table = CpuidTable(entries, source=templated.source)
    return AppliedTemplate(
        template=template,
        base=base,
        base_label=base_label or (base.source or "base"),
        templated=templated,
        table=table,
        refused=tuple(refused),
        normalised=normalised,
        steps_modelled=tuple(done),
        steps_not_modelled=tuple(skipped),
        vcpus=vcpus,
    )
