"""Bits and positions: the vocabulary every floor shares (registers, bit ranges, field positions).

Nothing here knows about KVM or the catalog: :class:`FieldRef` is a position
(leaf, subleaf, register, bit range) and :func:`parse_field_spec` reads the
``"0x7.0.ebx[5]"`` notation used everywhere in the project.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from cpuidkit.errors import InputError

__all__ = [
    "REGISTERS",
    "FLAG_SIGNIFICANT_INDEX",
    "FLAG_STATEFUL_FUNC",
    "FLAG_STATE_READ_NEXT",
    "U32",
    "U64",
    "FieldRef",
    "parse_field_spec",
    "extract_bits",
    "insert_bits",
    "set_bits",
    "check_u32",
]

REGISTERS = ("eax", "ebx", "ecx", "edx")
# include/uapi/linux/kvm.h (the misspelling "SIGNIFCANT" is KVM's own)
FLAG_SIGNIFICANT_INDEX = 1 << 0
FLAG_STATEFUL_FUNC = 1 << 1
FLAG_STATE_READ_NEXT = 1 << 2

U32 = 0xFFFF_FFFF
U64 = (1 << 64) - 1


def check_u32(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {type(value).__name__} {value!r}", where=name)
    if not 0 <= value <= U32:
        raise InputError(f"{name} must fit in 32 bits (0..0xffffffff), got {value:#x}", where=name)
    return value


def extract_bits(value: int, hi: int, lo: int) -> int:
    """Bits ``hi..lo`` (inclusive) of ``value``."""
    return (value >> lo) & ((1 << (hi - lo + 1)) - 1)


def insert_bits(value: int, hi: int, lo: int, field: int) -> int:
    """``value`` with bits ``hi..lo`` replaced by ``field`` (which must fit)."""
    width = hi - lo + 1
    if isinstance(field, bool):
        field = int(field)
    if not isinstance(field, int) or not 0 <= field < (1 << width):
        raise InputError(f"value {field!r} does not fit in {width} bit(s) [{hi}:{lo}]")
    mask = ((1 << width) - 1) << lo
    return (value & ~mask) | (field << lo)


def set_bits(mask: int) -> list[int]:
    """The positions of the set bits of ``mask``, lowest first."""
    out = []
    bit = 0
    while mask:
        if mask & 1:
            out.append(bit)
        mask >>= 1
        bit += 1
    return out


class FieldRef(NamedTuple):
    """A position in a table: leaf, subleaf, register, bit range (inclusive)."""

    leaf: int
    subleaf: int
    register: str
    hi: int
    lo: int

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    def __str__(self) -> str:
        bits = f"{self.hi}" if self.hi == self.lo else f"{self.hi}:{self.lo}"
        return f"{self.leaf:#x}.{self.subleaf}.{self.register}[{bits}]"


_SPEC = re.compile(
    r"^(?P<leaf>0x[0-9a-fA-F]+|\d+)(?:\.(?P<sub>0x[0-9a-fA-F]+|\d+))?\.(?P<reg>e[abcd]x)"
    r"(?:\[(?P<hi>\d+)(?::(?P<lo>\d+))?\])?$"
)


def parse_field_spec(spec: str) -> FieldRef | None:
    """Parse ``"0x7.0.ebx[5]"``/``"1.ecx[31]"``/``"0x80000008.eax[15:8]"``; ``None`` if not of that form."""
    m = _SPEC.match(spec.strip())
    if not m:
        return None
    leaf = int(m["leaf"], 0)
    sub = int(m["sub"], 0) if m["sub"] else 0
    hi = int(m["hi"]) if m["hi"] else 31
    lo = int(m["lo"]) if m["lo"] else (hi if m["hi"] else 0)
    if not (0 <= lo <= hi <= 31):
        raise InputError(f"bad bit range in {spec!r}: need 31 >= hi >= lo >= 0")
    return FieldRef(leaf, sub, m["reg"], hi, lo)
