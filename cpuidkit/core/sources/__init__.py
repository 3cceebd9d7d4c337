"""Reading and writing CPUID tables in the formats people bring.

=================  =========================================================  ======
format             what it is                                                 write
=================  =========================================================  ======
``kvm-json``       a list of kvm_cpuid_entry2 objects, or ``{"entries": …}``  yes
``cpuid-raw``      Todd Allen's ``cpuid -r`` / ``cpuid -1r`` output            yes
``libvirt-xml``    libvirt cputestdata ``<cpudata>`` (parsed with defusedxml)  no
``firecracker``    a Firecracker CPU fingerprint or custom CPU template JSON  no
``libcpuid``       libcpuid ``cpuid_tool`` raw dump (``CPUID 00000000: …``)    no
``proc-cpuinfo``   a Linux ``/proc/cpuinfo`` (flags, vendor, family, widths)  no
=================  =========================================================  ======

The format is detected from the content (the file name is only a tie-break).
Every failure is an :class:`cpuidkit.InputError` naming the file, the line or
entry, and what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path

from cpuidkit._files import MAX_INPUT_BYTES, atomic_write_text, decode_text, display_name, read_input_bytes
from cpuidkit.core.sources import cpuid_raw, firecracker, kvm_json, libcpuid, libvirt, proc_cpuinfo
from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import InputError

__all__ = ["FORMATS", "WRITABLE", "detect_format", "load", "loads", "loads_bytes", "dumps", "save"]

FORMATS = ("kvm-json", "cpuid-raw", "libvirt-xml", "firecracker", "libcpuid", "proc-cpuinfo")
WRITABLE = ("kvm-json", "cpuid-raw")


def detect_format(text: str, name: str | None = None) -> str:
    """The format of ``text`` (see the module table); InputError if none fits."""
    head = text.lstrip("\ufeff \t\r\n")[:4096]
    if head.startswith("<"):
        return "libvirt-xml"
    if head.startswith("{") or head.startswith("["):
        # Firecracker JSON has these keys near the top; KVM JSON never does.
        if '"cpuid_modifiers"' in text or '"guest_cpu_config"' in text:
            return "firecracker"
        return "kvm-json"

    if cpuid_raw.looks_like(head):
        return "cpuid-raw"
    if libcpuid.looks_like(head):
        return "libcpuid"
    if proc_cpuinfo.looks_like(head):
        return "proc-cpuinfo"
    raise InputError(
        "cannot tell the format: expected KVM JSON, `cpuid -r` output, libvirt <cpudata> XML, "
        "a Firecracker fingerprint/template, a libcpuid dump or /proc/cpuinfo",
        source=name,
    )


def loads(text: str, *, source: str | None = None, cpu: int | None = None, format: str | None = None) -> CpuidTable:
    """Parse ``text`` into a table. ``cpu`` picks one CPU in multi-CPU dumps (default: the first)."""
    if not isinstance(text, str):
        raise InputError(f"expected text, got {type(text).__name__}", source=source)
    if len(text) > MAX_INPUT_BYTES:
        raise InputError(f"input is {len(text)} characters; the limit is {MAX_INPUT_BYTES} (16 MiB)", source=source)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(
            f"not valid Unicode text: an unpaired surrogate at character {e.start}", source=source
        ) from None
    fmt = format or detect_format(text, source)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {str(fmt)[:40]!r}; expected one of {', '.join(FORMATS)}", source=source)
    if cpu is not None and fmt not in ("cpuid-raw", "libcpuid"):
        raise InputError(f"--cpu only applies to multi-CPU dumps (cpuid -r, libcpuid), not {fmt}", source=source)

    parser = {
        "kvm-json": kvm_json.parse,
        "cpuid-raw": cpuid_raw.parse,
        "libvirt-xml": libvirt.parse,
        "firecracker": firecracker.parse,
        "libcpuid": libcpuid.parse,
        "proc-cpuinfo": proc_cpuinfo.parse,
    }[fmt]
    kwargs = {"cpu": cpu} if fmt in ("cpuid-raw", "libcpuid") else {}
    entries = parser(text, source, **kwargs)
    return CpuidTable(entries, source=source)


def loads_bytes(
    data: bytes, *, source: str | None = None, cpu: int | None = None, format: str | None = None
) -> CpuidTable:
    """Parse the bytes of a file: UTF-8 text without NUL bytes, at most 16 MiB (what :func:`load` reads)."""
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"file is {len(data)} bytes; the limit is {MAX_INPUT_BYTES} (16 MiB)", source=source)
    text = decode_text(data, source)
    return loads(text, source=source, cpu=cpu, format=format)


def load(path: str | os.PathLike, *, cpu: int | None = None, format: str | None = None) -> CpuidTable:
    """Read a table from a file (format detected from its content).

    Read through the one hardened reader (:func:`cpuidkit._files.read_input_bytes`): regular files only
    (``/proc`` files included), at most 16 MiB; every failure is an :class:`InputError` naming the file.
    """
    return loads_bytes(read_input_bytes(path), source=display_name(path), cpu=cpu, format=format)


def dumps(table: CpuidTable, format: str = "kvm-json") -> str:
    """Serialise ``table`` in a writable format (``kvm-json`` or ``cpuid-raw``)."""
    if format == "kvm-json":
        return kvm_json.dump(table)
    if format == "cpuid-raw":
        return cpuid_raw.dump(table)
    raise InputError(f"cannot write format {format!r}; writable formats: {', '.join(WRITABLE)}")


def save(table: CpuidTable, path: str | os.PathLike, format: str = "kvm-json") -> Path:
    """Write ``table`` to ``path`` atomically (old file intact if anything fails)."""
    return atomic_write_text(path, dumps(table, format))
