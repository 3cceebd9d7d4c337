"""CPUID entries and tables, with KVM's lookup rules.

A :class:`CpuidTable` is what a VMM hands to ``KVM_SET_CPUID2``: an ordered,
immutable sequence of ``struct kvm_cpuid_entry2``.  Lookups follow KVM's
``cpuid_entry2_find()`` (arch/x86/kvm/cpuid.c, every version since 5.x): the
first entry whose function matches wins, and the index only counts where the
entry carries ``KVM_CPUID_FLAG_SIGNIFCANT_INDEX``.  Every "change" returns a new
table, so a failed operation can never leave a half-edited one behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cpuidkit.core.bits import (
    FLAG_SIGNIFICANT_INDEX,
    REGISTERS,
    FieldRef,
    check_u32,
    extract_bits,
    insert_bits,
    parse_field_spec,
)
from cpuidkit.core.catalog import catalog
from cpuidkit.core.indexed import function_is_indexed
from cpuidkit.errors import InputError

__all__ = ["CpuidEntry", "CpuidTable", "Change", "diff", "AMD_VENDORS"]

# CPU vendor strings (leaf 0) of AMD and its licensee Hygon: AMD's leaf layout, and KVM's svm module.
AMD_VENDORS = ("AuthenticAMD", "HygonGenuine")

_FIELDS = ("function", "index", "flags", "eax", "ebx", "ecx", "edx")


@dataclass(frozen=True, slots=True)
class CpuidEntry:
    """One ``struct kvm_cpuid_entry2``: all fields are unsigned 32-bit."""

    function: int
    index: int = 0
    flags: int = 0
    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0

    def __post_init__(self) -> None:
        for name in ("function", "index", "flags", *REGISTERS):
            check_u32(name, getattr(self, name))

    @classmethod
    def trusted(cls, function: int, index: int, flags: int, eax: int, ebx: int, ecx: int, edx: int) -> CpuidEntry:
        """An entry from values already known to be u32 (e.g. unpacked from a kernel buffer): no checks."""
        e = object.__new__(cls)
        for name, value in zip(_FIELDS, (function, index, flags, eax, ebx, ecx, edx)):
            object.__setattr__(e, name, value)
        return e

    @property
    def significant_index(self) -> bool:
        return bool(self.flags & FLAG_SIGNIFICANT_INDEX)

    def reg(self, name: str) -> int:
        if name not in REGISTERS:
            raise InputError(f"unknown register {name!r}; expected one of {', '.join(REGISTERS)}")
        return getattr(self, name)

    def with_reg(self, name: str, value: int) -> CpuidEntry:
        self.reg(name)
        return self.replace(**{name: value})

    def replace(self, **changes: int) -> CpuidEntry:
        for name, value in changes.items():
            if name not in _FIELDS:
                raise TypeError(f"CpuidEntry has no field {name!r}")
            check_u32(name, value)
        vals = [changes.get(n, getattr(self, n)) for n in _FIELDS]
        return CpuidEntry.trusted(*vals)

    def key(self) -> tuple[int, int]:
        return (self.function, self.index)

    def as_dict(self) -> dict[str, int]:
        return {
            "function": self.function,
            "index": self.index,
            "flags": self.flags,
            "eax": self.eax,
            "ebx": self.ebx,
            "ecx": self.ecx,
            "edx": self.edx,
        }

    def __repr__(self) -> str:
        return (
            f"CpuidEntry({self.function:#x}.{self.index}, flags={self.flags}, "
            f"eax={self.eax:#010x}, ebx={self.ebx:#010x}, ecx={self.ecx:#010x}, edx={self.edx:#010x})"
        )


class Change(NamedTuple):
    """One difference between two tables (see :func:`diff`)."""

    function: int
    index: int  # type: ignore[assignment]  # a field named like tuple.index, on purpose (public name)
    register: str | None  # None: the whole entry was added or removed
    old: int | None
    new: int | None
    kind: str = "changed"  # "added", "removed" or "changed"

    def __str__(self) -> str:
        where = f"{self.function:#x}.{self.index}"
        if self.register is None:
            return f"{where}: entry {self.kind}"
        old = "-" if self.old is None else f"{self.old:#010x}"
        new = "-" if self.new is None else f"{self.new:#010x}"
        return f"{where}.{self.register}: {old} -> {new}"


class CpuidTable(Sequence[CpuidEntry]):
    """An ordered, immutable CPUID table with KVM's lookup rules."""

    __slots__ = ("_entries", "source", "_index")

    def __init__(self, entries: Iterable[CpuidEntry] = (), *, source: str | None = None):
        ents = tuple(entries)
        for i, e in enumerate(ents):
            if not isinstance(e, CpuidEntry):
                raise InputError(f"entry {i} is {type(e).__name__}, expected CpuidEntry", source=source)
        self._entries = ents
        self.source = source
        self._index: dict[int, list[int]] | None = None

    @classmethod
    def _of(cls, entries: Iterable[CpuidEntry], source: str | None = None) -> CpuidTable:
        """A table from entries already known to be CpuidEntry objects (internal hot paths: no checks)."""
        t = object.__new__(cls)
        t._entries = tuple(entries)
        t.source = source
        t._index = None
        return t

    # -- sequence protocol -------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CpuidEntry]:
        return iter(self._entries)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return CpuidTable(self._entries[i], source=self.source)
        return self._entries[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CpuidTable):
            return self._entries == other._entries
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._entries)

    def __repr__(self) -> str:
        src = f", source={self.source!r}" if self.source else ""
        return f"CpuidTable({len(self)} entries{src})"

    @property
    def entries(self) -> tuple[CpuidEntry, ...]:
        return self._entries

    # -- KVM lookups -------------------------------------------------------
    def _by_function(self) -> dict[int, list[int]]:
        if self._index is None:
            idx: dict[int, list[int]] = {}
            for pos, e in enumerate(self._entries):
                idx.setdefault(e.function, []).append(pos)
            self._index = idx
        return self._index

    def find_position(self, function: int, index: int = 0) -> int | None:
        """Position of the entry KVM's ``cpuid_entry2_find()`` returns, or None.

        The first entry with a matching function wins if it has no
        significant-index flag, or if its index matches.
        """
        for pos in self._by_function().get(function, ()):
            e = self._entries[pos]
            if not e.flags & FLAG_SIGNIFICANT_INDEX or e.index == index:
                return pos
        return None

    def get(self, function: int, index: int = 0) -> CpuidEntry | None:
        """The entry KVM would use for CPUID(function, index), or None."""
        pos = self.find_position(function, index)
        return None if pos is None else self._entries[pos]

    def get_any(self, function: int) -> CpuidEntry | None:
        """KVM's lookup with ``KVM_CPUID_INDEX_NOT_SIGNIFICANT``: the first entry of the function."""
        positions = self._by_function().get(function)
        return self._entries[positions[0]] if positions else None

    def functions(self) -> list[int]:
        return list(self._by_function())

    def reg(self, function: int, index: int, register: str) -> int | None:
        e = self.get(function, index)
        return None if e is None else e.reg(register)

    @property
    def vendor(self) -> str | None:
        """The vendor string of leaf 0 (``GenuineIntel``, ``AuthenticAMD``…), or None."""
        e = self.get(0)
        if e is None:
            return None
        raw = b"".join(v.to_bytes(4, "little") for v in (e.ebx, e.edx, e.ecx))
        return raw.decode("latin-1").rstrip("\0")

    @property
    def max_basic_leaf(self) -> int | None:
        e = self.get(0)
        return None if e is None else e.eax

    @property
    def max_extended_leaf(self) -> int | None:
        e = self.get(0x8000_0000)
        return None if e is None else e.eax

    # -- edits (all return new tables) ---------------------------------------
    def _derive(self, entries: Iterable[CpuidEntry]) -> CpuidTable:
        return CpuidTable(entries, source=self.source)

    def replace_at(self, position: int, entry: CpuidEntry) -> CpuidTable:
        ents = list(self._entries)
        ents[position] = entry
        return self._derive(ents)

    def with_entry(self, entry: CpuidEntry) -> CpuidTable:
        """Replace the entry KVM would find for ``entry``'s (function, index), or append it."""
        pos = self.find_position(entry.function, entry.index)
        if pos is not None and self._entries[pos].index == entry.index:
            return self.replace_at(pos, entry)
        return self._derive(self._entries + (entry,))

    def without(self, function: int, index: int | None = None) -> CpuidTable:
        """Drop every entry of ``function`` (or only those with ``index``)."""
        return self._derive(
            e for e in self._entries if not (e.function == function and (index is None or e.index == index))
        )

    def appended(self, *entries: CpuidEntry) -> CpuidTable:
        return self._derive(self._entries + tuple(entries))

    def sorted(self) -> CpuidTable:
        return self._derive(sorted(self._entries, key=CpuidEntry.key))

    # -- fields -----------------------------------------------------------
    def resolve(self, spec: str | FieldRef) -> FieldRef:
        """A field name from the catalog, or a position like ``"0x7.0.ebx[5]"``."""
        if isinstance(spec, FieldRef):
            return spec
        ref = parse_field_spec(spec)
        if ref is not None:
            return ref
        return catalog().resolve(spec).ref

    def get_field(self, spec: str | FieldRef) -> int | None:
        """The value of a named field (or position); None when its leaf is absent."""
        ref = self.resolve(spec)
        e = self.get(ref.leaf, ref.subleaf)
        if e is None:
            return None
        return extract_bits(e.reg(ref.register), ref.hi, ref.lo)

    def set_field(self, spec: str | FieldRef, value: int) -> CpuidTable:
        """A new table with the field set; the leaf is added (zeroed) if absent.

        An added entry of an indexed leaf gets the significant-index flag, as
        KVM_GET_SUPPORTED_CPUID would give it.
        """
        ref = self.resolve(spec)
        pos = self.find_position(ref.leaf, ref.subleaf)
        if pos is None:
            flags = FLAG_SIGNIFICANT_INDEX if function_is_indexed(ref.leaf) else 0
            entry = CpuidEntry(ref.leaf, ref.subleaf, flags)
            new = insert_bits(0, ref.hi, ref.lo, value)
            return self.appended(entry.with_reg(ref.register, new))
        entry = self._entries[pos]
        new = insert_bits(entry.reg(ref.register), ref.hi, ref.lo, value)
        return self.replace_at(pos, entry.with_reg(ref.register, new))

    def set_fields(self, values: dict) -> CpuidTable:
        t = self
        for k, v in values.items():
            t = t.set_field(k, v)
        return t

    def as_dicts(self) -> list[dict[str, int]]:
        return [e.as_dict() for e in self._entries]


def _keyed(table: CpuidTable) -> dict[tuple[int, int, int], CpuidEntry]:
    """Entries keyed by (function, index, occurrence) so duplicates are compared too."""
    seen: dict[tuple[int, int], int] = {}
    out = {}
    for e in table:
        n = seen.get(e.key(), 0)
        seen[e.key()] = n + 1
        out[(e.function, e.index, n)] = e
    return out


def diff(a: CpuidTable, b: CpuidTable) -> list[Change]:
    """What changed from ``a`` to ``b``, register by register (order-insensitive).

    Entries are matched on (function, index); an entry present on one side only
    is one ``Change`` with ``register=None``; a changed ``flags`` value is
    reported with ``register="flags"``.  Use ``a == b`` for KVM's stricter,
    position-by-position comparison.
    """
    ka, kb = _keyed(a), _keyed(b)
    out: list[Change] = []
    for key in sorted(set(ka) | set(kb)):
        ea, eb = ka.get(key), kb.get(key)
        if ea is None:
            out.append(Change(key[0], key[1], None, None, None, "added"))
        elif eb is None:
            out.append(Change(key[0], key[1], None, None, None, "removed"))
        else:
            if ea.flags != eb.flags:
                out.append(Change(key[0], key[1], "flags", ea.flags, eb.flags))
            for r in REGISTERS:
                if ea.reg(r) != eb.reg(r):
                    out.append(Change(key[0], key[1], r, ea.reg(r), eb.reg(r)))
    return out
