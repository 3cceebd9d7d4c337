"""``LiveVcpu``: the :class:`~cpuidkit.kvm.interface.Vcpu` protocol on a real /dev/kvm.

One object owns one VM with (at most) one vCPU::

    with LiveVcpu() as v:
        v.set_cpuid(v.supported_cpuid())
        table = v.get_cpuid()        # what KVM made of it
        v.run()                      # a real-mode guest that executes HLT

The VM is created by the constructor; the vCPU on the first vCPU-level call,
so VM-wide settings that KVM only accepts before any vCPU exists
(``disable_hlt_exits()``) can still be made.  Every failed ioctl raises
:class:`~cpuidkit.KvmError` carrying the errno name and an explanation.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import signal
import struct
import threading
import time

from cpuidkit.core.addresses import linear_width_of
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import InputError, KvmError
from cpuidkit.kvm.interface import QUIRKS
from cpuidkit.live import _abi
from cpuidkit.live._explain import errno_name, kvm_error
from cpuidkit.live._sys import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    arch_prctl,
    detect_vendor,
    ioctl,
    ioctl_errno,
    kernel_version,
    mmap,
    munmap,
    open_device,
)

__all__ = ["LiveVcpu"]

GUEST_MEM_SIZE = 0x10000  # 64 KiB at GPA 0
GUEST_ENTRY = 0x1000
HLT = 0xF4
DEFAULT_RUN_TIMEOUT = 2.0  # seconds

_ENTRY = struct.Struct("<7I12x")  # struct kvm_cpuid_entry2 without its padding


def _table_from(buf, nent: int, source: str) -> CpuidTable:
    raw = memoryview(buf.entries).cast("B")[: nent * _ENTRY.size]
    return CpuidTable((CpuidEntry.trusted(*fields) for fields in _ENTRY.iter_unpack(raw)), source=source)


def _read_cpuid2(fd: int, request: int, capacity: int, source: str) -> CpuidTable:
    buf = _abi.cpuid2_buffer(capacity)()
    buf.nent = capacity
    ioctl(fd, request, buf)
    return _table_from(buf, buf.nent, source)


def _read_vcpu_cpuid2(fd: int, source: str = "KVM_GET_CPUID2") -> CpuidTable:
    """KVM_GET_CPUID2 returning exactly the entries the vCPU holds, on every kernel.

    Older kernels (Debian's 6.1 among them) set ``nent`` only on their E2BIG
    path, and the ioctl copies the header back only on success, so a
    successful call leaves ``nent`` as passed (256) and does not say how many
    entries it copied; newer kernels (6.12) write the count on success.  When
    ``nent`` comes back unchanged the count is found by bisection as the
    smallest ``nent`` the kernel accepts (it answers E2BIG exactly when
    ``nent`` is below the count): at most 9 more ioctls of a few microseconds.
    The first call already copied the entries; E2BIG probes copy nothing and
    accepted ones copy the same entries again.
    """
    capacity = _abi.KVM_MAX_CPUID_ENTRIES
    buf = _abi.cpuid2_buffer(capacity)()
    buf.nent = capacity
    ioctl(fd, _abi.KVM_GET_CPUID2, buf)
    if buf.nent != capacity:  # the kernel reported the count
        return _table_from(buf, buf.nent, source)
    lo, hi = 0, capacity  # the smallest accepted nent lies in [lo, hi]; capacity was accepted
    while lo < hi:
        mid = (lo + hi) // 2
        buf.nent = mid
        err = ioctl_errno(fd, _abi.KVM_GET_CPUID2, buf)
        if err == 0:
            hi = mid
        elif err == _errno.E2BIG:
            lo = mid + 1
        else:
            raise kvm_error(err, "KVM_GET_CPUID2", f"asking with room for {mid} entries")
    return _table_from(buf, lo, source)


class LiveVcpu:
    """A VM and one vCPU on ``device`` (``/dev/kvm``), driven by real ioctls.

    ``kernel`` is the running kernel's ``X.Y``; ``vendor`` the KVM vendor in
    use (``"vmx"``, ``"svm"`` or ``"pvm"``), ``vendor_module`` its module and
    ``vendor_note`` why that one was chosen when several are present.
    ``run_timeout`` bounds each :meth:`run` (seconds).
    """

    kernel: str
    vendor: str

    def __init__(self, device: str = "/dev/kvm", *, run_timeout: float = DEFAULT_RUN_TIMEOUT):
        self._kvm_fd = -1
        self._vm_fd = -1
        self._vcpu_fd = -1
        self._run_addr = 0
        self._run_size = 0
        self._run: _abi.kvm_run | None = None
        self._mem_addr = 0
        self._slot_ready = False
        self._closed = False
        self._has_run = False
        self._hlt_exits_disabled = False
        self.device = device
        self.run_timeout = float(run_timeout)
        self.kernel = kernel_version()
        vendor, module, note = detect_vendor()
        self.vendor = vendor or "unknown"
        self.vendor_module = module
        self.vendor_note = note
        try:
            self._kvm_fd = open_device(device)
            self._vm_fd = ioctl(self._kvm_fd, _abi.KVM_CREATE_VM, 0)
        except BaseException:
            self.close()
            raise

    # -- lifetime -------------------------------------------------------------
    def __enter__(self) -> LiveVcpu:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Close every fd and unmap all memory; calling it again does nothing."""
        self._closed = True
        self._run = None
        if self._run_addr:
            addr, self._run_addr = self._run_addr, 0
            munmap(addr, self._run_size)
        for attr in ("_vcpu_fd", "_vm_fd"):
            fd = getattr(self, attr, -1)
            if fd >= 0:
                setattr(self, attr, -1)
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self._mem_addr:  # after the VM is gone, nothing maps it any more
            addr, self._mem_addr = self._mem_addr, 0
            munmap(addr, GUEST_MEM_SIZE)
        fd = getattr(self, "_kvm_fd", -1)
        if fd >= 0:
            self._kvm_fd = -1
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def has_vcpu(self) -> bool:
        """Whether the vCPU has been created yet (it is created on first use)."""
        return self._vcpu_fd >= 0

    @property
    def has_run(self) -> bool:
        return self._has_run

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("ran" if self._has_run else ("vcpu" if self.has_vcpu else "vm"))
        return f"<LiveVcpu {self.device} kernel {self.kernel} vendor {self.vendor} ({state})>"

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise KvmError("EBADF", "this LiveVcpu is closed; create a new one", operation=operation)

    def _vm(self, operation: str) -> int:
        self._check_open(operation)
        return self._vm_fd

    def _vcpu(self, operation: str) -> int:
        self._check_open(operation)
        if self._vcpu_fd < 0:
            self._vcpu_fd = ioctl(self._vm_fd, _abi.KVM_CREATE_VCPU, 0)
        return self._vcpu_fd

    # -- CPUID ------------------------------------------------------------------
    def set_cpuid(self, table: CpuidTable) -> None:
        """KVM_SET_CPUID2 with ``table`` (sent as is, even above 256 entries: KVM decides)."""
        if not isinstance(table, CpuidTable):
            table = CpuidTable(table)
        fd = self._vcpu("KVM_SET_CPUID2")
        entries = table.entries
        buf = _abi.cpuid2_buffer(max(len(entries), 1))()
        buf.nent = len(entries)
        pack = _ENTRY.pack
        raw = b"".join([pack(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx) for e in entries])
        ctypes.memmove(ctypes.addressof(buf.entries), raw, len(raw))
        ret = ioctl_errno(fd, _abi.KVM_SET_CPUID2, buf)
        if ret:
            raise self._set_cpuid_error(ret, table)

    def _set_cpuid_error(self, err: int, table: CpuidTable) -> KvmError:
        name = errno_name(err)
        explain = None
        if name == "EINVAL":
            reasons = []
            ext8 = table.get(0x8000_0008)
            if ext8 is not None:
                width = linear_width_of(ext8)
                if width not in (0, 48, 57):
                    reasons.append(
                        f"0x80000008 EAX[15:8] (linear-address width) is {width}; KVM accepts only 0, 48 or 57"
                    )
            if self._has_run:
                reasons.append(
                    "the vCPU has already run (KVM_RUN), and after that KVM only accepts a table identical "
                    "to the one it holds; re-send get_cpuid()'s result, or create a new LiveVcpu to change the model"
                )
            if reasons:
                explain = "; ".join(reasons)
        elif name == "EPERM":
            d0 = table.get(0xD, 0)
            if d0 is not None and (d0.eax >> 18) & 1:
                explain = (
                    "0xD.0 EAX bit 18 enables a dynamic XSAVE feature (AMX TILEDATA) without "
                    "arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM): call grant_xfeature_permission(1 << 18) before any "
                    "vCPU exists in this process, or clear the bit"
                )
        return kvm_error(
            err,
            "KVM_SET_CPUID2",
            f"{len(table)} entries",
            explain=explain,
            source="arch/x86/kvm/cpuid.c kvm_vcpu_ioctl_set_cpuid2",
        )

    def get_cpuid(self) -> CpuidTable:
        """KVM_GET_CPUID2: the table the vCPU really holds (exactly its entries, see _read_vcpu_cpuid2)."""
        fd = self._vcpu("KVM_GET_CPUID2")
        return _read_vcpu_cpuid2(fd)

    def supported_cpuid(self) -> CpuidTable:
        """KVM_GET_SUPPORTED_CPUID on the system fd."""
        self._check_open("KVM_GET_SUPPORTED_CPUID")
        return _read_cpuid2(
            self._kvm_fd, _abi.KVM_GET_SUPPORTED_CPUID, _abi.KVM_MAX_CPUID_ENTRIES, "KVM_GET_SUPPORTED_CPUID"
        )

    def emulated_cpuid(self) -> CpuidTable:
        """KVM_GET_EMULATED_CPUID on the system fd."""
        self._check_open("KVM_GET_EMULATED_CPUID")
        return _read_cpuid2(
            self._kvm_fd, _abi.KVM_GET_EMULATED_CPUID, _abi.KVM_MAX_CPUID_ENTRIES, "KVM_GET_EMULATED_CPUID"
        )

    def check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION on the VM fd (0 when the capability is absent)."""
        return ioctl(self._vm("KVM_CHECK_EXTENSION"), _abi.KVM_CHECK_EXTENSION, cap)

    # -- registers ------------------------------------------------------------------
    def get_sregs(self) -> _abi.kvm_sregs:
        sregs = _abi.kvm_sregs()
        ioctl(self._vcpu("KVM_GET_SREGS"), _abi.KVM_GET_SREGS, sregs)
        return sregs

    def set_sregs(self, sregs: _abi.kvm_sregs, detail: str | None = None) -> None:
        ioctl(self._vcpu("KVM_SET_SREGS"), _abi.KVM_SET_SREGS, sregs, detail=detail)

    def get_sregs_cr4(self) -> int:
        return self.get_sregs().cr4

    def set_cr4(self, value: int) -> None:
        """KVM_GET_SREGS, replace CR4, KVM_SET_SREGS."""
        if not 0 <= value < (1 << 64):
            raise InputError(f"CR4 must be an unsigned 64-bit value, got {value:#x}", where="cr4")
        sregs = self.get_sregs()
        sregs.cr4 = value
        self.set_sregs(sregs, detail=f"CR4={value:#x}")

    def get_regs(self) -> _abi.kvm_regs:
        regs = _abi.kvm_regs()
        ioctl(self._vcpu("KVM_GET_REGS"), _abi.KVM_GET_REGS, regs)
        return regs

    def set_xcr0(self, value: int) -> None:
        """KVM_SET_XCRS with one entry: XCR0 = ``value``."""
        if not 0 <= value < (1 << 64):
            raise InputError(f"XCR0 must be an unsigned 64-bit value, got {value:#x}", where="xcr0")
        xcrs = _abi.kvm_xcrs()
        xcrs.nr_xcrs = 1
        xcrs.xcrs[0].xcr = 0
        xcrs.xcrs[0].value = value
        ioctl(self._vcpu("KVM_SET_XCRS"), _abi.KVM_SET_XCRS, xcrs, detail=f"XCR0={value:#x}")

    def get_xcr0(self) -> int:
        xcrs = _abi.kvm_xcrs()
        ioctl(self._vcpu("KVM_GET_XCRS"), _abi.KVM_GET_XCRS, xcrs)
        for i in range(min(xcrs.nr_xcrs, _abi.KVM_MAX_XCRS)):
            if xcrs.xcrs[i].xcr == 0:
                return xcrs.xcrs[i].value
        raise KvmError("ENOENT", "KVM_GET_XCRS returned no XCR0 entry", operation="KVM_GET_XCRS")

    def set_msr(self, index: int, value: int) -> None:
        """KVM_SET_MSRS (host-initiated) of one MSR."""
        if not 0 <= value < (1 << 64):
            raise InputError(f"MSR value must be unsigned 64-bit, got {value:#x}", where=f"msr {index:#x}")
        msrs = _abi.kvm_msrs_1()
        msrs.nmsrs = 1
        msrs.entries[0].index = index
        msrs.entries[0].data = value
        done = ioctl(self._vcpu("KVM_SET_MSRS"), _abi.KVM_SET_MSRS, msrs, detail=f"MSR {index:#x}={value:#x}")
        if done != 1:
            raise KvmError(
                "EINVAL",
                f"MSR {index:#x}={value:#x}: KVM wrote 0 of 1 MSRs -- it does not know this MSR, or the value "
                "has bits this vCPU does not allow (e.g. an APIC base above the guest's MAXPHYADDR, reserved bits)",
                operation="KVM_SET_MSRS",
            )

    def get_msr(self, index: int) -> int:
        msrs = _abi.kvm_msrs_1()
        msrs.nmsrs = 1
        msrs.entries[0].index = index
        done = ioctl(self._vcpu("KVM_GET_MSRS"), _abi.KVM_GET_MSRS, msrs, detail=f"MSR {index:#x}")
        if done != 1:
            raise KvmError(
                "EINVAL",
                f"MSR {index:#x}: KVM read 0 of 1 MSRs -- this vCPU does not have the MSR",
                operation="KVM_GET_MSRS",
            )
        return msrs.entries[0].data

    # -- VM-wide capabilities -------------------------------------------------------
    def _enable_cap(self, cap: int, name: str, arg0: int, detail: str) -> None:
        ec = _abi.kvm_enable_cap()
        ec.cap = cap
        ec.args[0] = arg0
        ioctl(self._vm("KVM_ENABLE_CAP"), _abi.KVM_ENABLE_CAP, ec, operation="KVM_ENABLE_CAP", detail=detail, key=name)

    def disable_quirk(self, name: str) -> None:
        """KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2) with one quirk from ``QUIRKS``."""

        key = name.upper().removeprefix("KVM_X86_QUIRK_")
        if key not in QUIRKS:
            raise InputError(f"unknown quirk {name!r}; known: {', '.join(QUIRKS)}", where="quirk")
        self._enable_cap(
            _abi.KVM_CAP_DISABLE_QUIRKS2,
            "KVM_CAP_DISABLE_QUIRKS2",
            QUIRKS[key],
            f"KVM_CAP_DISABLE_QUIRKS2 {key} ({QUIRKS[key]:#x})",
        )

    def disable_hlt_exits(self) -> None:
        """KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS, HLT) on the VM.

        KVM only accepts this before the VM's first vCPU exists; afterwards the
        kernel's own error is raised.
        """
        self._enable_cap(
            _abi.KVM_CAP_X86_DISABLE_EXITS,
            "KVM_CAP_X86_DISABLE_EXITS",
            _abi.KVM_X86_DISABLE_EXITS_HLT,
            "KVM_CAP_X86_DISABLE_EXITS HLT" + (" after the vCPU was created" if self.has_vcpu else ""),
        )
        self._hlt_exits_disabled = True

    def grant_xfeature_permission(self, mask: int) -> None:
        """arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, bit) for each set bit >= 2 of ``mask``.

        The permission is per process and must be requested before the
        process creates its first vCPU.
        """
        if mask < 0:
            raise InputError(f"xfeature mask must be non-negative, got {mask}", where="mask")
        for bit in range(2, mask.bit_length()):
            if mask >> bit & 1:
                arch_prctl(_abi.ARCH_REQ_XCOMP_GUEST_PERM, bit, "ARCH_REQ_XCOMP_GUEST_PERM")

    # -- running the guest ----------------------------------------------------------
    def _setup_run(self, code: bytes) -> None:
        fd = self._vcpu("KVM_RUN")
        if self._run is None:
            size = ioctl(self._kvm_fd, _abi.KVM_GET_VCPU_MMAP_SIZE)
            self._run_addr = mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, "mmap(vcpu fd)")
            self._run_size = size
            self._run = _abi.kvm_run.from_address(self._run_addr)
        if not self._slot_ready:
            if not self._mem_addr:
                self._mem_addr = mmap(
                    GUEST_MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, "mmap(guest memory)"
                )
            if self.vendor == "vmx":  # real mode without unrestricted guest needs a TSS
                try:
                    ioctl(self._vm_fd, _abi.KVM_SET_TSS_ADDR, 0xFFFBD000)
                except KvmError:
                    pass
            region = _abi.kvm_userspace_memory_region(
                slot=0, flags=0, guest_phys_addr=0, memory_size=GUEST_MEM_SIZE, userspace_addr=self._mem_addr
            )
            ioctl(self._vm_fd, _abi.KVM_SET_USER_MEMORY_REGION, region)
            self._slot_ready = True
        ctypes.memset(self._mem_addr + GUEST_ENTRY, 0, 0x1000)
        ctypes.memmove(self._mem_addr + GUEST_ENTRY, code, len(code))
        sregs = self.get_sregs()
        sregs.cs.base = 0
        sregs.cs.selector = 0
        self.set_sregs(sregs, detail="real-mode CS base 0")
        regs = _abi.kvm_regs()
        regs.rip = GUEST_ENTRY
        regs.rflags = 0x2
        ioctl(fd, _abi.KVM_SET_REGS, regs)

    def run(self, timeout: float | None = None, *, code: bytes = bytes([HLT])) -> None:
        """Run a real-mode guest whose only instruction (at 0x1000) is ``hlt``.

        Returns when KVM reports KVM_EXIT_HLT.  Any other exit raises
        :class:`KvmError` naming it; a guest that has not halted after
        ``timeout`` seconds (default ``run_timeout``) is stopped with a
        SIGALRM timer and reported as ``ETIMEDOUT``.  Each call starts again
        at 0x1000.  ``code`` replaces the guest program (16-bit real-mode
        machine code, at most 4 KiB), e.g. ``b"\\xeb\\xfe"`` (``jmp $``) to see the timeout.
        """
        code = bytes(code)
        if not 0 < len(code) <= 0x1000:
            raise InputError(f"guest code must be 1..4096 bytes, got {len(code)}", where="code")
        self._setup_run(code)
        limit = self.run_timeout if timeout is None else float(timeout)
        run = self._run
        assert run is not None  # _setup_run() maps the kvm_run page
        fd = self._vcpu_fd
        timed_out = self._run_bounded(fd, run, limit)
        if timed_out:
            why = (
                "the guest program given does not halt"
                if code != bytes([HLT])
                else (
                    "HLT exits were disabled (disable_hlt_exits()), so HLT no longer leaves the guest and it sleeps "
                    "inside KVM until an interrupt"
                    if self._hlt_exits_disabled
                    else "KVM did not report the HLT"
                )
            )
            raise KvmError(
                "ETIMEDOUT",
                f"the guest did not halt within {limit:g} s, so KVM_RUN was interrupted with a timer signal "
                f"(KVM_EXIT_INTR); likely cause: {why}",
                operation="KVM_RUN",
            )
        reason = run.exit_reason
        if reason == _abi.KVM_EXIT_HLT:
            return None
        raise KvmError("EIO", self._describe_exit(run), operation="KVM_RUN")

    def _run_bounded(self, fd: int, run: _abi.kvm_run, limit: float) -> bool:
        """KVM_RUN until it returns something other than a stray EINTR; True if it timed out."""
        started = time.monotonic()
        deadline = started + limit
        on_main = threading.current_thread() is threading.main_thread()

        def _on_alarm(signum, frame):  # runs between bytecodes: stop a KVM_RUN about to start
            run.immediate_exit = 1

        watchdog = None
        if on_main:
            old_handler = signal.signal(signal.SIGALRM, _on_alarm)
            # fire at the deadline, then every 50 ms in case one signal lands just before KVM_RUN starts
            old_timer = signal.setitimer(signal.ITIMER_REAL, max(limit, 0.001), 0.05)
        else:
            handler = signal.getsignal(signal.SIGALRM)
            if not callable(handler):
                raise KvmError(
                    "EOPNOTSUPP",
                    "run() outside the main thread needs a Python SIGALRM handler to be installed (by the main "
                    "thread) so a guest that does not halt can be interrupted; call run() from the main thread",
                    operation="KVM_RUN",
                )
            stop = threading.Event()
            target = threading.get_ident()

            def _kick():
                if stop.wait(limit):
                    return
                while not stop.is_set():
                    run.immediate_exit = 1
                    signal.pthread_kill(target, signal.SIGALRM)
                    stop.wait(0.05)

            watchdog = threading.Thread(target=_kick, name="cpuidkit-kvm-run-watchdog", daemon=True)
            watchdog.start()
        try:
            while True:
                ret = ioctl(fd, _abi.KVM_RUN)
                if ret == -_errno.EINTR:
                    if time.monotonic() >= deadline:
                        return True
                    run.immediate_exit = 0
                    continue  # another signal (its Python handler runs after this returns)
                return False
        finally:
            if on_main:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_handler)
                if old_timer[0] > 0:  # give back someone else's timer, minus the time spent here
                    left = old_timer[0] - (time.monotonic() - started)
                    signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), old_timer[1])
            else:
                stop.set()
                assert watchdog is not None  # started above whenever not on the main thread
                watchdog.join()
            run.immediate_exit = 0
            self._has_run = True

    @staticmethod
    def _describe_exit(run: _abi.kvm_run) -> str:
        reason = run.exit_reason
        name = _abi.EXIT_REASONS.get(reason, "unknown exit reason")
        text = f"the guest stopped with {name} ({reason}) instead of KVM_EXIT_HLT"
        ex = run.exit
        if reason == _abi.KVM_EXIT_IO:
            d = "out" if ex.io.direction else "in"
            text += f": {d} port {ex.io.port:#x}, {ex.io.size} byte(s)"
        elif reason == _abi.KVM_EXIT_MMIO:
            text += f": {'write' if ex.mmio.is_write else 'read'} of {ex.mmio.len} byte(s) at {ex.mmio.phys_addr:#x}"
        elif reason == _abi.KVM_EXIT_FAIL_ENTRY:
            text += f": hardware entry failure reason {ex.fail_entry.hardware_entry_failure_reason:#x}"
        elif reason == _abi.KVM_EXIT_INTERNAL_ERROR:
            text += f": suberror {ex.internal.suberror}"
        elif reason == _abi.KVM_EXIT_SHUTDOWN:
            text += ": the guest triple-faulted"
        return text
