"""Turn a failed ioctl (or syscall) into a :class:`KvmError` a user can act on.

The explanation says what the kernel most likely objected to and what to do
about it.  Where the caller can pass more context (the table that was being
set, whether the vCPU has run), the explanation is narrowed down.
"""

from __future__ import annotations

import errno as _errno
import os

from cpuidkit.errors import KvmError

# (operation, errno name) -> explanation; the operation may be None for a
# fallback that applies to every operation.
_EXPLANATIONS: dict[tuple[str | None, str], str] = {
    # KVM_SET_CPUID2 -- arch/x86/kvm/cpuid.c kvm_vcpu_ioctl_set_cpuid2 / kvm_set_cpuid
    ("KVM_SET_CPUID2", "E2BIG"): (
        "the table has more than 256 entries (KVM_MAX_CPUID_ENTRIES); drop leaves or subleaves you do not need"
    ),
    ("KVM_SET_CPUID2", "EINVAL"): (
        "KVM rejected the table: either a check in kvm_check_cpuid() failed (0x80000008 EAX[15:8], the "
        "linear-address width, must be 0, 48 or 57), or the vCPU has already run (KVM_RUN) and the table "
        "differs from the current one -- after KVM_RUN only an identical table is accepted, so re-send "
        "what get_cpuid() returns"
    ),
    ("KVM_SET_CPUID2", "EPERM"): (
        "0xD.0 enables a dynamic XSAVE feature (AMX TILEDATA, EAX bit 18) without "
        "arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM); call grant_xfeature_permission(1 << 18) before creating "
        "any vCPU in this process, or clear 0xD.0 EAX bit 18"
    ),
    (
        "KVM_SET_CPUID2",
        "ENOMEM",
    ): "the kernel could not allocate memory for the CPUID table; free memory or close other VMs and retry",
    (
        "KVM_SET_CPUID2",
        "EFAULT",
    ): "the entries buffer could not be read (a cpuidkit bug: the header's nent is larger than the buffer)",
    # KVM_GET_CPUID2 / KVM_GET_SUPPORTED_CPUID
    ("KVM_GET_CPUID2", "E2BIG"): (
        "the vCPU holds more entries than the buffer passed has room for; pass a buffer of 256 entries "
        "(KVM_MAX_CPUID_ENTRIES), as get_cpuid() does"
    ),
    ("KVM_GET_SUPPORTED_CPUID", "E2BIG"): (
        "KVM supports more CPUID entries than the buffer passed has room for; pass a larger buffer "
        "(cpuidkit passes 256, KVM_MAX_CPUID_ENTRIES)"
    ),
    (
        "KVM_GET_SUPPORTED_CPUID",
        "ENOMEM",
    ): "the kernel could not allocate memory to build the supported table; free memory and retry",
    # KVM_SET_SREGS -- kvm_is_valid_sregs / kvm_is_valid_cr4
    ("KVM_SET_SREGS", "EINVAL"): (
        "KVM rejected the special registers: CR4 has a bit this vCPU may not set (reserved, LA57, PCIDE "
        "outside long mode, CET without CR0.WP, or a feature bit its CPUID does not allow), or CR0/EFER are inconsistent"
    ),
    # KVM_SET_XCRS -- __kvm_set_xcr
    ("KVM_SET_XCRS", "EINVAL"): (
        "XCR0 is invalid for this vCPU: bit 0 (x87) must be set, AVX needs SSE, AVX-512 needs all three of "
        "its bits plus AVX, MPX needs both bits, AMX needs both tile bits, supervisor bits are not allowed, "
        "and every bit must be in the guest's 0xD.0 EDX:EAX -- set the CPUID (with leaf 0xD) before XCR0"
    ),
    # KVM_SET_MSRS / KVM_GET_MSRS return the count processed; see vcpu.py
    # KVM_ENABLE_CAP
    ("KVM_CAP_X86_DISABLE_EXITS", "EINVAL"): (
        "KVM only lets a VM disable exits before its first vCPU is created, and only for the bits "
        "KVM_CHECK_EXTENSION(KVM_CAP_X86_DISABLE_EXITS) reports; create a new LiveVcpu and call "
        "disable_hlt_exits() before any vCPU-level call"
    ),
    ("KVM_CAP_DISABLE_QUIRKS2", "EINVAL"): (
        "the quirk is not in the mask KVM_CHECK_EXTENSION(KVM_CAP_DISABLE_QUIRKS2) reports for this kernel"
    ),
    # arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM) -- arch/x86/kernel/fpu/xstate.c
    ("ARCH_REQ_XCOMP_GUEST_PERM", "EOPNOTSUPP"): (
        "the host cannot grant this XSAVE feature to guests: it is not a dynamic (permission-gated) "
        "feature, or the host CPU/kernel does not support it (see ARCH_GET_XCOMP_SUPP)"
    ),
    ("ARCH_REQ_XCOMP_GUEST_PERM", "EBUSY"): (
        "guest XSAVE permissions are locked once this process has created a vCPU; request them in a "
        "fresh process before any vCPU exists"
    ),
    ("ARCH_REQ_XCOMP_GUEST_PERM", "EINVAL"): "the feature number is not a valid XSAVE component of this host",
    ("ARCH_REQ_XCOMP_GUEST_PERM", "E2BIG"): (
        "the signal stack (sigaltstack) is too small for the larger XSAVE area this permission would need"
    ),
    ("ARCH_REQ_XCOMP_GUEST_PERM", "ENOMEM"): "the kernel could not allocate the larger XSAVE buffer",
    # device
    ("open", "ENOENT"): (
        "the device does not exist: KVM is not built in or its module is not loaded; load kvm_intel or "
        "kvm_amd (modprobe) and enable virtualization in the firmware, or use SimulatedVcpu"
    ),
    (
        "open",
        "EACCES",
    ): "this user may not open the device read-write: add the user to its group (usually 'kvm') or run as root",
    ("open", "EPERM"): "the device may not be opened by this process (a sandbox or seccomp policy forbids it)",
    (
        "open",
        "ENXIO",
    ): "the KVM device has no driver behind it: the vendor module (kvm_intel, kvm_amd, kvm_pvm) is not loaded",
    (
        "open",
        "ENODEV",
    ): "the KVM device has no driver behind it: the vendor module (kvm_intel, kvm_amd, kvm_pvm) is not loaded",
    (
        "KVM_CREATE_VM",
        "ENOMEM",
    ): "the kernel could not allocate a new VM; close other VMs (or LiveVcpu objects) or free memory",
    ("KVM_CREATE_VM", "EINVAL"): "the VM type is not supported by this kernel",
    ("KVM_CREATE_VCPU", "EEXIST"): "a vCPU with this id already exists in the VM",
    (
        "KVM_CREATE_VCPU",
        "ENOMEM",
    ): "the kernel could not allocate a new vCPU; close other VMs (or LiveVcpu objects) or free memory",
    ("mmap(guest memory)", "ENOMEM"): (
        "the process may not map more memory: its address-space limit (ulimit -v) is reached or the host "
        "is out of memory; raise the limit or free memory"
    ),
    ("mmap(vcpu fd)", "ENOMEM"): (
        "the process may not map the vCPU's kvm_run page: its address-space limit (ulimit -v) is reached or "
        "the host is out of memory; raise the limit or free memory"
    ),
    ("KVM_SET_USER_MEMORY_REGION", "EINVAL"): "the memory slot is misaligned or overlaps another slot",
    ("KVM_SET_USER_MEMORY_REGION", "EEXIST"): "the memory slot overlaps an existing one",
    # fallbacks
    (None, "ENOENT"): (
        "the kernel does not know the object or attribute asked for on this host; check that this kernel "
        "has it (KVM_CHECK_EXTENSION, or a newer kernel) before asking for it"
    ),
    (None, "EACCES"): (
        "permission denied by the kernel; add the user to the KVM device's group (usually 'kvm') or run as root"
    ),
    (None, "EPERM"): "the kernel does not permit this operation for this process",
    (None, "EBUSY"): (
        "the state is already in use or locked: KVM takes settings like this one only before the VM's first "
        "vCPU is created (or before it runs); make the call on a new LiveVcpu before any vCPU-level call"
    ),
    (None, "ENOMEM"): "the kernel ran out of memory for this request; close other VMs or free memory, then retry",
    (None, "E2BIG"): (
        "the request is larger than the kernel allows; send less (KVM takes at most 256 CPUID entries) "
        "or a buffer of the size the kernel reports"
    ),
    (None, "EINVAL"): "the kernel rejected the arguments as invalid for this vCPU/VM in its current state",
    (None, "EOPNOTSUPP"): "this kernel or CPU does not support the operation",
    (None, "ENOTTY"): "this kernel does not implement this ioctl",
    (None, "EFAULT"): "the kernel could not read or write the buffer passed (a cpuidkit bug)",
    (None, "EBADF"): "the file descriptor is closed",
    (None, "EINTR"): "interrupted by a signal",
    (None, "ENXIO"): "the KVM attribute or device asked for does not exist on this host",
}


# errno.errorcode names 95 "ENOTSUP", a userspace alias; the kernel (and KVM's
# documentation) call it EOPNOTSUPP.
_CANONICAL = {_errno.EOPNOTSUPP: "EOPNOTSUPP"}


def errno_name(err: int) -> str:
    return _CANONICAL.get(err) or _errno.errorcode.get(err, f"E{err}")


def explanation(operation: str | None, name: str) -> str:
    text = _EXPLANATIONS.get((operation, name)) or _EXPLANATIONS.get((None, name))
    if text is None:
        code = getattr(_errno, name, None)
        text = os.strerror(code) if isinstance(code, int) else "the kernel returned an unexpected error"
    return text


def kvm_error(
    err: int,
    operation: str,
    detail: str | None = None,
    *,
    explain: str | None = None,
    key: str | None = None,
    source: str | None = None,
    cls: type[KvmError] = KvmError,
) -> KvmError:
    """A :class:`KvmError` for ``errno`` ``err`` from ``operation``.

    ``explain`` replaces the stock explanation, ``key`` picks the stock one of
    another operation (e.g. a capability name for KVM_ENABLE_CAP); ``detail``
    is prepended to it (what exactly was being done).
    """
    name = errno_name(err)
    text = explain or explanation(key or operation, name)
    if detail:
        text = f"{detail}: {text}"
    return cls(name, text, operation=operation, source=source)
