"""The field catalog: every named bit and bitfield cpuidkit knows, from ``data/fields.csv``.

Each :class:`Field` has a leaf, a subleaf range, a register, a bit range, a
name (the Linux ``/proc/cpuinfo`` name where Linux has one, else the SDM/APM
name in lower case), a description, and the KVM owner class of the field for
upstream KVM (``passthrough``, ``runtime``, ``derived``, ``vendor`` …; see
``cpuidkit.kvm.ownership`` for the per-kernel/vendor answer).

``describe_field(leaf, subleaf, register, bit)`` follows pyelftools'
``describe_*`` shape: a name for a known position, a neutral fallback otherwise.

Some CPUID data is text spread over whole registers: the vendor string (leaf 0,
repeated in 0x80000000), the brand string (0x80000002-0x80000004), the
hypervisor signature and a few more.  :data:`TEXT_FIELDS` names the catalog
fields that hold each string, first bytes first, and :meth:`Catalog.strings`
decodes them from a table.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cpuidkit._files import data_path, read_csv
from cpuidkit.core.bits import REGISTERS, FieldRef
from cpuidkit.errors import InputError, LookupFailed

if TYPE_CHECKING:  # the catalog reads tables but never builds one: no import at run time
    from cpuidkit.core.table import CpuidTable

__all__ = [
    "Field",
    "Catalog",
    "catalog",
    "describe_field",
    "FieldValue",
    "TextField",
    "TEXT_FIELDS",
    "qemu_feature_positions",
    "qemu_feature_rows",
    "qemu_name",
]


@dataclass(frozen=True, slots=True)
class Field:
    leaf: int
    sub_lo: int
    sub_hi: int
    register: str
    hi: int
    lo: int
    name: str
    linux_define: str
    description: str
    owner: str
    bits: str = field(init=False)  # "5" or "15:8", as shown everywhere

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", f"{self.hi}" if self.hi == self.lo else f"{self.hi}:{self.lo}")

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    @property
    def is_flag(self) -> bool:
        return self.hi == self.lo

    @property
    def subleaves(self) -> range:
        return range(self.sub_lo, self.sub_hi + 1)

    @property
    def ref(self) -> FieldRef:
        """Position of the field (its first subleaf for a ranged field)."""
        return FieldRef(self.leaf, self.sub_lo, self.register, self.hi, self.lo)

    def ref_for(self, subleaf: int) -> FieldRef:
        return FieldRef(self.leaf, subleaf, self.register, self.hi, self.lo)

    @property
    def subleaf_text(self) -> str:
        return f"{self.sub_lo}" if self.sub_lo == self.sub_hi else f"{self.sub_lo}-{self.sub_hi}"

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lo

    def __str__(self) -> str:
        return f"{self.name} ({self.leaf:#x}.{self.subleaf_text}.{self.register}[{self.bits}])"


@dataclass(frozen=True, slots=True)
class FieldValue:
    field: Field
    subleaf: int
    value: int

    @property
    def name(self) -> str:
        return self.field.name


_FV_FIELD, _FV_SUBLEAF, _FV_VALUE = (FieldValue.__dict__[n].__set__ for n in ("field", "subleaf", "value"))


def _field_value(f: Field, subleaf: int, value: int) -> FieldValue:
    """``FieldValue(f, subleaf, value)`` without the frozen dataclass's per-attribute ``__setattr__`` detour."""
    fv = object.__new__(FieldValue)
    _FV_FIELD(fv, f)
    _FV_SUBLEAF(fv, subleaf)
    _FV_VALUE(fv, value)
    return fv


@dataclass(frozen=True, slots=True)
class TextField:
    """A string CPUID spreads over whole registers: the 32-bit catalog fields that hold it, first bytes first.

    Each part is ``(field name, subleaf)``; the bytes of a register are its value in little-endian order, and
    the text ends at the first NUL (bytes are read as Latin-1, so every byte stays one character).
    """

    name: str
    description: str
    parts: tuple[tuple[str, int], ...]


def _parts(*names: str, subleaf: int = 0) -> tuple[tuple[str, int], ...]:
    return tuple((n, subleaf) for n in names)


TEXT_FIELDS: tuple[TextField, ...] = (
    TextField("vendor", "CPU vendor string (leaf 0: EBX, EDX, ECX)", _parts(*(f"cpu_vendorid_{i}" for i in range(3)))),
    TextField(
        "ext_vendor",
        "the vendor string again in leaf 0x80000000 (AMD and Hygon; empty on Intel)",
        _parts(*(f"e_cpu_vendorid_{i}" for i in range(3))),
    ),
    TextField(
        "brand", "processor brand string (0x80000002-0x80000004)", _parts(*(f"cpu_brandid_{i}" for i in range(12)))
    ),
    TextField(
        "hypervisor",
        "hypervisor signature (0x40000000: EBX, ECX, EDX)",
        _parts(*(f"hypervisor_id_{i}" for i in range(3))),
    ),
    TextField(
        "soc_brand",
        "SoC vendor brand string (leaf 0x17, subleaves 1-3)",
        tuple((f"vendor_brand_{c}", sub) for sub in (1, 2, 3) for c in "abcd"),
    ),
    TextField(
        "tdx_vendor", "TDX vendor string (leaf 0x21: EBX, EDX, ECX)", _parts(*(f"tdx_vendorid_{i}" for i in range(3)))
    ),
    TextField(
        "transmeta_vendor",
        "Transmeta vendor string (0x80860000: EBX, EDX, ECX)",
        _parts(*(f"tra_cpu_vendorid_{i}" for i in range(3))),
    ),
    TextField(
        "transmeta_info",
        "Transmeta information string (0x80860003-0x80860006)",
        _parts(*(f"cpu_info_{i}" for i in range(16))),
    ),
)


def _parse_bits(text: str, where: str, source: str) -> tuple[int, int]:
    try:
        if ":" in text:
            hi_s, lo_s = text.split(":", 1)
            hi, lo = int(hi_s), int(lo_s)
        else:
            hi = lo = int(text)
    except ValueError:
        raise InputError(f"bits must be N or HI:LO, got {text!r}", source=source, where=where) from None
    if not 0 <= lo <= hi <= 31:
        raise InputError(f"bits {text!r} out of range 31..0", source=source, where=where)
    return hi, lo


def _parse_subleaf(text: str, where: str, source: str) -> tuple[int, int]:
    try:
        if "-" in text:
            lo_s, hi_s = text.split("-", 1)
            return int(lo_s, 0), int(hi_s, 0)
        v = int(text, 0)
        return v, v
    except ValueError:
        raise InputError(f"subleaf must be N or LO-HI, got {text!r}", source=source, where=where) from None


class Catalog:
    """All fields, with lookups by name and by position."""

    def __init__(self, fields: Iterable[Field]):
        self.fields: tuple[Field, ...] = tuple(fields)
        self._by_name: dict[str, list[Field]] = {}
        self._by_reg: dict[tuple[int, str], list[Field]] = {}
        for f in self.fields:
            self._by_name.setdefault(f.name, []).append(f)
            self._by_reg.setdefault((f.leaf, f.register), []).append(f)
        # decode()'s plan, computed once: runs of consecutive fields in one register (same leaf, subleaf range
        # and register), each with what the loop needs; the fields keep their catalog order
        groups: list[tuple] = []
        for f in self.fields:
            member = (f, f.lo, (1 << (f.hi - f.lo + 1)) - 1)
            g = groups[-1] if groups else None
            if g is not None and (g[0], g[1][0], g[1][-1], g[3]) == (f.leaf, f.sub_lo, f.sub_hi, f.register):
                g[4].append(member)
            else:
                groups.append((f.leaf, tuple(f.subleaves), f.sub_lo != f.sub_hi, f.register, [member]))
        self._groups = tuple((leaf, subs, ranged, reg, tuple(members)) for leaf, subs, ranged, reg, members in groups)
        self._texts: tuple[tuple[TextField, tuple[tuple[Field, int], ...]], ...] | None = None  # strings()' plan

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    @classmethod
    def from_rows(cls, rows: list[dict[str, str]], source: str = "fields.csv") -> Catalog:
        fields = []
        for n, row in enumerate(rows, start=1):
            where = f"row {n} ({row.get('name', '?')})"
            try:
                leaf = int(row["leaf"], 16)
            except (KeyError, ValueError):
                raise InputError(f"leaf must be hex, got {row.get('leaf')!r}", source=source, where=where) from None
            reg = row["register"].lower()
            if reg not in REGISTERS:
                raise InputError(f"register must be one of {REGISTERS}, got {reg!r}", source=source, where=where)
            hi, lo = _parse_bits(row["bits"], where, source)
            sub_lo, sub_hi = _parse_subleaf(row["subleaf"], where, source)
            fields.append(
                Field(
                    leaf,
                    sub_lo,
                    sub_hi,
                    reg,
                    hi,
                    lo,
                    row["name"],
                    row.get("linux_define", ""),
                    row.get("description", ""),
                    row.get("owner", "unknown") or "unknown",
                )
            )
        return cls(fields)

    # -- lookups -------------------------------------------------------------
    def by_name(self, name: str) -> list[Field]:
        return list(self._by_name.get(name, ()))

    def resolve(self, name: str) -> Field:
        """The one field called ``name``; qualify as ``leaf.name`` when the name is reused."""
        cands = self._by_name.get(name)
        if cands is None and "." in name:
            leaf_s, _, short = name.rpartition(".")
            try:
                leaf = int(leaf_s, 16) if leaf_s.lower().startswith("0x") else int(leaf_s, 0)
            except ValueError:
                leaf = None
            if leaf is not None:
                cands = [f for f in self._by_name.get(short, ()) if f.leaf == leaf]
        if not cands:
            raise LookupFailed(f"no CPUID field named {name!r} in the catalog")
        if len(cands) > 1:
            opts = ", ".join(f"{f.leaf:#x}.{f.name}" for f in cands)
            raise LookupFailed(f"field name {name!r} is ambiguous: {opts}")
        return cands[0]

    def in_register(self, leaf: int, subleaf: int, register: str) -> list[Field]:
        return [f for f in self._by_reg.get((leaf, register), ()) if f.sub_lo <= subleaf <= f.sub_hi]

    def at(self, leaf: int, subleaf: int, register: str, bit: int) -> Field | None:
        for f in self.in_register(leaf, subleaf, register):
            if f.lo <= bit <= f.hi:
                return f
        return None

    def leaves(self) -> list[int]:
        return sorted({f.leaf for f in self.fields})

    # -- decoding ------------------------------------------------------------
    def registers(self, table: CpuidTable) -> Iterator[tuple[int, str, tuple, list[tuple[int, int]]]]:
        """The registers :meth:`values` decodes, in catalog order: ``(leaf, register, members, found)`` where
        ``members`` are consecutive catalog fields of that register, each ``(field, lo, ones)``, and ``found`` the
        ``(subleaf, register value)`` pairs they are decoded from (several for a field with a subleaf range)."""
        present = set(table.functions())
        get = table.get
        indices: dict[int, set[int]] | None = None
        for leaf, subs, ranged, reg, members in self._groups:
            if leaf not in present:
                continue
            if not ranged:
                sub = subs[0]
                e = get(leaf, sub)
                if e is not None:
                    yield leaf, reg, members, [(sub, getattr(e, reg))]
                continue
            # a ranged field only decodes entries really present for that subleaf, so only the subleaves some
            # entry of the leaf carries as its index can match (looked up in ascending order, as KVM would)
            if indices is None:
                indices = {}
                for e in table:
                    indices.setdefault(e.function, set()).add(e.index)
            found = []
            for sub in sorted(indices.get(leaf, ())):
                if sub < subs[0] or sub > subs[-1]:
                    continue
                e = get(leaf, sub)
                if e is not None and e.index == sub:
                    found.append((sub, getattr(e, reg)))
            if found:
                yield leaf, reg, members, found

    def values(self, table: CpuidTable) -> list[tuple[Field, int, int]]:
        """``(field, subleaf, value)`` for every catalog field present in ``table``: :meth:`decode` without the
        :class:`FieldValue` objects (the same fields, in the same order)."""
        out: list[tuple[Field, int, int]] = []
        append = out.append
        for _leaf, _reg, members, found in self.registers(table):
            for f, lo, ones in members:
                for sub, rv in found:
                    append((f, sub, (rv >> lo) & ones))
        return out

    def decode(self, table: CpuidTable) -> list[FieldValue]:
        """Every catalog field present in ``table``, with its value (KVM lookup rules)."""
        return [_field_value(f, sub, value) for f, sub, value in self.values(table)]

    def text_fields(self) -> tuple[TextField, ...]:
        """The strings of :data:`TEXT_FIELDS` this catalog can decode (every part a whole-register field)."""
        return tuple(t for t, _ in self._text_plan())

    def _text_plan(self) -> tuple[tuple[TextField, tuple[tuple[Field, int], ...]], ...]:
        if self._texts is None:
            plan = []
            for t in TEXT_FIELDS:
                parts = []
                for name, sub in t.parts:
                    f = next((f for f in self._by_name.get(name, ()) if f.sub_lo <= sub <= f.sub_hi), None)
                    if f is None or f.width != 32:
                        break
                    parts.append((f, sub))
                else:
                    plan.append((t, tuple(parts)))
            self._texts = tuple(plan)
        return self._texts

    def strings(self, table: CpuidTable) -> dict[str, str]:
        """The text of every string in :data:`TEXT_FIELDS` whose registers are all in ``table`` (KVM lookup rules),
        e.g. ``{"vendor": "GenuineIntel", "brand": "Intel(R) Xeon(R) ...", ...}``, in :data:`TEXT_FIELDS` order."""
        out: dict[str, str] = {}
        get = table.get
        for t, parts in self._text_plan():
            raw = bytearray()
            for f, sub in parts:
                e = get(f.leaf, sub)
                if e is None or not _in_range(table, f.leaf):
                    break
                raw += getattr(e, f.register).to_bytes(4, "little")
            else:
                out[t.name] = bytes(raw).split(b"\0", 1)[0].decode("latin-1")
        return out

    def features(self, table: CpuidTable) -> list[str]:
        """Names of the one-bit fields that are set, in catalog order (no duplicates)."""
        seen: dict[str, None] = {}
        for fv in self.decode(table):
            if fv.field.is_flag and fv.value:
                seen.setdefault(fv.field.name, None)
        return list(seen)


def _in_range(table: CpuidTable, leaf: int) -> bool:
    """Whether ``leaf`` is at most the highest leaf of its range (leaf 0, 0x80000000, 0x80860000 ... report it).

    A CPU answers a leaf beyond the top of a range with other data (Intel: the highest basic leaf's), and dumps
    record such answers, e.g. 0x80860000 on Intel parts; their registers are no string.  The hypervisor range
    is not checked: KVM reads a highest hypervisor leaf of 0 as 0x40000001.
    """
    base = leaf & 0xFFFF0000
    if base == 0x40000000:
        return True
    e = table.get(base)
    if e is None:
        return False
    return leaf <= e.eax and (base == 0 or e.eax <= base | 0xFFFF)


@functools.cache
def catalog() -> Catalog:
    """The catalog from ``data/fields.csv`` (loaded once)."""
    return Catalog.from_rows(read_csv("fields.csv"), source=str(data_path("fields.csv")))


@functools.cache
def qemu_feature_positions() -> dict[str, tuple[int, int, str, int]]:
    """The catalog's QEMU column: QEMU feature property name -> (leaf, subleaf, register, bit), from
    ``data/qemu-cpu-features.csv`` (QEMU's feature_word_info table, names checked against the installed binary).
    A name QEMU gives two bits (kvmclock) maps to its last; :func:`qemu_feature_rows` has every row."""
    return dict(qemu_feature_rows())


@functools.cache
def qemu_feature_rows() -> tuple[tuple[str, tuple[int, int, str, int]], ...]:
    """Every row of ``data/qemu-cpu-features.csv`` as (name, (leaf, subleaf, register, bit)), checked."""
    src = str(data_path("qemu-cpu-features.csv"))
    out: list[tuple[str, tuple[int, int, str, int]]] = []
    for n, r in enumerate(read_csv("qemu-cpu-features.csv"), start=1):
        try:
            pos = (int(r["leaf"], 16), int(r["subleaf"]), r["register"], int(r["bit"]))
        except (KeyError, ValueError) as e:
            raise InputError(f"bad row: {e}", source=src, where=f"data row {n}") from None
        if pos[2] not in REGISTERS or not 0 <= pos[3] <= 31:
            raise InputError("register or bit out of range", source=src, where=f"data row {n}")
        out.append((r["qemu_name"], pos))
    return tuple(out)


@functools.cache
def _qemu_by_position() -> dict[tuple[int, int, str, int], str]:
    out: dict[tuple[int, int, str, int], str] = {}
    for name, pos in qemu_feature_rows():
        out.setdefault(pos, name)
    return out


def qemu_name(f: Field, subleaf: int | None = None) -> str | None:
    """QEMU's ``-cpu`` property name for a one-bit field (``avx512f``, ``sse4.2``, ``lahf-lm``), or None."""
    if not f.is_flag:
        return None
    return _qemu_by_position().get((f.leaf, f.sub_lo if subleaf is None else subleaf, f.register, f.lo))


def describe_field(leaf: int, subleaf: int, register: str, bit: int) -> str:
    """Name of the field at a position, or ``"<leaf>.<sub>.<reg>[bit]"`` when none is known."""
    f = catalog().at(leaf, subleaf, register, bit)
    if f is not None:
        return f.name
    return f"{leaf:#x}.{subleaf}.{register}[{bit}]"
