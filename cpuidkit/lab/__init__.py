"""The kernel lab: Debian's own kernels with upstream kvm_amd, booted in QEMU, as a vCPU backend.

::

    from cpuidkit.lab import KernelLab
    with KernelLab("6.1", cpu="EPYC-Rome") as lab:     # boots once (~10 s), serves many calls
        v = lab.vcpu()                                 # LabVcpu: the Vcpu protocol
        v.set_cpuid(lab.supported_cpuid())
        v.get_cpuid()                                  # what that kernel's KVM holds

Where ``SimulatedVcpu`` is the model and ``LiveVcpu`` is this machine's
/dev/kvm, ``LabVcpu`` is a chosen Debian kernel (6.1, 6.12, ...) running
kvm_amd on QEMU's emulated SVM, so the model can be checked against real
kernels that differ from the host's.  See ``docs/lab.md``.

Modules: :mod:`.kernels` (find, download and cache kernel packages; module
order), :mod:`.initramfs` (busybox + modules + /init), :mod:`.qemu` (the QEMU
process), :mod:`.agent` (runs in the guest), :mod:`.lab` (``KernelLab``),
:mod:`.vcpu` (``LabVcpu``).  Importing this package starts nothing.
"""

from __future__ import annotations

from cpuidkit.lab._errors import LabError, LabUnavailable
from cpuidkit.lab.kernels import KernelBuild, cache_root, cached_kernels, ensure_kernel, newest_package
from cpuidkit.lab.lab import DEFAULT_CPU, KernelLab, missing_requirements
from cpuidkit.lab.vcpu import LabVcpu

__all__ = [
    "KernelLab",
    "LabVcpu",
    "LabError",
    "LabUnavailable",
    "KernelBuild",
    "DEFAULT_CPU",
    "cache_root",
    "cached_kernels",
    "ensure_kernel",
    "newest_package",
    "missing_requirements",
]
