"""The Firecracker fingerprints (one CPU, host kernels 5.10 / 6.1 / 6.18) explained by the kernel profiles."""

from __future__ import annotations

import pytest

from conftest import DUMPS
from cpuidkit.core.history import fingerprint_changes, predicted_present
from cpuidkit.core.sources import load

CPUS = ["INTEL_CASCADELAKE", "INTEL_ICELAKE", "INTEL_SAPPHIRE_RAPIDS", "INTEL_GRANITE_RAPIDS", "AMD_MILAN", "AMD_GENOA"]


def fingerprints(cpu: str) -> dict:
    return {k: load(DUMPS / "firecracker" / f"fingerprint_{cpu}_{k}host.json") for k in ("5.10", "6.1", "6.18")}


@pytest.mark.parametrize("cpu", CPUS)
def test_no_difference_contradicts_the_profiles(cpu):
    changes = fingerprint_changes(fingerprints(cpu))
    assert changes, "the three kernels give different guest CPUID"
    bad = [str(c) for c in changes if c.predicted is False]
    assert not bad, bad
    for c in changes:  # the listing a reader gets (pytest -s shows it)
        print(cpu, c)


@pytest.mark.parametrize("cpu,amx", [("INTEL_SAPPHIRE_RAPIDS", True), ("INTEL_GRANITE_RAPIDS", True),
                                     ("INTEL_ICELAKE", False), ("AMD_GENOA", False)])
def test_amx_in_xcr0_only_from_61(cpu, amx):
    t = fingerprints(cpu)
    for k, table in t.items():
        has = bool(table.get(0xD, 0).eax >> 17 & 3)
        assert has == (amx and predicted_present("xcr0_supported_lo", k)), (cpu, k)
    assert predicted_present("xcr0_supported_lo", "5.10") is False and predicted_present("xcr0_supported_lo", "6.1")


@pytest.mark.parametrize("cpu", CPUS)
def test_guest_phys_bits_only_on_618(cpu):
    for k, table in fingerprints(cpu).items():
        gpb = table.get(0x80000008).eax >> 16 & 0xFF
        assert bool(gpb) == predicted_present("guest_phys_addr_bits", k), (cpu, k, gpb)


def test_cet_arrives_with_618_where_the_host_has_it():
    for cpu in ("INTEL_SAPPHIRE_RAPIDS", "AMD_GENOA"):
        t = fingerprints(cpu)
        assert t["6.18"].get(0xD, 1).ecx & 0x1800 == 0x1800 and not t["6.1"].get(0xD, 1).ecx & 0x1800
    assert predicted_present("shstk", "6.17") is False and predicted_present("shstk", "6.18") is True


def test_predicted_changes_are_found_for_every_amx_cpu():
    for cpu in ("INTEL_SAPPHIRE_RAPIDS", "INTEL_GRANITE_RAPIDS"):
        got = {(c.old_kernel, c.field) for c in fingerprint_changes(fingerprints(cpu)) if c.predicted}
        assert ("5.10", "amx_tile") in got and ("5.10", "0xd.18") in got and ("6.1", "guest_phys_addr_bits") in got


def test_the_embedded_copies_equal_the_recorded_fingerprints():
    # data/fingerprints (made by tools/make_fingerprint_data.py) lets the course run without tests/data
    from cpuidkit._files import data_dir

    for cpu in CPUS:
        for k, table in fingerprints(cpu).items():
            assert load(data_dir() / "fingerprints" / f"{cpu}_{k}.json") == table, (cpu, k)
