"""``KernelLab``: one booted Debian kernel, serving vCPUs from its own kvm_amd.

::

    with KernelLab("6.1", cpu="EPYC-Rome") as lab:
        lab.package_version, lab.kernel_release     # "6.1.192-3", "6.1.0-57-amd64"
        with lab.vcpu() as v:                       # a LabVcpu: the Vcpu protocol
            v.set_cpuid(lab.supported_cpuid())
            v.get_cpuid()

The constructor finds (or downloads) the kernel, builds its initramfs if
needed, boots it in QEMU and waits for the guest agent's ``ready``.  After
that every call is one JSON round trip to the agent, which runs the
project's own LiveVcpu on the guest's /dev/kvm.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cpuidkit
from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import CpuidkitError
from cpuidkit.lab import _protocol as proto
from cpuidkit.lab._errors import LabError, LabUnavailable
from cpuidkit.lab.initramfs import ensure_initramfs, find_busybox, find_cpio
from cpuidkit.lab.kernels import KernelBuild, _locked, cache_root, ensure_kernel
from cpuidkit.lab.qemu import QemuGuest, find_qemu
from cpuidkit.lab.vcpu import LabVcpu
from cpuidkit.live.vcpu import run_seconds

__all__ = ["KernelLab", "DEFAULT_CPU", "missing_requirements"]

DEFAULT_CPU = "EPYC-Rome"
DEFAULT_BOOT_TIMEOUT = 300.0  # seconds; a cold boot takes ~10 s on 2 cores, more when the host is busy
DEFAULT_CALL_TIMEOUT = 60.0
AGENT_MODULE = "cpuidkit.lab.agent"


def missing_requirements() -> list[str]:
    """What this machine lacks to run the lab, one phrase each (empty: nothing)."""
    missing = []
    for check in (find_qemu, find_busybox, find_cpio):
        try:
            check()
        except LabUnavailable as e:
            missing.append(e.explanation)
    for tool, package in (("apt-get", "apt"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            missing.append(f"`{tool}` is not installed (the lab downloads Debian kernel packages; {package})")
    return missing


def _guest_paths(python: str | None) -> tuple[str, str]:
    """The interpreter and the PYTHONPATH the guest runs the agent with (paths on the shared host root)."""
    interpreter = python or sys.executable
    if not interpreter or not os.path.isabs(interpreter):
        raise LabUnavailable(f"the lab needs an absolute path to a Python interpreter, got {interpreter!r}")
    package_root = str(Path(cpuidkit.__file__).resolve().parent.parent)
    for name, value in (("interpreter", interpreter), ("package root", package_root)):
        if any(c.isspace() or c in "\"'" for c in value):
            raise LabUnavailable(
                f"the {name} path {value!r} has a space or quote; it travels on the guest kernel's command "
                "line, which cannot carry it: use a checkout and an interpreter at paths without one",
                errno_name="EINVAL",
            )
    return interpreter, package_root


class KernelLab:
    """A Debian kernel booted under QEMU (TCG, emulated AMD SVM) with kvm_amd loaded.

    ``series`` is ``"6.1"`` or ``"6.12"`` (any X.Y apt offers a stock amd64
    image for); ``cpu`` a QEMU CPU model (``+svm`` is added).  ``package`` pins
    one ``linux-image-*`` package instead of the newest apt offers.
    ``python`` is the interpreter the guest runs (default: this one, so the
    project's ``.venv``).  ``log`` gets a line of text for slow steps (downloads).
    ``need_kvm=False`` boots a guest without SVM (say ``MODEL,-svm``) for what
    needs no /dev/kvm in it: the CPUID a guest of a QEMU CPU model sees
    (``request("cpuid_instruction")``).

    Attributes after boot: ``package``, ``package_version`` (the Debian
    version), ``kernel_release`` (``uname -r`` in the guest), ``kernel``
    (``X.Y``), ``vendor`` (``"svm"``), ``vendor_module``, ``info`` (all the
    agent reported), ``boot_seconds``, ``pid`` (QEMU's), ``command_line`` (the
    guest kernel's).
    """

    def __init__(
        self,
        series: str,
        *,
        cpu: str = DEFAULT_CPU,
        memory: str = "512M",
        package: str | None = None,
        refresh: bool = False,
        boot_timeout: float = DEFAULT_BOOT_TIMEOUT,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        python: str | None = None,
        qemu: str | None = None,
        log=None,
        need_kvm: bool = True,
    ):
        self.series = series
        self.cpu = cpu
        self.call_timeout = float(call_timeout)
        self._lock = threading.RLock()
        self._guest: QemuGuest | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._next_id = 1
        self._closed = False
        self.info: dict = {}
        self.command_line = ""
        self.boot_seconds: float | None = None
        self.last_guest_seconds: float | None = None  # time the agent spent on the last request
        # everything that can be missing is checked before anything slow happens
        find_qemu(qemu)
        find_busybox()
        find_cpio()
        interpreter, package_root = _guest_paths(python)
        root = cache_root()
        self.build: KernelBuild = ensure_kernel(series, package=package, refresh=refresh, root=root, log=log)
        with _locked(root):
            initrd = ensure_initramfs(self.build)
        append = " ".join(
            [
                "console=ttyS0",
                "panic=-1",
                "quiet",
                "loglevel=4",
                "mitigations=off",
                f"CPUIDKIT_LAB_PYTHON={interpreter}",
                f"CPUIDKIT_LAB_PYTHONPATH={package_root}",
                f"CPUIDKIT_LAB_AGENT={AGENT_MODULE}",
            ]
        )
        self.command_line = append  # the guest kernel's command line (e.g. mitigations=off: it shapes its CPU view)
        started = time.monotonic()
        deadline = started + float(boot_timeout)
        self._guest = QemuGuest(
            kernel=self.build.vmlinuz, initrd=initrd, append=append, cpu=cpu, memory=memory, qemu=qemu
        )
        try:
            self._sock = self._guest.start(deadline)
            ready = self._read_message(deadline, waiting_for="the guest agent to start")
            if ready.get("event") != "ready":
                raise LabError(f"the guest agent sent {ready!r} instead of ready", console=self._guest.console_tail())
            self.info = proto.decode_value(ready["info"])
            self.boot_seconds = time.monotonic() - started
            if need_kvm and not self.info.get("kvm_device"):
                raise LabUnavailable(
                    f"the guest kernel {self.info.get('kernel_release')} has no /dev/kvm: kvm_amd did not load; "
                    f"the QEMU CPU model {cpu!r} needs SVM (leave svm out of it and the lab adds +svm)",
                    errno_name="ENODEV",
                )
        except BaseException:
            self.close()
            raise

    # -- attributes ------------------------------------------------------------
    @property
    def package(self) -> str:
        return self.build.package

    @property
    def package_version(self) -> str:
        return self.build.version

    @property
    def kernel_release(self) -> str:
        return self.info.get("kernel_release", self.build.release)

    @property
    def kernel(self) -> str:
        return self.info.get("kernel", self.series)

    @property
    def vendor(self) -> str:
        return self.info.get("vendor") or "unknown"

    @property
    def vendor_module(self) -> str | None:
        return self.info.get("vendor_module")

    @property
    def pid(self) -> int | None:
        return self._guest.pid if self._guest else None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def label(self) -> str:
        """``<package> <version>``: what every result of this lab is tagged with."""
        return f"{self.build.package} {self.build.version}"

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pid {self.pid}"
        return f"<KernelLab {self.label} ({self.kernel_release}) cpu {self.cpu} {state}>"

    # -- lifetime --------------------------------------------------------------
    def __enter__(self) -> KernelLab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End QEMU (by pid) and remove its temporary folder; calling it again does nothing."""
        self._closed = True
        self._sock = None
        if self._guest is not None:  # kept: console() still reads what the guest printed
            self._guest.stop()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def console(self) -> str:
        """The guest's serial console so far (kept after close)."""
        return self._guest.console_text() if self._guest else ""

    # -- requests --------------------------------------------------------------
    def _read_message(self, deadline: float, waiting_for: str) -> dict:
        sock, guest = self._sock, self._guest
        while b"\n" not in self._buffer:
            if sock is None or guest is None:
                raise LabError(f"the lab is closed (while waiting for {waiting_for})")
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"timed out waiting for {waiting_for}", console=guest.console_tail())
            sock.settimeout(min(left, 0.5))
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                if not guest.alive():
                    raise self._guest_gone(guest, waiting_for) from None
                continue
            except OSError as e:
                raise LabError(f"the agent connection failed while waiting for {waiting_for}: {e}") from None
            if not chunk:
                raise self._guest_gone(guest, waiting_for)
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return proto.loads(line)

    @staticmethod
    def _guest_gone(guest: QemuGuest, waiting_for: str) -> LabError:
        """The error for a guest that went away: QEMU's status and complaints, and the console's last lines."""
        if guest.process is not None:
            try:
                guest.process.wait(2.0)  # let QEMU finish exiting, so the console has the last words
            except subprocess.TimeoutExpired:
                pass
        status = guest.returncode
        what = f"QEMU exited (status {status})" if status is not None else "the guest closed the agent port"
        complaints = [
            line for line in guest.stderr_text().splitlines() if line.strip() and "TCG doesn't support" not in line
        ]
        text = f"{what} while waiting for {waiting_for}"
        if complaints:
            text += ": " + " / ".join(complaints[-5:])
        return LabError(text, console=guest.console_tail())

    def request(self, op: str, *, timeout: float | None = None, **fields):
        """Send one request to the agent and return its decoded result (raising what the guest raised)."""
        with self._lock:
            if self._closed or self._sock is None:
                raise LabError("this KernelLab is closed; start a new one")
            rid = self._next_id
            self._next_id += 1
            message = {"id": rid, "op": op}
            message.update({k: proto.encode_value(v) for k, v in fields.items()})
            try:
                self._sock.sendall(proto.dumps(message))
                deadline = time.monotonic() + (self.call_timeout if timeout is None else timeout)
                reply = self._read_message(
                    deadline, waiting_for=f"the answer to {op} {fields.get('method', '')}".strip()
                )
            except BaseException:
                # the conversation is out of step now (or the guest is gone): nothing more can be trusted
                self.close()
                raise
            if reply.get("id") != rid:
                self.close()
                raise LabError(f"the agent answered request {reply.get('id')} instead of {rid}")
            self.last_guest_seconds = reply.get("t")
            if reply.get("ok"):
                return self._tag(proto.decode_value(reply.get("result")))
            error = reply.get("error") or {}
            exc = proto.decode_error(error)
            if exc is None:
                raise LabError(
                    f"the guest agent failed on {op}: {error.get('type')}: {error.get('message')}\n"
                    f"{error.get('traceback', '')}".rstrip()
                )
            if isinstance(exc, CpuidkitError):
                exc.kernel_package = self.label  # type: ignore[attr-defined]
            raise exc

    def _tag(self, value):
        if isinstance(value, CpuidTable):
            source = value.source or "lab"
            return CpuidTable(value.entries, source=f"{source} ({self.label})")
        return value

    # -- what the kernel offers ------------------------------------------------------
    def vcpu(self, *, run_timeout: float | None = None) -> LabVcpu:
        """A new :class:`~cpuidkit.lab.LabVcpu`: a VM with one vCPU in the guest (KVM_CREATE_VM)."""
        kwargs = {} if run_timeout is None else {"run_timeout": run_seconds(run_timeout, "run_timeout")}
        attrs = self.request("vcpu.new", kwargs=kwargs)
        return LabVcpu(self, attrs)

    def supported_cpuid(self) -> CpuidTable:
        """KVM_GET_SUPPORTED_CPUID of the guest kernel's kvm_amd."""
        return self.request("supported_cpuid")

    def emulated_cpuid(self) -> CpuidTable:
        """KVM_GET_EMULATED_CPUID of the guest kernel."""
        return self.request("emulated_cpuid")

    def guest_cpuid(self) -> CpuidTable:
        """What the CPUID instruction returns inside the guest: QEMU's CPU model as TCG provides it.

        This is the "host CPU" the guest's KVM sees (the raw CPUID of a host profile for the model).
        """
        return self.request("cpuid_instruction")

    def capabilities(self) -> dict:
        """A handful of KVM_CHECK_EXTENSION answers (as :func:`cpuidkit.live.kvm_capabilities`)."""
        return self.request("capabilities")

    def xfeature_permissions(self) -> dict:
        """The agent process's XSAVE permissions (as :func:`cpuidkit.live.xfeature_permissions`)."""
        return self.request("xfeature_permissions")

    def dmesg(self) -> str:
        """The guest kernel's log."""
        return self.request("dmesg")

    def ping(self) -> float:
        """One empty round trip; returns its wall time in seconds."""
        t = time.perf_counter()
        self.request("ping")
        return time.perf_counter() - t
