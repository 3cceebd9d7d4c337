"""Shared fixtures and the "required in CI" rule for tests that need real parts.

Tests marked ``kvm``, ``cpuid_tool`` or ``chromium`` need /dev/kvm, the Debian
``cpuid`` tool or Debian's chromium.  Where the part is missing they skip with
a clear reason, except when ``CPUIDKIT_REQUIRE`` names the marker (``.ci/run``
sets ``CPUIDKIT_REQUIRE=kvm,cpuid_tool,chromium``): then they fail, so CI can
never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cpuidkit.analysis.supported_agreement import LAB_CPU_MODELS as SUPPORTED_LAB_MODELS
from cpuidkit.lab import missing_requirements
from cpuidkit.lab.lab import DEFAULT_CPU

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / "tests" / "data"  # third-party and recorded inputs, kept in the repo (see its README.md)
DUMPS = TEST_DATA / "cpuid-dumps"
LIVE_DATA = TEST_DATA / "live-kvm"
KCPUID_CSV = TEST_DATA / "kcpuid" / "cpuid.csv"


def _kvm_usable() -> str | None:
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist on this machine"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm exists but this user cannot open it read-write"
    return None


def _cpuid_tool() -> str | None:
    return None if shutil.which("cpuid") else "the `cpuid` tool is not installed (apt-get install cpuid)"


def _chromium() -> str | None:
    return None if os.path.exists("/usr/bin/chromium") else "Debian's chromium is not installed (apt-get install chromium)"


def _lab() -> str | None:
    """The kernel lab (cpuidkit.lab) needs qemu-system-x86_64, a static busybox, cpio, apt-get and dpkg-deb."""
    missing = missing_requirements()
    return "the kernel lab cannot run here: " + "; ".join(missing) if missing else None


def _qemu() -> str | None:
    return None if shutil.which("qemu-system-x86_64") else "QEMU is not installed (apt-get install qemu-system-x86)"


_CHECKS = {"kvm": _kvm_usable, "cpuid_tool": _cpuid_tool, "chromium": _chromium, "lab": _lab, "qemu": _qemu}


def required_parts() -> set[str]:
    return {p.strip() for p in os.environ.get("CPUIDKIT_REQUIRE", "").split(",") if p.strip()}


def pytest_runtest_setup(item):
    required = required_parts()
    for name, check in _CHECKS.items():
        if name not in item.keywords:
            continue
        reason = check()
        if reason is None:
            continue
        if name in required:
            pytest.fail(f"required in this run (CPUIDKIT_REQUIRE={name}) but missing: {reason}")
        pytest.skip(reason)


LAB_SERIES = ("6.1", "6.12")  # the Debian kernels the lab boots (tests/test_lab.py, tests/test_lab_agreement.py)


@pytest.fixture(scope="session", params=LAB_SERIES)
def lab(request):
    """One booted KernelLab per kernel for the whole session, shared by every test module that asks for it.

    Session scope with parameters: pytest runs the tests of one kernel together (across modules), so
    one kernel boots at a time; its QEMU is ended by pid when the next kernel's tests start or the
    session ends.  Only tests marked ``lab`` may ask for it (the marker's check skips or fails first).
    """
    from cpuidkit.lab import KernelLab

    with KernelLab(request.param, log=print) as booted:
        yield booted


# The QEMU CPU models the supported-CPUID prediction is checked on besides the `lab` fixture's default
# (tests/test_supported_prediction.py; the list lives in cpuidkit.analysis.supported_agreement).
LAB_CPU_MODELS = tuple(m for m in SUPPORTED_LAB_MODELS if m != DEFAULT_CPU)


@pytest.fixture(scope="session", params=[(s, c) for s in LAB_SERIES for c in LAB_CPU_MODELS], ids=lambda p: f"{p[0]}-{p[1]}")
def lab_cpu_model(request):
    """One booted KernelLab per (kernel, CPU model) for the session: one boot each, ended by pid when the next
    parameter's tests start or the session ends.  Only tests marked ``lab`` may ask for it."""
    from cpuidkit.lab import KernelLab

    series, cpu = request.param
    with KernelLab(series, cpu=cpu, log=print) as booted:
        yield booted


@pytest.fixture(scope="session")
def test_data() -> Path:
    if not DUMPS.is_dir():
        pytest.fail(f"the test data is expected at {TEST_DATA} (part of the repository)")
    return TEST_DATA


def libvirt_dumps() -> list[Path]:
    return sorted((DUMPS / "libvirt").glob("*.xml"))


def firecracker_dumps() -> list[Path]:
    return sorted((DUMPS / "firecracker").glob("*.json"))


def libcpuid_dumps() -> list[Path]:
    return sorted((DUMPS / "libcpuid").glob("*.test"))


def all_dumps() -> list[Path]:
    return libvirt_dumps() + firecracker_dumps() + libcpuid_dumps() + sorted(LIVE_DATA.glob("*.json"))
