"""What this host's KVM offers, asked through /dev/kvm (each helper opens what it needs and closes it)."""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.live import _abi
from cpuidkit.live._sys import arch_prctl, detect_vendor, ioctl, kernel_version, open_device
from cpuidkit.live.vcpu import LiveVcpu, _read_cpuid2


def kvm_available(device: str = "/dev/kvm") -> tuple[bool, str]:
    """``(True, description)`` if ``device`` opens and speaks KVM API 12, else ``(False, reason)``."""

    try:
        with _system_fd(device):
            pass
    except KvmError as e:
        return False, str(e)
    vendor, module, note = detect_vendor()
    return True, f"{device} usable (KVM API 12, kernel {kernel_version()}, vendor {vendor or 'unknown'}: {note})"


def vendor_module() -> str:
    """The KVM vendor module in use: ``"kvm_intel"``, ``"kvm_amd"``, ``"kvm_pvm"`` (or ``""`` if none)."""

    return detect_vendor()[1] or ""


@contextmanager
def _system_fd(device: str):

    fd = open_device(device)
    try:
        yield fd
    finally:
        os.close(fd)


def supported_cpuid(device: str = "/dev/kvm") -> CpuidTable:
    """KVM_GET_SUPPORTED_CPUID of this host (asked on the system fd; no VM is created)."""

    with _system_fd(device) as fd:
        return _read_cpuid2(fd, _abi.KVM_GET_SUPPORTED_CPUID, _abi.KVM_MAX_CPUID_ENTRIES, "KVM_GET_SUPPORTED_CPUID")


def kvm_capabilities(device: str = "/dev/kvm") -> dict[str, int | None]:
    """A handful of KVM_CHECK_EXTENSION answers (asked on a VM fd).

    Values are what the kernel returns (0: not supported), e.g. the byte size
    of the guest XSAVE area for ``KVM_CAP_XSAVE2`` and a bit mask for
    ``KVM_CAP_DISABLE_QUIRKS2`` / ``KVM_CAP_X86_DISABLE_EXITS``.
    """

    names = (
        "KVM_CAP_XSAVE",
        "KVM_CAP_XCRS",
        "KVM_CAP_XSAVE2",
        "KVM_CAP_DISABLE_QUIRKS2",
        "KVM_CAP_X86_DISABLE_EXITS",
        "KVM_CAP_SMALLER_MAXPHYADDR",
        "KVM_CAP_VM_GPA_BITS",
        "KVM_CAP_SYS_ATTRIBUTES",
        "KVM_CAP_VM_TYPES",
        "KVM_CAP_NR_VCPUS",
        "KVM_CAP_MAX_VCPUS",
        "KVM_CAP_MAX_VCPU_ID",
    )
    with LiveVcpu(device) as v:
        return {name: v.check_extension(getattr(_abi, name)) for name in names}


def xfeature_permissions(device: str | None = "/dev/kvm") -> dict[str, int | None]:
    """XSAVE feature masks of this process and host.

    ``supported``: arch_prctl(ARCH_GET_XCOMP_SUPP), the features the host kernel manages;
    ``process``: ARCH_GET_XCOMP_PERM, what this process may use;
    ``guest``: ARCH_GET_XCOMP_GUEST_PERM, what this process's vCPUs may be given;
    ``kvm_guest_supp``: KVM_GET_DEVICE_ATTR(KVM_X86_XCOMP_GUEST_SUPP) on the
    system fd (None if the device or the attribute is unavailable).
    """

    out: dict[str, int | None] = {}
    for key, code, op in (
        ("supported", _abi.ARCH_GET_XCOMP_SUPP, "ARCH_GET_XCOMP_SUPP"),
        ("process", _abi.ARCH_GET_XCOMP_PERM, "ARCH_GET_XCOMP_PERM"),
        ("guest", _abi.ARCH_GET_XCOMP_GUEST_PERM, "ARCH_GET_XCOMP_GUEST_PERM"),
    ):
        value = ctypes.c_uint64(0)
        try:
            arch_prctl(code, ctypes.addressof(value), op)
            out[key] = value.value
        except KvmError:
            out[key] = None
    out["kvm_guest_supp"] = None
    if device:
        try:
            with _system_fd(device) as fd:
                value = ctypes.c_uint64(0)
                attr = _abi.kvm_device_attr(
                    flags=0,
                    group=_abi.KVM_X86_GRP_SYSTEM,
                    attr=_abi.KVM_X86_XCOMP_GUEST_SUPP,
                    addr=ctypes.addressof(value),
                )
                ioctl(fd, _abi.KVM_GET_DEVICE_ATTR, attr)
                out["kvm_guest_supp"] = value.value
        except KvmError:
            pass
    return out
