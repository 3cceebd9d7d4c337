"""The two errors of the kernel lab.

Both join cpuidkit's tree (``CpuidkitError``)::

    KvmUnavailable
    └── LabUnavailable     the lab cannot start on this machine: a tool (QEMU,
                           busybox-static, cpio, apt-get, dpkg-deb) or the kernel
                           package is missing; says what to install
    LabError (RuntimeError) the guest failed: it did not boot in time, the agent
                           stopped answering, or it hit an unexpected error

KVM refusing something inside the guest is neither: that comes back as the
same :class:`~cpuidkit.KvmError` (errno name, explanation) ``LiveVcpu`` raises.
"""

from __future__ import annotations

from cpuidkit.errors import CpuidkitError, KvmUnavailable

__all__ = ["LabUnavailable", "LabError"]


class LabUnavailable(KvmUnavailable):
    """The kernel lab cannot run here (a tool or a kernel package is missing)."""

    def __init__(self, explanation: str, errno_name: str = "ENOENT"):
        super().__init__(errno_name, explanation, operation="kernel lab")


class LabError(CpuidkitError, RuntimeError):
    """The lab's guest failed: boot timeout, a dead agent, or an unexpected agent error.

    ``console`` holds the tail of the guest's serial console when it helps.
    """

    def __init__(self, message: str, *, console: str | None = None):
        self.message = message
        self.console = console
        text = message
        if console:
            text += "\n--- guest console (last lines) ---\n" + console.rstrip()
        super().__init__(text)
