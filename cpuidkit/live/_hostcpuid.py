"""Execute the real CPUID instruction from Python, with no compiled extension.

A 27-byte x86-64 System V function is written into an anonymous page, the
page is made read+execute (never writable and executable at once), and the
function is called through ``ctypes.CFUNCTYPE``.  The page is created on first
use and kept for the life of the process.

Machine code (``void f(uint32_t leaf, uint32_t subleaf, uint32_t out[4])``)::

    53              push rbx              ; rbx is callee-saved, CPUID writes it
    89 f8           mov  eax, edi         ; leaf
    89 f1           mov  ecx, esi         ; subleaf
    49 89 d0        mov  r8, rdx          ; out
    0f a2           cpuid
    41 89 00        mov  [r8], eax
    41 89 58 04     mov  [r8+4], ebx
    41 89 48 08     mov  [r8+8], ecx
    41 89 50 0c     mov  [r8+12], edx
    5b              pop  rbx
    c3              ret
"""

from __future__ import annotations

import ctypes
import os
import threading

from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX
from cpuidkit.core.indexed import function_is_indexed
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.live._explain import errno_name

_CODE = bytes.fromhex("53 89f8 89f1 4989d0 0fa2 418900 41895804 41894808 4189500c 5b c3".replace(" ", ""))

_PROT_READ, _PROT_WRITE, _PROT_EXEC = 1, 2, 4
_MAP_PRIVATE, _MAP_ANONYMOUS = 0x02, 0x20
_MAP_FAILED = ctypes.c_void_p(-1).value

_lock = threading.Lock()
_func = None
_CPUID_FN = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32 * 4))


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.restype = ctypes.c_int
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def _fail(what: str, err: int) -> KvmError:
    name = errno_name(err)
    return KvmError(
        name,
        f"could not prepare the CPUID helper page: {what} failed ({os.strerror(err)}); "
        "a policy that forbids executable anonymous memory (SELinux execmem, a seccomp filter) can cause this",
        operation="host_cpuid",
    )


def _load():
    global _func
    with _lock:
        if _func is not None:
            return _func
        machine = os.uname().machine
        if machine != "x86_64":
            raise KvmError(
                "ENOEXEC", f"the CPUID instruction needs an x86-64 host, this is {machine}", operation="host_cpuid"
            )
        libc = _libc()
        size = max(4096, os.sysconf("SC_PAGE_SIZE"))
        addr = libc.mmap(None, size, _PROT_READ | _PROT_WRITE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
        if addr is None or addr == _MAP_FAILED:
            raise _fail("mmap", ctypes.get_errno())
        ctypes.memmove(addr, _CODE, len(_CODE))
        if libc.mprotect(addr, size, _PROT_READ | _PROT_EXEC) != 0:
            err = ctypes.get_errno()
            libc.munmap(addr, size)
            raise _fail("mprotect(PROT_READ|PROT_EXEC)", err)
        _func = _CPUID_FN(addr)
        return _func


def host_cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """``(eax, ebx, ecx, edx)`` of the CPUID instruction on this CPU."""
    if not (0 <= leaf <= 0xFFFF_FFFF and 0 <= subleaf <= 0xFFFF_FFFF):
        raise ValueError("leaf and subleaf must be unsigned 32-bit integers")
    fn = _load()
    out = (ctypes.c_uint32 * 4)()
    fn(leaf, subleaf, ctypes.byref(out))
    return out[0], out[1], out[2], out[3]


# -- walking the whole table ----------------------------------------------------


def _entry(leaf: int, sub: int, indexed: bool) -> CpuidEntry:
    a, b, c, d = host_cpuid(leaf, sub)
    return CpuidEntry(leaf, sub if indexed else 0, FLAG_SIGNIFICANT_INDEX if indexed else 0, a, b, c, d)


def _subleaves(leaf: int) -> list[CpuidEntry]:
    """The subleaves of an indexed leaf, following each leaf's own enumeration rule."""
    first = _entry(leaf, 0, True)
    out = [first]

    def until(stop, start=1, limit=64):
        # read subleaves until one matches ``stop``; that terminator is kept,
        # as KVM_GET_SUPPORTED_CPUID and `cpuid -r` do
        for i in range(start, limit):
            e = _entry(leaf, i, True)
            out.append(e)
            if stop(e):
                break

    if leaf in (0x4, 0x8000001D):  # cache descriptors: until cache type (EAX[4:0]) is 0
        if first.eax & 0x1F:
            until(lambda e: not e.eax & 0x1F)
    elif leaf in (0xB, 0x1F):  # topology levels: until level type (ECX[15:8]) is 0
        if first.ecx & 0xFF00:
            until(lambda e: not e.ecx & 0xFF00)
    elif leaf == 0xD:  # xstate components: 1..63 where anything is non-zero
        out.append(_entry(leaf, 1, True))
        for i in range(2, 64):
            e = _entry(leaf, i, True)
            if e.eax or e.ebx or e.ecx or e.edx:
                out.append(e)
    elif leaf == 0xF:  # RDT monitoring: subleaf per resource bit in 0xF.0 EDX
        out += [_entry(leaf, i, True) for i in range(1, 32) if first.edx >> i & 1]
    elif leaf == 0x10:  # RDT allocation: subleaf per resource bit in 0x10.0 EBX
        out += [_entry(leaf, i, True) for i in range(1, 32) if first.ebx >> i & 1]
    elif leaf == 0x12:  # SGX: 0, 1, then EPC sections until an invalid one
        out.append(_entry(leaf, 1, True))
        until(lambda e: not e.eax & 0xF, start=2)
    else:  # 7, 0x14, 0x17, 0x18, 0x1D, 0x1E, 0x24: the last subleaf is in EAX of subleaf 0
        last = min(first.eax, 63)
        out += [_entry(leaf, i, True) for i in range(1, last + 1)]
    return out


def _walk(base: int, last: int, table: list[CpuidEntry]) -> None:
    for leaf in range(base, last + 1):
        if function_is_indexed(leaf):
            table.extend(_subleaves(leaf))
        else:
            table.append(_entry(leaf, 0, False))


def host_cpuid_table() -> CpuidTable:
    """Every leaf the CPU reports, listed the way ``cpuid -r`` lists them.

    Basic leaves 0..max, the hypervisor range 0x40000000..max (when
    1.ECX[31] says a hypervisor is present) and extended 0x80000000..max;
    indexed leaves with their subleaves and ``flags=1`` (significant index).
    """
    entries: list[CpuidEntry] = []
    max_basic = host_cpuid(0)[0]
    _walk(0, min(max_basic, 0xFF), entries)
    if max_basic >= 1 and host_cpuid(1)[2] >> 31 & 1:
        max_hv = host_cpuid(0x4000_0000)[0]
        if 0x4000_0000 <= max_hv <= 0x4000_00FF:
            _walk(0x4000_0000, max_hv, entries)
    max_ext = host_cpuid(0x8000_0000)[0]
    if 0x8000_0000 <= max_ext <= 0x8000_00FF:
        _walk(0x8000_0000, max_ext, entries)
    return CpuidTable(entries, source="host CPUID")
