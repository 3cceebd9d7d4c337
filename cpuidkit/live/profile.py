"""HostProfile.live(): this machine, measured."""

from __future__ import annotations

import functools

from ..kvm.host import HostProfile


@functools.cache
def _measure() -> HostProfile:
    from . import host_cpuid_table, supported_cpuid, xfeature_permissions
    from ._sys import detect_vendor, kernel_version
    from .calibrate import calibrate_pvm

    vendor = detect_vendor()[0] or "vmx"
    supported = supported_cpuid()
    perms = xfeature_permissions()
    rewrite = calibrate_pvm(supported) if vendor == "pvm" else None
    from .vcpu import LiveVcpu

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
