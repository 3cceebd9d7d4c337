"""Helpers shared by the importers."""

from __future__ import annotations

from .._errors import InputError
from ..kvm.indexed import function_is_indexed
from ..table import FLAG_SIGNIFICANT_INDEX, U32, CpuidEntry


def number(value: object, *, field: str, where: str, source: str | None) -> int:
    """An unsigned 32-bit number from an int or a "0x…"/decimal string."""
    if isinstance(value, bool):
        raise InputError(f"{field} must be a number, got a boolean", source=source, where=where)
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        s = value.strip()
        try:
            n = int(s, 16) if s.lower().startswith("0x") else int(s, 10)
        except ValueError:
            raise InputError(f"{field} must be a number like 0x1f or 31, got {value!r}", source=source, where=where) from None
    else:
        raise InputError(f"{field} must be a number, got {type(value).__name__}", source=source, where=where)
    if not 0 <= n <= U32:
        raise InputError(f"{field} must fit in 32 bits (0..0xffffffff), got {n}", source=source, where=where)
    return n


def indexed_flags(function: int) -> int:
    """The flags KVM_GET_SUPPORTED_CPUID gives an entry of this function."""
    return FLAG_SIGNIFICANT_INDEX if function_is_indexed(function) else 0


def raw_entry(function: int, index: int, eax: int, ebx: int, ecx: int, edx: int) -> CpuidEntry:
    """An entry from a raw dump: the flags follow KVM's list of indexed leaves."""
    return CpuidEntry(function, index, indexed_flags(function), eax, ebx, ecx, edx)
