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

Threads: every call holds the object's lock, so calls from several threads
take turns (the vCPU is created once, by whichever call comes first), and
``close()`` from any thread interrupts a running :meth:`LiveVcpu.run` at once,
waits for it, and only then unmaps and closes anything.  :meth:`LiveVcpu.run`
is bounded without timers: a watchdog thread sets ``kvm_run.immediate_exit``
and kicks the vCPU thread with ``SIGURG`` (``KICK_SIGNAL``), whose handler is
installed only while a guest runs.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import math
import numbers
import os
import signal
import struct
import threading
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

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
MAX_RUN_TIMEOUT = 3600.0  # seconds: a bound on one run(), so a typo cannot park a thread for days
KICK_SIGNAL = signal.SIGURG  # interrupts KVM_RUN; its default action is to ignore it, so a stray one is harmless
KICK_INTERVAL = 0.05  # seconds between kicks until KVM_RUN has returned
MAX_MSR_INDEX = 0xFFFF_FFFF

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


def run_seconds(value: object, where: str) -> float:
    """``value`` as a run timeout in seconds: a finite number, more than 0 and at most MAX_RUN_TIMEOUT."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"the run timeout must be a number of seconds, got {type(value).__name__}", where=where)
    try:
        seconds = float(value)
        shown = f"{seconds:g}"
    except (OverflowError, ValueError):
        seconds, shown = math.inf, "a number too large for a float"
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_RUN_TIMEOUT):
        raise InputError(
            f"the run timeout must be a finite number of seconds, more than 0 and at most {MAX_RUN_TIMEOUT:g}, "
            f"got {shown}",
            where=where,
        )
    return seconds


def _check_msr_index(index: object) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_MSR_INDEX:
        shown = f"{index:#x}" if isinstance(index, int) else type(index).__name__
        raise InputError(f"an MSR index must be an integer in 0..{MAX_MSR_INDEX:#x}, got {shown}", where="msr index")
    return index


def _on_kick(signum: int, frame: object) -> None:
    """KICK_SIGNAL's Python handler while a guest runs: nothing to do, the signal only interrupts KVM_RUN."""


def _set_handler(signum: int, handler) -> None:
    """``signal.signal(signum, handler)``, made even when a pending signal's handler raises.

    ``signal.signal`` first runs the Python handlers of signals already
    received, and when one raises (Ctrl-C's KeyboardInterrupt) it returns
    without changing anything; the change is tried again and the first such
    exception raised afterwards.
    """
    raised: BaseException | None = None
    for _ in range(8):
        try:
            signal.signal(signum, handler)
            break
        except BaseException as e:  # noqa: BLE001 - re-raised below, once the handler is set
            if raised is None:
                raised = e
    if raised is not None:
        raise raised


class _Kick:
    """KICK_SIGNAL's handler, installed while any run() needs it and then given back.

    Only the main thread may change a signal handler.  A run() on the main
    thread installs ``_on_kick`` (unless a run already did) and the last run to
    end on the main thread restores the handler it replaced.  A run() on
    another thread needs a Python handler to be there already (the main
    thread's own, or ours while a main-thread run lasts, which is then kept
    until that run() ends, or until the next main-thread run ends if a
    thread's run() ends last: ``_on_kick`` refers to nothing that can be freed).
    """

    def __init__(self, signum: int):
        self.signum = signum
        self._lock = threading.RLock()  # re-entrant: signal.signal may run a handler that calls run()
        self._users = 0
        self._ours = False  # _on_kick is installed, by us
        self._saved: object = None  # the handler it replaced

    def check(self, on_main: bool) -> None:
        """Raise a clear KvmError if a run() in this thread could not be interrupted; change nothing."""
        name = signal.Signals(self.signum).name
        if self.signum in signal.pthread_sigmask(signal.SIG_BLOCK, []):
            raise KvmError(
                "EOPNOTSUPP",
                f"{name}, the signal that interrupts KVM_RUN when the guest does not halt, is blocked in this "
                "thread (pthread_sigmask); unblock it to run a guest here",
                operation="KVM_RUN",
            )
        with self._lock:
            current = None if self._ours else signal.getsignal(self.signum)
            if self._ours or callable(current):
                return
            if current is None:
                raise KvmError(
                    "EOPNOTSUPP",
                    f"{name}, the signal that interrupts KVM_RUN when the guest does not halt, has a handler "
                    "installed outside Python, which cpuidkit could neither use nor give back",
                    operation="KVM_RUN",
                )
            if not on_main:
                raise KvmError(
                    "EOPNOTSUPP",
                    f"run() outside the main thread needs a Python handler for {name}, the signal that interrupts "
                    "KVM_RUN when the guest does not halt, and only the main thread can install one: call "
                    f"signal.signal(signal.{name}, lambda *_: None) in the main thread first, or call run() from "
                    "the main thread",
                    operation="KVM_RUN",
                )

    def acquire(self, on_main: bool) -> None:
        with self._lock:
            self.check(on_main)
            if on_main and not self._ours:
                current = signal.getsignal(self.signum)
                try:
                    _set_handler(self.signum, _on_kick)
                except BaseException:  # a pending handler raised (Ctrl-C) after the change: undo it
                    _set_handler(self.signum, current)
                    raise
                self._saved, self._ours = current, True
            self._users += 1

    def release(self, on_main: bool) -> None:
        with self._lock:
            self._users -= 1
            if self._users or not self._ours or not on_main:
                return
            saved, self._saved, self._ours = self._saved, None, False
            _set_handler(self.signum, saved)


_KICK = _Kick(KICK_SIGNAL)


class _Watchdog:
    """Ends one KVM_RUN from its own thread: after ``limit`` seconds, or at once on :meth:`interrupt`.

    It sets ``immediate_exit`` (a KVM_RUN about to start returns at once) and
    kicks the vCPU thread with KICK_SIGNAL (a running one returns EINTR), every
    KICK_INTERVAL until :meth:`stop`, which waits for it: nothing touches the
    kvm_run page once ``stop()`` has returned.
    """

    def __init__(self, run: _abi.kvm_run, limit: float):
        self.fired = False  # the limit passed, or interrupt() was called
        self._run = run
        self._limit = limit
        self._target = threading.get_ident()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cpuidkit-kvm-run-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def interrupt(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop kicking and wait for the thread, even through Ctrl-C (raised once it has ended)."""
        self._done.set()
        self._wake.set()
        if self._thread.ident is None:  # never started
            return
        raised: BaseException | None = None
        while True:
            try:
                self._thread.join()
                break
            except BaseException as e:  # noqa: BLE001 - re-raised below, once the thread has ended
                if raised is None:
                    raised = e
        if raised is not None:
            raise raised

    def _watch(self) -> None:
        self._wake.wait(self._limit)
        while not self._done.is_set():
            self.fired = True
            self._run.immediate_exit = 1
            signal.pthread_kill(self._target, KICK_SIGNAL)
            self._done.wait(KICK_INTERVAL)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _serialized(method: Callable[Concatenate[LiveVcpu, _P], _R]) -> Callable[Concatenate[LiveVcpu, _P], _R]:
    """Run ``method`` holding the vCPU's lock; the outermost call out releases a vCPU closed meanwhile."""

    @functools.wraps(method)
    def call(self: LiveVcpu, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            self._depth += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                self._depth -= 1
                if not self._depth and self._closed:
                    self._release()

    return call


class LiveVcpu:
    """A VM and one vCPU on ``device`` (``/dev/kvm``), driven by real ioctls.

    ``kernel`` is the running kernel's ``X.Y``; ``vendor`` the KVM vendor in
    use (``"vmx"``, ``"svm"`` or ``"pvm"``), ``vendor_module`` its module and
    ``vendor_note`` why that one was chosen when several are present.
    ``run_timeout`` bounds each :meth:`run` (seconds; more than 0, at most
    ``MAX_RUN_TIMEOUT``, 3600).

    Every method holds the object's lock while it works, so threads may share
    one ``LiveVcpu``; :meth:`close` may be called from any thread at any time.
    """

    kernel: str
    vendor: str

    def __init__(self, device: str = "/dev/kvm", *, run_timeout: float = DEFAULT_RUN_TIMEOUT):
        self._lock = threading.RLock()  # held by every call; re-entrant: calls make calls (set_cr4, run)
        self._depth = 0  # calls in progress, all in the thread holding the lock
        self._watchdog: _Watchdog | None = None  # the running KVM_RUN's, for close()
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
        self.run_timeout = run_seconds(run_timeout, "run_timeout")
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
        """Close every fd and unmap all memory; calling it again does nothing.

        Safe from any thread: a :meth:`run` in progress is interrupted at once
        (it raises the same ``EBADF`` error as any call on a closed vCPU) and
        any call in progress finishes before anything is released.  Called by
        the thread that is itself inside a call (from a signal handler), it
        leaves the release to that call's end.
        """
        self._closed = True
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.interrupt()
        with self._lock:
            if not self._depth:
                self._release()

    def _release(self) -> None:
        """Unmap and close everything; only with the lock held and no call in progress."""
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
        with self._lock:  # two threads' first calls create one vCPU
            self._check_open(operation)
            if self._vcpu_fd < 0:
                self._vcpu_fd = ioctl(self._vm_fd, _abi.KVM_CREATE_VCPU, 0)
            return self._vcpu_fd

    # -- CPUID ------------------------------------------------------------------
    @_serialized
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

    @_serialized
    def get_cpuid(self) -> CpuidTable:
        """KVM_GET_CPUID2: the table the vCPU really holds (exactly its entries, see _read_vcpu_cpuid2)."""
        fd = self._vcpu("KVM_GET_CPUID2")
        return _read_vcpu_cpuid2(fd)

    @_serialized
    def supported_cpuid(self) -> CpuidTable:
        """KVM_GET_SUPPORTED_CPUID on the system fd."""
        self._check_open("KVM_GET_SUPPORTED_CPUID")
        return _read_cpuid2(
            self._kvm_fd, _abi.KVM_GET_SUPPORTED_CPUID, _abi.KVM_MAX_CPUID_ENTRIES, "KVM_GET_SUPPORTED_CPUID"
        )

    @_serialized
    def emulated_cpuid(self) -> CpuidTable:
        """KVM_GET_EMULATED_CPUID on the system fd."""
        self._check_open("KVM_GET_EMULATED_CPUID")
        return _read_cpuid2(
            self._kvm_fd, _abi.KVM_GET_EMULATED_CPUID, _abi.KVM_MAX_CPUID_ENTRIES, "KVM_GET_EMULATED_CPUID"
        )

    @_serialized
    def check_extension(self, cap: int) -> int:
        """KVM_CHECK_EXTENSION on the VM fd (0 when the capability is absent)."""
        return ioctl(self._vm("KVM_CHECK_EXTENSION"), _abi.KVM_CHECK_EXTENSION, cap)

    # -- registers ------------------------------------------------------------------
    @_serialized
    def get_sregs(self) -> _abi.kvm_sregs:
        sregs = _abi.kvm_sregs()
        ioctl(self._vcpu("KVM_GET_SREGS"), _abi.KVM_GET_SREGS, sregs)
        return sregs

    @_serialized
    def set_sregs(self, sregs: _abi.kvm_sregs, detail: str | None = None) -> None:
        ioctl(self._vcpu("KVM_SET_SREGS"), _abi.KVM_SET_SREGS, sregs, detail=detail)

    @_serialized
    def get_sregs_cr4(self) -> int:
        return self.get_sregs().cr4

    @_serialized
    def set_cr4(self, value: int) -> None:
        """KVM_GET_SREGS, replace CR4, KVM_SET_SREGS."""
        if not 0 <= value < (1 << 64):
            raise InputError(f"CR4 must be an unsigned 64-bit value, got {value:#x}", where="cr4")
        sregs = self.get_sregs()
        sregs.cr4 = value
        self.set_sregs(sregs, detail=f"CR4={value:#x}")

    @_serialized
    def get_regs(self) -> _abi.kvm_regs:
        regs = _abi.kvm_regs()
        ioctl(self._vcpu("KVM_GET_REGS"), _abi.KVM_GET_REGS, regs)
        return regs

    @_serialized
    def set_xcr0(self, value: int) -> None:
        """KVM_SET_XCRS with one entry: XCR0 = ``value``."""
        if not 0 <= value < (1 << 64):
            raise InputError(f"XCR0 must be an unsigned 64-bit value, got {value:#x}", where="xcr0")
        xcrs = _abi.kvm_xcrs()
        xcrs.nr_xcrs = 1
        xcrs.xcrs[0].xcr = 0
        xcrs.xcrs[0].value = value
        ioctl(self._vcpu("KVM_SET_XCRS"), _abi.KVM_SET_XCRS, xcrs, detail=f"XCR0={value:#x}")

    @_serialized
    def get_xcr0(self) -> int:
        xcrs = _abi.kvm_xcrs()
        ioctl(self._vcpu("KVM_GET_XCRS"), _abi.KVM_GET_XCRS, xcrs)
        for i in range(min(xcrs.nr_xcrs, _abi.KVM_MAX_XCRS)):
            if xcrs.xcrs[i].xcr == 0:
                return xcrs.xcrs[i].value
        raise KvmError("ENOENT", "KVM_GET_XCRS returned no XCR0 entry", operation="KVM_GET_XCRS")

    @_serialized
    def set_msr(self, index: int, value: int) -> None:
        """KVM_SET_MSRS (host-initiated) of one MSR: ``index`` in 0..0xFFFFFFFF, ``value`` unsigned 64-bit."""
        self._check_open("KVM_SET_MSRS")
        _check_msr_index(index)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << 64):
            shown = f"{value:#x}" if isinstance(value, int) else type(value).__name__
            raise InputError(f"MSR value must be unsigned 64-bit, got {shown}", where=f"msr {index:#x} value")
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

    @_serialized
    def get_msr(self, index: int) -> int:
        """KVM_GET_MSRS of one MSR, ``index`` in 0..0xFFFFFFFF."""
        self._check_open("KVM_GET_MSRS")
        _check_msr_index(index)
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

    @_serialized
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

    @_serialized
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

    @_serialized
    def grant_xfeature_permission(self, mask: int) -> None:
        """arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, bit) for each set bit >= 2 of ``mask``.

        The permission is per process and must be requested before the
        process creates its first vCPU.
        """
        self._check_open("ARCH_REQ_XCOMP_GUEST_PERM")
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

    @_serialized
    def run(self, timeout: float | None = None, *, code: bytes = bytes([HLT])) -> None:
        """Run a real-mode guest whose only instruction (at 0x1000) is ``hlt``.

        Returns when KVM reports KVM_EXIT_HLT.  Any other exit raises
        :class:`KvmError` naming it; a guest that has not halted after
        ``timeout`` seconds (default ``run_timeout``; a finite number more
        than 0 and at most ``MAX_RUN_TIMEOUT``, 3600, else :class:`InputError`)
        is stopped and reported as ``ETIMEDOUT``.  Each call starts again at
        0x1000.  ``code`` replaces the guest program (16-bit real-mode machine
        code, at most 4 KiB), e.g. ``b"\\xeb\\xfe"`` (``jmp $``) to see the timeout.

        KVM_RUN is stopped by a watchdog thread that sets ``immediate_exit``
        and kicks this thread with ``KICK_SIGNAL`` (SIGURG); no timer and no
        SIGALRM are used.  On the main thread a do-nothing handler for it is
        installed for the duration of KVM_RUN and the previous one put back.
        Another thread cannot install handlers, so there ``run()`` needs a
        Python handler for SIGURG to be in place already (e.g.
        ``signal.signal(signal.SIGURG, lambda *_: None)`` in the main thread;
        it is called in the main thread once per kick), and otherwise raises
        ``EOPNOTSUPP`` before running anything.  :meth:`close` from another
        thread interrupts the guest at once; this call then raises ``EBADF``.
        """
        self._check_open("KVM_RUN")
        limit = run_seconds(*((self.run_timeout, "run_timeout") if timeout is None else (timeout, "timeout")))
        code = bytes(code)
        if not 0 < len(code) <= 0x1000:
            raise InputError(f"guest code must be 1..4096 bytes, got {len(code)}", where="code")
        on_main = threading.current_thread() is threading.main_thread()
        _KICK.check(on_main)  # refuse before changing anything if this thread's KVM_RUN could not be stopped
        self._setup_run(code)
        run = self._run
        assert run is not None  # _setup_run() maps the kvm_run page
        timed_out = self._run_bounded(self._vcpu_fd, run, limit, on_main)
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
                f"the guest did not halt within {limit:g} s, so KVM_RUN was interrupted with a signal "
                f"(KVM_EXIT_INTR); likely cause: {why}",
                operation="KVM_RUN",
            )
        reason = run.exit_reason
        if reason == _abi.KVM_EXIT_HLT:
            return None
        raise KvmError("EIO", self._describe_exit(run), operation="KVM_RUN")

    def _run_bounded(self, fd: int, run: _abi.kvm_run, limit: float, on_main: bool) -> bool:
        """KVM_RUN until it returns something other than a stray EINTR; True if it timed out.

        Raises the closed-vCPU error when :meth:`close` interrupted it.  The
        kick handler is installed just before the watchdog starts and given
        back after it has stopped, in ``finally``.
        """
        watchdog = _Watchdog(run, limit)
        _KICK.acquire(on_main)
        self._watchdog = watchdog
        try:
            watchdog.start()
            while True:
                self._check_open("KVM_RUN")  # close() from another thread: no (further) KVM_RUN
                if ioctl(fd, _abi.KVM_RUN) != -_errno.EINTR:
                    return False
                if watchdog.fired:  # the limit passed, or close() interrupted it
                    self._check_open("KVM_RUN")
                    return True
                run.immediate_exit = 0  # another signal (its Python handler runs after this returns)
        finally:
            try:
                watchdog.stop()  # joined: nothing writes to the kvm_run page any more
            finally:
                self._watchdog = None
                run.immediate_exit = 0
                self._has_run = True
                _KICK.release(on_main)

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
