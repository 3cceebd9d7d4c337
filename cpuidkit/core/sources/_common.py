"""Helpers shared by the importers.

Every message an importer builds quotes user data through :func:`shorten`, so a
hostile file cannot make an error message huge or split it over lines.
"""

from __future__ import annotations

import json
import re

from cpuidkit._files import check_json_depth
from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX, U32
from cpuidkit.core.indexed import function_is_indexed, indexed_in_dump
from cpuidkit.core.table import CpuidEntry
from cpuidkit.errors import InputError

MAX_QUOTE = 60  # characters of user data quoted in a message
MAX_DIGITS = 4300  # Python refuses to turn longer decimal strings into ints (sys.get_int_max_str_digits)


def shorten(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr(value)``, cut to about ``limit`` characters (one line, whatever the value holds)."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"… ({len(value)} characters)"
    if isinstance(value, (list, dict)):
        kind = "list" if isinstance(value, list) else "object"
        text = f"a {kind} of {len(value)}"
        return text
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def number(value: object, *, field: str, where: str, source: str | None) -> int:
    """An unsigned 32-bit number from an int or a "0x…"/decimal string."""
    if isinstance(value, bool):
        raise InputError(f"{field} must be a number, got a boolean", source=source, where=where)
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        s = value.strip()
        try:
            n = int(s, 16) if s[:2] in ("0x", "0X") else int(s, 10)
        except ValueError:
            raise InputError(
                f"{field} must be a number like 0x1f or 31, got {shorten(value)}", source=source, where=where
            ) from None
    else:
        raise InputError(f"{field} must be a number, got {type(value).__name__}", source=source, where=where)
    if not 0 <= n <= U32:
        shown = str(n) if n.bit_length() <= 128 else f"a {n.bit_length()}-bit number"
        raise InputError(f"{field} must fit in 32 bits (0..0xffffffff), got {shown}", source=source, where=where)
    return n


def small_int(digits: str, *, what: str, where: str, source: str | None, base: int = 10, limit: int = U32) -> int:
    """``int(digits, base)`` for digits a regular expression captured, refused above ``limit``."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > 12 or int(significant, base) > limit:
        raise InputError(f"{what} {shorten(digits, 20)} is too large (at most {limit:#x})", source=source, where=where)
    return int(significant, base)


_LONG_NUMBER = re.compile(r"\d{" + str(MAX_DIGITS + 1) + ",}")


def load_json(text: str, source: str | None):
    """``json.loads`` with every failure as an InputError naming the line and column (depth limited first)."""
    check_json_depth(text, source)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e.msg}", source=source, where=f"line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise InputError("JSON nested too deeply (expected a flat list of entries)", source=source) from None
    except ValueError:  # an integer literal longer than Python converts
        m = _LONG_NUMBER.search(text)
        where = None
        if m:
            line = text.count("\n", 0, m.start()) + 1
            where = f"line {line} column {m.start() - (text.rfind(chr(10), 0, m.start()) + 1) + 1}"
        raise InputError(
            f"a number has more than {MAX_DIGITS} digits; expected 32-bit values", source=source, where=where
        ) from None


def indexed_flags(function: int) -> int:
    """The flags KVM_GET_SUPPORTED_CPUID gives an entry of this function."""
    return FLAG_SIGNIFICANT_INDEX if function_is_indexed(function) else 0


def flag_dump(entries: list[CpuidEntry], keep: frozenset[int] = frozenset()) -> list[CpuidEntry]:
    """A raw dump's entries with the significant-index flag on every function the dump shows to be indexed
    (:func:`~cpuidkit.core.indexed.indexed_in_dump`: KVM's list, and leaves such as 0x80000020 whose subleaves
    differ).  ``keep``: positions whose flags the file stated (left as they are)."""
    indexed = indexed_in_dump(entries)
    return [
        e
        if pos in keep or e.function not in indexed or e.flags & FLAG_SIGNIFICANT_INDEX
        else e.replace(flags=e.flags | FLAG_SIGNIFICANT_INDEX)
        for pos, e in enumerate(entries)
    ]


def raw_entry(function: int, index: int, eax: int, ebx: int, ecx: int, edx: int) -> CpuidEntry:
    """An entry from a raw dump: the flags follow KVM's list of indexed leaves.

    The values must already be checked to be unsigned 32-bit (by :func:`number`
    or a pattern of at most 8 hex digits).
    """
    return CpuidEntry.trusted(function, index, indexed_flags(function), eax, ebx, ecx, edx)
