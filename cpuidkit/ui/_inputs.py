"""What a reader types or passes to the notebook side, checked by the rules of the API and the command line.

No rule lives here: each function hands the value to the validator the core, the API or the CLI
already uses (``modelled_kernel`` as ``--kernel`` does, ``check_vendor``, ``resolve_host`` and the
hardened reader behind it, ``VcpuSetup.from_dict`` as a STATE.json is read, ``parse_value`` /
``parse_bits`` as ``cpuidkit xcr0`` / ``cpuidkit xsave`` read XCR0, the table's u32 rule and the
field-spec notation of :mod:`cpuidkit.core.bits`, ``classify``'s MAXPHYADDR range).  What is added is
only the type check a notebook needs first: Python does not enforce a signature, and a float ``6.10``
or a huge number must be refused, not turned into text that happens to parse.

Every failure is an :class:`~cpuidkit.errors.InputError` (a ``CpuidkitError``), raised before anything
changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, replace

from cpuidkit.analysis.addressing import classify
from cpuidkit.core.bits import FieldRef, check_u32, parse_field_spec
from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import HostProfile, check_vendor
from cpuidkit.core.kernels import kernel_profile, modelled_kernel
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import parse_bits, parse_value
from cpuidkit.errors import InputError
from cpuidkit.kvm.check import VcpuSetup
from cpuidkit.live import resolve_host

__all__ = [
    "kind",
    "kernel",
    "vendor",
    "host",
    "table",
    "state",
    "state_with",
    "xcr0",
    "xsave_mask",
    "position",
    "field",
    "entry",
    "path",
    "maxphyaddr_pair",
    "paging",
    "behaviour_ids",
    "field_names",
    "flag",
    "title",
]

_STATE_FIELDS = tuple(f.name for f in fields(VcpuSetup))


def kind(value: object) -> str:
    """A value's type for a message (never its repr: a 5,000-digit int cannot even be printed)."""
    return type(value).__name__


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"must be text, got {kind(value)}", where=what)
    return value


def kernel(value: object) -> str:
    """A kernel version as ``--kernel`` takes it (``6.12``, ``6.1.170``, ``6.18.44-fc``) → the modelled ``X.Y``."""
    return modelled_kernel(_text(value, "kernel"))


def vendor(value: object) -> str:
    """``vmx``, ``svm`` or ``pvm`` (``check_vendor``)."""
    return check_vendor(_text(value, "vendor"))


def host(spec: object) -> HostProfile:
    """A built-in host's name, a dump file (read by the hardened reader), ``"live"`` or a HostProfile."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if spec is not None and not isinstance(spec, (str, HostProfile)):
        raise InputError(
            f"must be a built-in host's name, a dump file or a HostProfile, got {kind(spec)}", where="host"
        )
    return resolve_host(spec)


def table(value: object) -> CpuidTable:
    if not isinstance(value, CpuidTable):
        raise InputError(f"must be a CpuidTable, got {kind(value)}", where="table")
    return value


def _doc(items: Mapping[str, object]) -> dict:
    """State values as a STATE.json holds them (a list of quirk names), for ``VcpuSetup.from_dict``."""
    return {k: list(v) if k == "quirks_disabled" and isinstance(v, tuple) else v for k, v in items.items()}


def _previous(value: object) -> CpuidTable | None:
    if value is not None and not isinstance(value, CpuidTable):
        raise InputError(f"must be a CpuidTable or None, got {kind(value)}", where="previous")
    return value


def state(value: object) -> VcpuSetup:
    """A vCPU state checked as a STATE.json is (``VcpuSetup.from_dict``: 64-bit numbers, booleans, a list of
    quirk names): a :class:`VcpuSetup`, or a dict as ``check(state=…)`` takes it.  Numbers given as text come
    back as numbers."""
    if isinstance(value, dict):
        return VcpuSetup.from_dict(value, source="state")
    if not isinstance(value, VcpuSetup):
        raise InputError(f"must be a VcpuSetup or a dict, got {kind(value)}", where="state")
    doc = _doc({k: getattr(value, k) for k in _STATE_FIELDS if k != "previous" and getattr(value, k) is not None})
    return replace(VcpuSetup.from_dict(doc, source="state"), previous=_previous(value.previous))


def state_with(current: VcpuSetup, changes: Mapping[str, object]) -> VcpuSetup:
    """``current`` with ``changes`` (``cr4=…``, ``xcr0=…`` …), each checked as in a STATE.json;
    an unknown name is refused with the list of known ones.  ``None`` resets a number."""
    doc = _doc({k: v for k, v in changes.items() if k != "previous"})
    checked = VcpuSetup.from_dict(doc, source="state")
    new = replace(current, **{k: getattr(checked, k) for k in doc})
    if "previous" in changes:
        new = replace(new, previous=_previous(changes["previous"]))
    return new


def xcr0(value: object) -> int:
    """An XCR0 value: text as ``cpuidkit xcr0 VALUE`` reads it (``parse_value``: ``0x602e7``, ``7``,
    ``0b111``), and a number by the same rule (its hexadecimal text)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"XCR0 value must be a number like 0x7, got {kind(value)}")
    return parse_value(value if isinstance(value, str) else hex(value))


def xsave_mask(value: object, what: str) -> int:
    """An XCR0 or XSS mask for a layout: text as ``cpuidkit xsave --xcr0`` reads it (``parse_bits``: numbers,
    bit ranges, component names); a number as an XCR0 value (:func:`xcr0`)."""
    if isinstance(value, str):
        try:
            return parse_bits(value)
        except InputError as e:
            raise InputError(e.detail, where=what) from None
    try:
        return xcr0(value)
    except InputError as e:
        raise InputError(e.detail, where=what) from None


def _ref(leaf: object, subleaf: object, register: object, bits: str) -> FieldRef:
    leaf_ = check_u32("leaf", leaf)
    sub_ = check_u32("subleaf", subleaf)
    reg = _text(register, "register")
    ref = parse_field_spec(f"{leaf_:#x}.{sub_:#x}.{reg}{bits}")
    if ref is None or ref.register != reg:
        raise InputError(f"must be one of eax, ebx, ecx, edx, got {reg[:20]!r}", where="register")
    return ref


_WHOLE = object()  # position() of a whole register (no bit given)


def position(leaf: object, subleaf: object, register: object, bit: object = _WHOLE) -> FieldRef:
    """A register (or one bit of it) as the field-spec notation names it (``0x7.0.ebx[5]``): leaf and
    subleaf u32 as in every table entry, a register eax..edx, a bit 0..31 (``parse_field_spec``)."""
    return _ref(leaf, subleaf, register, "" if bit is _WHOLE else f"[{check_u32('bit', bit)}]")


def field(spec: object) -> FieldRef:
    """A field: a catalog name or a position like ``0x80000008.eax[15:8]`` (``CpuidTable.resolve``), or a
    :class:`FieldRef`, checked as its own spec text."""
    if isinstance(spec, FieldRef):
        hi, lo = check_u32("hi", spec.hi), check_u32("lo", spec.lo)
        return _ref(spec.leaf, spec.subleaf, spec.register, f"[{hi}:{lo}]")
    return CpuidTable().resolve(_text(spec, "field"))


def entry(leaf: object, subleaf: object) -> tuple[int, int]:
    """A (leaf, subleaf): each u32, as in every table entry."""
    return check_u32("leaf", leaf), check_u32("subleaf", subleaf)


def path(value: object, what: str = "file") -> str | os.PathLike:
    """A file name (text or a path object); reading and writing go through the hardened helpers."""
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(f"must be a file name, got {kind(value)}", where=what)
    return value


def maxphyaddr_pair(guest: object, host_bits: object, mode: str = "4-level") -> tuple[int, int]:
    """A guest and a host MAXPHYADDR (and a paging mode) as ``cpuidkit maxphyaddr`` takes them (``classify``)."""
    g, h = check_u32("guest MAXPHYADDR", guest), check_u32("host MAXPHYADDR", host_bits)
    classify(g, h, _text(mode, "mode"))
    return g, h


def paging(maxphyaddr: object, mode: object) -> tuple[int, str]:
    """A MAXPHYADDR and a paging mode for the reserved-bit masks, by ``cpuidkit maxphyaddr``'s rules."""
    m = _text(mode, "mode")
    bits, _ = maxphyaddr_pair(maxphyaddr, maxphyaddr, m)
    return bits, m


def behaviour_ids(ids: object) -> list[str]:
    """Behaviour ids of data/kvm-behaviours.csv (each looked up: an unknown one is a ``LookupFailed``)."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple)):
        raise InputError(f"must be a list of names, got {kind(ids)}", where="behaviour ids")
    k = kernel_profile()
    out = []
    for bid in ids:
        k.behaviour(_text(bid, "behaviour id"))
        out.append(bid)
    return out


def field_names(names: object) -> list[str]:
    """Catalog field names (each resolved: an unknown one is a ``LookupFailed``)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise InputError(f"must be a list of names, got {kind(names)}", where="fields")
    for name in names:
        catalog().resolve(_text(name, "field"))
    return list(names)


def flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"must be True or False, got {kind(value)}", where=what)
    return value


def title(value: object) -> str | None:
    return None if value is None else _text(value, "title")
