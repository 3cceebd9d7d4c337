"""A Linux ``/proc/cpuinfo``: rebuilds the CPUID bits Linux names.

Only the first processor block is read.  The result is partial by nature:
each flag Linux prints and the catalog places is set; vendor, family, model,
stepping and the address sizes fill leaves 0, 1 and 0x80000008.  Flags Linux
synthesises (``constant_tsc``, ``rep_good``…) have no CPUID bit and are left out.
"""

from __future__ import annotations

import re

from cpuidkit.core.catalog import catalog
from cpuidkit.core.sources._common import shorten, small_int
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import InputError

_ADDR = re.compile(r"(?P<phys>\d+) bits physical, (?P<virt>\d+) bits virtual")


def looks_like(head: str) -> bool:
    return bool(re.search(r"^processor\s*:", head, re.M)) and "vendor_id" in head


def _block(text: str, source: str | None) -> dict[str, tuple[int, str]]:
    info: dict[str, tuple[int, str]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if info:
                break
            continue
        key, colon, value = line.partition(":")  # not a regular expression: linear on any line
        if not colon or not key:
            raise InputError(f"expected `key : value`, got {shorten(line)}", source=source, where=f"line {lineno}")
        info.setdefault(key.strip(), (lineno, value.strip()))
    return info


def _int(info, key, source, limit: int = 0xFFFF) -> int:
    lineno, val = info[key]
    try:
        n = int(val, 0) if len(val) <= 20 else None
    except ValueError:
        n = None
    if n is None or not 0 <= n <= limit:
        raise InputError(
            f"{key!r} must be a number from 0 to {limit}, got {shorten(val)}", source=source, where=f"line {lineno}"
        )
    return n


def parse(text: str, source: str | None) -> list[CpuidEntry]:
    info = _block(text, source)
    for key in ("vendor_id", "flags"):
        if key not in info:
            raise InputError(f"no {key!r} line in the first processor block", source=source)
    vendor = info["vendor_id"][1]
    if len(vendor) != 12 or not vendor.isascii():
        raise InputError(
            f"vendor_id must be 12 ASCII characters, got {shorten(vendor)}",
            source=source,
            where=f"line {info['vendor_id'][0]}",
        )
    raw = vendor.encode("ascii")
    ebx, edx, ecx = (int.from_bytes(raw[i : i + 4], "little") for i in (0, 4, 8))
    table = CpuidTable([CpuidEntry(0, 0, 0, 0, ebx, ecx, edx)], source=source)
    if {"cpu family", "model", "stepping"} <= set(info):
        # the largest values leaf 1 EAX can encode: family 0xF + 0xFF (extended), model 0xFF, stepping 0xF
        fam, model, step = (
            _int(info, k, source, limit) for k, limit in (("cpu family", 0x10E), ("model", 0xFF), ("stepping", 0xF))
        )
        base_fam, ext_fam = (fam, 0) if fam < 0xF else (0xF, fam - 0xF)
        eax = (
            step & 0xF
            | (model & 0xF) << 4
            | (base_fam & 0xF) << 8
            | ((model >> 4) & 0xF) << 16
            | (ext_fam & 0xFF) << 20
        )
        table = table.with_entry(CpuidEntry(1, eax=eax))
    cat = catalog()
    for name in info["flags"][1].split():
        fields = [f for f in cat.by_name(name) if f.is_flag]
        if fields:
            table = table.set_field(fields[0].ref, 1)
    if "address sizes" in info:
        lineno, text = info["address sizes"]
        m = _ADDR.search(text)
        if m:
            where = f"line {lineno}"
            phys = small_int(m["phys"], what="physical address width", where=where, source=source, limit=0xFF)
            virt = small_int(m["virt"], what="virtual address width", where=where, source=source, limit=0xFF)
            table = table.set_field("0x80000008.0.eax[7:0]", phys)
            table = table.set_field("0x80000008.0.eax[15:8]", virt)
    basic = max((e.function for e in table if e.function < 0x40000000), default=0)
    ext = max((e.function for e in table if e.function >= 0x80000000), default=None)
    table = table.set_field("0x0.0.eax", basic)
    if ext is not None:
        table = table.set_field("0x80000000.0.eax", ext)
    return list(table.sorted())
