"""The live backend: real ioctls on /dev/kvm and the real CPUID instruction.

Pure Python (ctypes, no compiled extension).  Importing this package makes no
system call; each helper opens what it needs and closes it again.

* :class:`LiveVcpu` -- the :class:`~cpuidkit.kvm.interface.Vcpu` protocol on a real VM;
* :func:`kvm_available`, :func:`vendor_module`, :func:`kvm_capabilities`,
  :func:`supported_cpuid`, :func:`xfeature_permissions` -- what this host's KVM offers;
* :func:`host_cpuid`, :func:`host_cpuid_table` -- what the CPU itself reports.
"""

from __future__ import annotations

from cpuidkit.live._hostcpuid import host_cpuid, host_cpuid_table
from cpuidkit.live.profile import host_profile, resolve_host
from cpuidkit.live.system import kvm_available, kvm_capabilities, supported_cpuid, vendor_module, xfeature_permissions
from cpuidkit.live.vcpu import LiveVcpu

__all__ = [
    "LiveVcpu",
    "kvm_available",
    "supported_cpuid",
    "host_cpuid",
    "host_cpuid_table",
    "host_profile",
    "resolve_host",
    "vendor_module",
    "kvm_capabilities",
    "xfeature_permissions",
]
