"""Thin wrappers over libc (ioctl, mmap, arch_prctl) and facts about the host kernel.

Everything is loaded lazily, so importing :mod:`cpuidkit.live` costs no system call.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from functools import cache

from cpuidkit.errors import KvmUnavailable
from cpuidkit.live import _abi
from cpuidkit.live._explain import kvm_error

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS = 0x01, 0x02, 0x20
MAP_FAILED = ctypes.c_void_p(-1).value


@cache
def libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.ioctl.restype = ctypes.c_int
    lib.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    lib.munmap.restype = ctypes.c_int
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.syscall.restype = ctypes.c_long
    lib.syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_ulong]
    return lib


def ioctl(
    fd: int,
    request: int,
    arg=0,
    *,
    operation: str | None = None,
    detail: str | None = None,
    key: str | None = None,
) -> int:
    """``ioctl(fd, request, arg)``; ``arg`` is an int or a ctypes object (passed by address).

    Raises :class:`KvmError` named after the errno; EINTR is returned as ``-EINTR``
    only for KVM_RUN (the caller decides), every other failure raises.
    """
    if isinstance(arg, int):
        ptr = arg
    else:
        ptr = ctypes.addressof(arg)
    ret = libc().ioctl(fd, request, ptr)
    if ret < 0:
        err = ctypes.get_errno()
        op = operation or _abi.IOCTL_NAMES.get(request, f"ioctl {request:#x}")
        if request == _abi.KVM_RUN and err == _errno.EINTR:
            return -err
        raise kvm_error(err, op, detail, key=key)
    return ret


def ioctl_errno(fd: int, request: int, arg) -> int:
    """``ioctl(fd, request, &arg)`` returning 0 or the errno, for callers that build their own error."""
    if libc().ioctl(fd, request, ctypes.addressof(arg)) < 0:
        return ctypes.get_errno() or _errno.EIO
    return 0


def mmap(length: int, prot: int, flags: int, fd: int = -1, operation: str = "mmap") -> int:
    addr = libc().mmap(None, length, prot, flags, fd, 0)
    if addr is None or addr == MAP_FAILED:
        raise kvm_error(ctypes.get_errno(), operation, f"mmap of {length} bytes failed")
    return addr


def munmap(addr: int, length: int) -> None:
    libc().munmap(addr, length)


def arch_prctl(code: int, arg: int, operation: str) -> int:
    ret = libc().syscall(_abi.SYS_arch_prctl, code, arg)
    if ret < 0:
        raise kvm_error(ctypes.get_errno(), operation)
    return ret


def open_device(device: str) -> int:
    """Open the KVM device read-write (close-on-exec); :class:`KvmUnavailable` when that fails."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise kvm_error(e.errno or _errno.EIO, "open", f"cannot open {device}", cls=KvmUnavailable) from None
    try:
        version = ioctl(fd, _abi.KVM_GET_API_VERSION)
    except BaseException as e:  # KeyboardInterrupt too: never leak the fd
        os.close(fd)
        if not isinstance(e, Exception):
            raise
        raise KvmUnavailable(
            getattr(e, "errno_name", "ENOTTY"),
            f"{device} is not a KVM device (KVM_GET_API_VERSION failed)",
            operation="KVM_GET_API_VERSION",
        ) from None
    if version != _abi.KVM_API_VERSION:
        os.close(fd)
        raise KvmUnavailable(
            "EINVAL",
            f"{device} speaks KVM API version {version}, cpuidkit needs {_abi.KVM_API_VERSION}",
            operation="KVM_GET_API_VERSION",
        )
    return fd


# -- host facts -------------------------------------------------------------------


def kernel_version() -> str:
    """The running kernel's ``X.Y`` (from ``os.uname().release``)."""
    release = os.uname().release
    parts = release.split("-", 1)[0].split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else release


_VENDOR_MODULES = {"kvm_intel": "vmx", "kvm_amd": "svm", "kvm_pvm": "pvm"}


def loaded_vendor_modules(sys_module: str = "/sys/module") -> list[str]:
    """KVM vendor modules present under /sys/module (built in or loaded)."""
    return [m for m in _VENDOR_MODULES if os.path.isdir(os.path.join(sys_module, m))]


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _module_in_use(module: str, sys_module: str) -> bool | None:
    try:
        with open(os.path.join(sys_module, module, "refcnt")) as f:
            return int(f.read().strip() or 0) > 0
    except (OSError, ValueError):
        return None


def detect_vendor(sys_module: str = "/sys/module") -> tuple[str | None, str | None, str]:
    """``(vendor, module, note)``: which vendor module KVM uses and why we think so.

    ``vendor`` is ``"vmx"``, ``"svm"``, ``"pvm"`` or None; ``note`` explains the
    choice when more than one vendor module is present.
    """
    present = loaded_vendor_modules(sys_module)
    if not present:
        return None, None, "no KVM vendor module (kvm_intel, kvm_amd, kvm_pvm) under /sys/module"
    if len(present) == 1:
        return _VENDOR_MODULES[present[0]], present[0], f"{present[0]} is the only KVM vendor module"
    # Several: drop hardware modules whose CPU feature is absent, then prefer one in use.
    flags = _cpu_flags()
    usable = [
        m
        for m in present
        if not (m == "kvm_intel" and "vmx" not in flags) and not (m == "kvm_amd" and "svm" not in flags)
    ]
    in_use = [m for m in usable if _module_in_use(m, sys_module)]
    choice_list = in_use or usable or present
    # kvm_pvm is the one that works without hardware virtualization (nested in a VM)
    chosen = choice_list[0] if len(choice_list) == 1 else ("kvm_pvm" if "kvm_pvm" in choice_list else choice_list[0])
    note = f"several vendor modules present ({', '.join(present)}); using {chosen}" + (
        " (the others lack their CPU feature or are not in use)" if len(choice_list) == 1 else " (guessed)"
    )
    return _VENDOR_MODULES[chosen], chosen, note
