"""The program the lab guest runs: answers requests with the project's own ``LiveVcpu``.

Started by the guest's /init (``python -m cpuidkit.lab.agent``, chrooted into
the host's root, read-only), so it is the same code the host runs, executing
against the guest kernel's /dev/kvm (kvm_amd on QEMU's emulated SVM).

It opens the virtio-serial port named :data:`~cpuidkit.lab._protocol.PORT_NAME`,
says ``ready``, then serves one request at a time until the host sends
``shutdown`` or closes the port (see :mod:`cpuidkit.lab._protocol`).  One
process holds every vCPU the host opened, so process-wide state (XSAVE guest
permissions) behaves as it does for LiveVcpu objects in one host process.

Requests (``op``):

``vcpu.new``        a new LiveVcpu (KVM_CREATE_VM); returns a handle and its attributes
``vcpu.call``       a method of a LiveVcpu (``method`` from :data:`VCPU_METHODS`)
``vcpu.close``      close one
``vcpu.get_cpuid2_nent`` one raw KVM_GET_CPUID2 with room for ``nent`` entries: the ``nent`` the kernel leaves
``vcpu.batch``      several ``vcpu.call``s in one round trip: ``[method, args]`` each; per call its result or
                    the errno name of its KvmError (any other failure fails the request)
``supported_cpuid`` / ``emulated_cpuid`` / ``capabilities`` / ``xfeature_permissions``
``cpuid_instruction`` what the CPUID instruction returns in the guest (QEMU's CPU model)
``info``            uname, vendor module, Python version (also sent with ``ready``)
``dmesg``           the guest kernel's log
``ping``            nothing (measures the round trip)
``shutdown``        close every vCPU and exit (the guest then powers off)
"""

from __future__ import annotations

import errno
import os
import platform
import sys
import time
import traceback

from cpuidkit.errors import KvmError
from cpuidkit.lab import _protocol as proto
from cpuidkit.live import LiveVcpu, _abi, host_cpuid_table, kvm_capabilities, supported_cpuid, xfeature_permissions
from cpuidkit.live._explain import kvm_error
from cpuidkit.live._sys import detect_vendor, ioctl_errno, kernel_version

VCPU_METHODS = frozenset(
    {
        "set_cpuid",
        "get_cpuid",
        "set_cr4",
        "get_sregs_cr4",
        "set_xcr0",
        "get_xcr0",
        "set_msr",
        "get_msr",
        "disable_quirk",
        "disable_hlt_exits",
        "grant_xfeature_permission",
        "run",
        "supported_cpuid",
        "emulated_cpuid",
        "check_extension",
    }
)


def find_port(name: str = proto.PORT_NAME, sys_class: str = "/sys/class/virtio-ports") -> str:
    """The /dev node of the virtio-serial port called ``name``."""
    try:
        ports = sorted(os.listdir(sys_class))
    except OSError:
        ports = []
    for port in ports:
        try:
            with open(os.path.join(sys_class, port, "name")) as fh:
                if fh.read().strip() == name:
                    return os.path.join("/dev", port)
        except OSError:
            continue
    raise SystemExit(f"cpuidkit-lab agent: no virtio-serial port named {name} (saw {ports})")


MAX_NENT = 4096  # the largest KVM_GET_CPUID2 buffer vcpu.get_cpuid2_nent allocates


def raw_get_cpuid2_nent(vcpu: LiveVcpu, nent: int) -> int:
    """One KVM_GET_CPUID2 with room for ``nent`` entries; the ``nent`` the kernel leaves in the header.

    LiveVcpu.get_cpuid() hides this (it finds the count by bisection where the kernel does not report
    it); here the kernel's own answer is the result: 6.1 leaves ``nent`` as passed, 6.5+ writes the count.
    A refusal (E2BIG when fewer than the stored entries fit) is raised as the KvmError it is.
    """
    if isinstance(nent, bool) or not isinstance(nent, int) or not 0 <= nent <= MAX_NENT:
        raise ValueError(f"nent must be an integer in 0..{MAX_NENT}, got {nent!r}")
    fd = vcpu._vcpu("KVM_GET_CPUID2")  # creates the vCPU on first use, as every vCPU call does
    buf = _abi.cpuid2_buffer(max(nent, 1))()
    buf.nent = nent
    err = ioctl_errno(fd, _abi.KVM_GET_CPUID2, buf)
    if err:
        raise kvm_error(err, "KVM_GET_CPUID2", f"asking with room for {nent} entries")
    return int(buf.nent)


def guest_info() -> dict:
    vendor, module, note = detect_vendor()
    uname = os.uname()
    return {
        "kernel_release": uname.release,
        "kernel_version": uname.version,
        "kernel": kernel_version(),
        "machine": uname.machine,
        "vendor": vendor,
        "vendor_module": module,
        "vendor_note": note,
        "kvm_device": os.path.exists("/dev/kvm"),
        "python": platform.python_version(),
        "pid": os.getpid(),
    }


def read_dmesg() -> str:
    """The guest kernel's log from /dev/kmsg (non-blocking), as ``dmesg`` would print it."""
    lines = []
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten records: keep going
                    continue
                raise
            if not record:
                break
            head, _, text = record.decode("utf-8", "replace").partition(";")
            fields = head.split(",")
            stamp = int(fields[2]) / 1e6 if len(fields) > 2 and fields[2].isdigit() else 0.0
            lines.append(f"[{stamp:12.6f}] {text.splitlines()[0] if text else ''}")
    finally:
        os.close(fd)
    return "\n".join(lines)


class Agent:
    def __init__(self) -> None:
        self.vcpus: dict[int, LiveVcpu] = {}
        self.next_handle = 1
        self.running = True

    def handle(self, request: dict):
        op = request.get("op")
        if op == "vcpu.call":
            vcpu = self._vcpu(request)
            method = request.get("method")
            if method not in VCPU_METHODS:
                raise ValueError(f"method {method!r} is not served by the lab agent")
            args = proto.decode_value(request.get("args", []))
            kwargs = proto.decode_value(request.get("kwargs", {"dict": {}}))
            return getattr(vcpu, method)(*args, **kwargs)
        if op == "vcpu.new":
            kwargs = proto.decode_value(request.get("kwargs", {"dict": {}}))
            vcpu = LiveVcpu(**kwargs)
            handle = self.next_handle
            self.next_handle += 1
            self.vcpus[handle] = vcpu
            return {
                "handle": handle,
                "kernel": vcpu.kernel,
                "vendor": vcpu.vendor,
                "vendor_module": vcpu.vendor_module,
                "vendor_note": vcpu.vendor_note,
                "device": vcpu.device,
            }
        if op == "vcpu.batch":
            vcpu = self._vcpu(request)
            out: list[list] = []
            for method, args in proto.decode_value(request.get("calls", [])):
                if method not in VCPU_METHODS and method != "get_cpuid2_nent":
                    raise ValueError(f"method {method!r} is not served by the lab agent")
                try:
                    if method == "get_cpuid2_nent":
                        value = raw_get_cpuid2_nent(vcpu, *args)
                    else:
                        value = getattr(vcpu, method)(*args)
                    out.append([value, None])
                except KvmError as e:
                    out.append([None, e.errno_name])
            return out
        if op == "vcpu.get_cpuid2_nent":
            return raw_get_cpuid2_nent(self._vcpu(request), proto.decode_value(request.get("nent")))
        if op == "vcpu.close":
            closing = self.vcpus.pop(int(request["handle"]), None)
            if closing is not None:
                closing.close()
            return None
        if op == "supported_cpuid":
            return supported_cpuid()
        if op == "emulated_cpuid":
            with LiveVcpu() as v:
                return v.emulated_cpuid()
        if op == "cpuid_instruction":
            return host_cpuid_table()
        if op == "capabilities":
            return kvm_capabilities()
        if op == "xfeature_permissions":
            return xfeature_permissions()
        if op == "info":
            return guest_info()
        if op == "dmesg":
            return read_dmesg()
        if op == "ping":
            return None
        if op == "shutdown":
            self.running = False
            return None
        raise ValueError(f"unknown op {op!r}")

    def _vcpu(self, request: dict) -> LiveVcpu:
        try:
            return self.vcpus[int(request["handle"])]
        except (KeyError, ValueError, TypeError):
            raise KvmError(
                "EBADF",
                "no such vCPU in the lab guest (it was closed); create a new one",
                operation=str(request.get("method") or "vcpu"),
            ) from None

    def close(self) -> None:
        for vcpu in self.vcpus.values():
            vcpu.close()
        self.vcpus.clear()


def serve(fd: int) -> None:
    agent = Agent()
    reader = os.fdopen(fd, "rb", buffering=65536, closefd=False)

    def send(obj) -> None:
        data = proto.dumps(obj)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    send({"event": "ready", "info": proto.encode_value(guest_info())})
    try:
        while agent.running:
            line = reader.readline()
            if not line:
                break  # the host closed the port
            started = time.perf_counter()
            try:
                request = proto.loads(line)
            except ValueError as e:
                send(
                    {
                        "id": None,
                        "ok": False,
                        "error": {"kind": "internal", "type": "ValueError", "message": f"bad request line: {e}"},
                    }
                )
                continue
            reply = {"id": request.get("id")}
            try:
                result = agent.handle(request)
                reply.update(ok=True, result=proto.encode_value(result))
            except Exception as e:  # every failure goes back to the host
                error = proto.encode_error(e)
                if error["kind"] == "internal":
                    error["traceback"] = traceback.format_exc()
                reply.update(ok=False, error=error)
            reply["t"] = time.perf_counter() - started
            send(reply)
    finally:
        agent.close()


def main() -> int:
    port = find_port()
    fd = os.open(port, os.O_RDWR)
    try:
        serve(fd)
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
