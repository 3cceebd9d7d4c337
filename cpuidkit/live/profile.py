"""This machine as a HostProfile, measured through /dev/kvm, and the one resolver of host specs that knows ``"live"``."""

from __future__ import annotations

import functools

from cpuidkit.core.hosts import HostProfile
from cpuidkit.live._hostcpuid import host_cpuid_table
from cpuidkit.live._sys import detect_vendor, kernel_version
from cpuidkit.live.calibrate import calibrate_pvm
from cpuidkit.live.system import supported_cpuid, xfeature_permissions
from cpuidkit.live.vcpu import LiveVcpu


@functools.cache
def _measure() -> HostProfile:
    vendor = detect_vendor()[0] or "vmx"
    supported = supported_cpuid()
    perms = xfeature_permissions()
    rewrite = calibrate_pvm(supported) if vendor == "pvm" else None

    with LiveVcpu() as v:
        misc = v.get_msr(0x1A0)
    return HostProfile(
        name="live",
        cpuid=host_cpuid_table(),
        source=f"this machine, measured through /dev/kvm (kernel {kernel_version()}, vendor {vendor})",
        description="the machine cpuidkit runs on",
        tdp=True,
        supported=supported,
        vendor_rewrite=rewrite,
        guest_perm_xcr0=perms.get("guest"),
        supported_xcr0=perms.get("kvm_guest_supp"),
        vendor_module=vendor,
        reset_misc_enable=misc,
    )


def host_profile(refresh: bool = False) -> HostProfile:
    """Measure this host once per process (``refresh=True`` measures again)."""
    if refresh:
        _measure.cache_clear()
    return _measure()


def resolve_host(spec: str | HostProfile | None) -> HostProfile:
    """A host spec as users write it: ``"live"`` (this machine, measured once per process), a built-in
    name, a dump file or a :class:`~cpuidkit.core.hosts.HostProfile`."""
    if spec == "live":
        return host_profile()
    return HostProfile.resolve(spec)
