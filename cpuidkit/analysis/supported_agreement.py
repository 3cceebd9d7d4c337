"""The KVM_GET_SUPPORTED_CPUID predictor against real kernels, register by register.

:func:`cpuidkit.core.supported.predict_supported_cpuid` predicts what a kernel's KVM offers from the host's
CPUID.  Here the prediction meets the kernel's own answer:

* in the kernel lab (:func:`lab_supported_agreement`): the host is QEMU's CPU model as the lab guest kernel
  sees it (its CPUID instruction), the kernel the lab's Debian build (a point release, so its stable backports
  count), the vendor kvm_amd, and the guest kernel's command line decides ``mitigations``;
* on this machine (:func:`live_supported_agreement`): the host's CPUID measured now on the CPU the ioctl then
  runs on (some fields are per CPU), the running kernel and vendor module; with the out-of-tree pvm module the leaves it decides itself (``PVM_OWNED_LEAVES``: 1, 7 and
  0xD, whose capability bits it sets from code that is not public, and 0x1D, 0x1E and 0x24, which follow those
  bits) are left out and named in the result.

:func:`compare_supported` is the neutral part: every (function, index) of either table, five values each
(flags, EAX, EBX, ECX, EDX; a missing entry is a disagreement on all five), and whether the entries come in
the same order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cpuidkit.core.supported import PVM_OWNED_LEAVES, KvmSetup, predict_supported_cpuid
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.live import host_cpuid_table, supported_cpuid
from cpuidkit.live._sys import detect_vendor

__all__ = [
    "LAB_CPU_MODELS",
    "SupportedAgreement",
    "compare_supported",
    "lab_setup",
    "lab_supported_agreement",
    "live_supported_agreement",
]

_FIELDS = ("flags", "eax", "ebx", "ecx", "edx")
# The QEMU CPU models the prediction is checked on in the lab (the lab's default first; the last is ``max`` with
# features turned off).  Opteron_G5 would be a sixth but does not boot under TCG (docs/lab.md).
LAB_CPU_MODELS = ("EPYC-Rome", "EPYC", "EPYC-Milan", "max", "max,-pku,-la57")


@dataclass
class SupportedAgreement:
    """One comparison: how many register values the prediction got right, and which it did not."""

    kernel: str
    vendor: str
    host: str
    registers: int = 0
    agreeing: int = 0
    entries_measured: int = 0
    entries_predicted: int = 0
    same_order: bool = True
    skipped_leaves: tuple[int, ...] = ()
    disagreements: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return self.registers > 0 and self.agreeing == self.registers and self.same_order

    def as_dict(self) -> dict:
        return {
            "kernel": self.kernel,
            "vendor": self.vendor,
            "host": self.host,
            "registers": self.registers,
            "agreeing": self.agreeing,
            "entries_measured": self.entries_measured,
            "entries_predicted": self.entries_predicted,
            "same_order": self.same_order,
            "skipped_leaves": [f"{f:#x}" for f in self.skipped_leaves],
            "disagreements": list(self.disagreements),
        }

    def __str__(self) -> str:
        skipped = (
            f", leaves {', '.join(f'{f:#x}' for f in self.skipped_leaves)} left out" if self.skipped_leaves else ""
        )
        head = f"{self.host}, kernel {self.kernel}/{self.vendor}: {self.agreeing}/{self.registers} registers agree"
        order = "" if self.same_order else ", entries in a different order"
        return head + order + skipped + "".join(f"\n  {d}" for d in self.disagreements)


def _key(e: CpuidEntry) -> tuple[int, int]:
    return (e.function, e.index)


def compare_supported(
    measured: CpuidTable,
    predicted: CpuidTable,
    *,
    kernel: str = "",
    vendor: str = "",
    host: str = "",
    skip_leaves: tuple[int, ...] = (),
) -> SupportedAgreement:
    """Compare two KVM_GET_SUPPORTED_CPUID tables entry by entry, register by register (``skip_leaves`` left out)."""
    keep = [e for e in measured if e.function not in skip_leaves]
    pred = [e for e in predicted if e.function not in skip_leaves]
    out = SupportedAgreement(kernel, vendor, host, entries_measured=len(keep), entries_predicted=len(pred))
    out.skipped_leaves = tuple(skip_leaves)
    m = {_key(e): e for e in reversed(keep)}  # the first of duplicate keys, as KVM's lookup
    p = {_key(e): e for e in reversed(pred)}
    for key in sorted(set(m) | set(p)):
        a, b = m.get(key), p.get(key)
        for name in _FIELDS:
            out.registers += 1
            va = getattr(a, name) if a is not None else None
            vb = getattr(b, name) if b is not None else None
            if va == vb:
                out.agreeing += 1
            else:
                shown_a = "absent" if va is None else f"{va:#010x}"
                shown_b = "absent" if vb is None else f"{vb:#010x}"
                out.disagreements.append(f"{key[0]:#x}.{key[1]} {name}: kernel {shown_a}, predicted {shown_b}")
    out.same_order = [_key(e) for e in keep] == [_key(e) for e in pred]
    return out


def lab_setup(lab) -> KvmSetup:
    """The setup a lab guest's kvm_amd runs with: upstream defaults, and mitigations as its command line says."""
    return KvmSetup.for_vendor(lab.vendor, mitigations="mitigations=off" not in lab.command_line.split())


def lab_supported_agreement(lab) -> tuple[SupportedAgreement, CpuidTable, CpuidTable]:
    """Predict the lab kernel's KVM_GET_SUPPORTED_CPUID from its guest CPUID and compare with the real one.

    Returns the comparison, the measured and the predicted table.  The kernel is the Debian build's version
    (``6.1.192-3``: a point release, so the backports of data/kvm-supported-cpuid.csv apply).
    """
    guest = lab.guest_cpuid()
    measured = lab.supported_cpuid()
    predicted = predict_supported_cpuid(guest, lab.package_version, lab.vendor, setup=lab_setup(lab))
    agreement = compare_supported(
        measured,
        predicted,
        kernel=lab.package_version,
        vendor=lab.vendor,
        host=f"QEMU -cpu {lab.cpu} (lab)",
    )
    return agreement, measured, predicted


def live_supported_agreement(device: str = "/dev/kvm") -> tuple[SupportedAgreement, CpuidTable, CpuidTable]:
    """The same on this machine: its CPUID measured now, the running kernel and vendor module."""
    vendor = detect_vendor()[0] or "vmx"
    release = os.uname().release
    # Both on one CPU: KVM reads the CPUID of the CPU the ioctl runs on, and some fields are per CPU (the
    # x2APIC ID in 0xB/0x1F EDX, the initial APIC ID in 1.EBX).  The affinity is the calling thread's.
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        host = host_cpuid_table()
        measured = supported_cpuid(device)
    finally:
        os.sched_setaffinity(0, allowed)
    predicted = predict_supported_cpuid(host, release, vendor)
    skip = PVM_OWNED_LEAVES if vendor == "pvm" else ()
    agreement = compare_supported(
        measured, predicted, kernel=release, vendor=vendor, host="this machine", skip_leaves=skip
    )
    return agreement, measured, predicted
