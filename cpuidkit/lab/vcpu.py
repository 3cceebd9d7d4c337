"""``LabVcpu``: the :class:`~cpuidkit.kvm.interface.Vcpu` protocol, answered by a lab guest's kvm_amd.

Each call is forwarded to the guest agent, which makes it on a
:class:`~cpuidkit.live.LiveVcpu` there; a refusal comes back as the same
:class:`~cpuidkit.KvmError` (errno name, explanation, operation) LiveVcpu
raised, with ``kernel_package`` set to the Debian package and version that
answered.  Tables come back with that package in their ``source``.
"""

from __future__ import annotations

from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.live.vcpu import run_seconds

__all__ = ["LabVcpu"]


class LabVcpu:
    """One VM with one vCPU inside a :class:`~cpuidkit.lab.KernelLab` guest (make it with ``lab.vcpu()``).

    ``kernel`` is the guest kernel's ``X.Y``, ``vendor`` ``"svm"``;
    ``kernel_release`` / ``package`` / ``package_version`` name the exact
    Debian kernel.  Closing the lab closes its vCPUs.
    """

    kernel: str
    vendor: str

    def __init__(self, lab, attrs: dict):
        self._lab = lab
        self._handle = attrs["handle"]
        self._closed = False
        self.kernel = attrs["kernel"]
        self.vendor = attrs["vendor"] or "unknown"
        self.vendor_module = attrs.get("vendor_module")
        self.vendor_note = attrs.get("vendor_note")
        self.device = attrs.get("device", "/dev/kvm")

    # -- identity ----------------------------------------------------------------
    @property
    def lab(self):
        return self._lab

    @property
    def kernel_release(self) -> str:
        return self._lab.kernel_release

    @property
    def package(self) -> str:
        return self._lab.package

    @property
    def package_version(self) -> str:
        return self._lab.package_version

    @property
    def closed(self) -> bool:
        return self._closed or self._lab.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"handle {self._handle}"
        return f"<LabVcpu {self._lab.label} kernel {self.kernel} vendor {self.vendor} ({state})>"

    # -- lifetime ------------------------------------------------------------------
    def __enter__(self) -> LabVcpu:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the VM in the guest; calling it again (or after the lab closed) does nothing."""
        if self._closed:
            return
        self._closed = True
        if not self._lab.closed:
            self._lab.request("vcpu.close", handle=self._handle)

    def _call(self, method: str, *args, **kwargs):
        if self.closed:
            raise KvmError("EBADF", "this LabVcpu (or its KernelLab) is closed; create a new one", operation=method)
        return self._lab.request("vcpu.call", handle=self._handle, method=method, args=list(args), kwargs=kwargs)

    # -- the Vcpu protocol -------------------------------------------------------------
    def set_cpuid(self, table: CpuidTable) -> None:
        """KVM_SET_CPUID2 with ``table`` (sent as is, even above 256 entries: KVM decides)."""
        if not isinstance(table, CpuidTable):
            table = CpuidTable(table)
        self._call("set_cpuid", table)

    def get_cpuid(self) -> CpuidTable:
        """KVM_GET_CPUID2: the table the vCPU really holds."""
        return self._call("get_cpuid")

    def set_cr4(self, value: int) -> None:
        """KVM_GET_SREGS, replace CR4, KVM_SET_SREGS."""
        self._call("set_cr4", int(value))

    def get_sregs_cr4(self) -> int:
        return self._call("get_sregs_cr4")

    def set_xcr0(self, value: int) -> None:
        """KVM_SET_XCRS with one entry: XCR0 = ``value``."""
        self._call("set_xcr0", int(value))

    def get_xcr0(self) -> int:
        return self._call("get_xcr0")

    def set_msr(self, index: int, value: int) -> None:
        """KVM_SET_MSRS (host-initiated) of one MSR."""
        self._call("set_msr", int(index), int(value))

    def get_msr(self, index: int) -> int:
        return self._call("get_msr", int(index))

    def disable_quirk(self, name: str) -> None:
        self._call("disable_quirk", name)

    def disable_hlt_exits(self) -> None:
        self._call("disable_hlt_exits")

    def grant_xfeature_permission(self, mask: int) -> None:
        """arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM) in the agent process (one process for all the lab's vCPUs)."""
        self._call("grant_xfeature_permission", int(mask))

    def run(self, timeout: float | None = None, *, code: bytes | None = None) -> None:
        """KVM_RUN of the real-mode ``hlt`` guest (or ``code``), as :meth:`cpuidkit.live.LiveVcpu.run`."""
        kwargs = {} if code is None else {"code": bytes(code)}
        self._call("run", None if timeout is None else run_seconds(timeout, "timeout"), **kwargs)

    # -- beyond the protocol ----------------------------------------------------------------
    def get_cpuid2_nent(self, nent: int = 256) -> int:
        """One raw KVM_GET_CPUID2 with room for ``nent`` entries: the ``nent`` the guest kernel leaves.

        :meth:`get_cpuid` always returns exactly the stored entries; this shows what the kernel itself
        reports (Debian's 6.1: ``nent`` unchanged on success, 256 for 30 entries; 6.12: the count), as
        :meth:`cpuidkit.kvm.vcpu.SimulatedVcpu.get_cpuid2_nent` predicts.  E2BIG raises.
        """
        if self.closed:
            raise KvmError(
                "EBADF", "this LabVcpu (or its KernelLab) is closed; create a new one", operation="KVM_GET_CPUID2"
            )
        return self._lab.request("vcpu.get_cpuid2_nent", handle=self._handle, nent=int(nent))

    def batch(self, calls: list[tuple[str, tuple]]) -> list[tuple[object, str | None]]:
        """Several calls in one round trip to the guest: ``[(method, args), ...]`` → ``[(result, errno), ...]``.

        Each call is made in order on this vCPU; a refused one gives ``(None, errno name)`` and the next
        calls still run (what a sequence of separate calls catching :class:`~cpuidkit.KvmError` would see).
        ``method`` is one of the Vcpu calls or ``get_cpuid2_nent``.
        """
        if self.closed:
            raise KvmError("EBADF", "this LabVcpu (or its KernelLab) is closed; create a new one", operation="batch")
        answers = self._lab.request(
            "vcpu.batch", handle=self._handle, calls=[[method, list(args)] for method, args in calls]
        )
        return [(value, errno_name) for value, errno_name in answers]

    # -- beyond the protocol (as LiveVcpu) ------------------------------------------------
    def supported_cpuid(self) -> CpuidTable:
        return self._call("supported_cpuid")

    def emulated_cpuid(self) -> CpuidTable:
        return self._call("emulated_cpuid")

    def check_extension(self, cap: int) -> int:
        return self._call("check_extension", int(cap))
