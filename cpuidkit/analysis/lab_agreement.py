"""Model-vs-kernel agreement on the kernel lab: Debian's real kernels with upstream kvm_amd, booted in QEMU.

The same scenarios :mod:`cpuidkit.analysis.agreement` runs against this machine's /dev/kvm (its seeded
random generator and every scripted scenario, from the kernel's own KVM_GET_SUPPORTED_CPUID) run here on
a :class:`~cpuidkit.lab.KernelLab` vCPU and on the model built for that kernel::

    with KernelLab("6.1") as lab:
        figures = lab_agreement(lab, n=300, seed=1)   # {"cases": 300, "agreed": 300, ...}

The model's host is the lab guest as its KVM sees it (:func:`lab_host_profile`): the CPUID of QEMU's
CPU model, the lab kernel's KVM_GET_SUPPORTED_CPUID and XSAVE permissions, vendor ``svm``, kernel the
lab's ``X.Y``.  A case agrees when every step gives the same errno, the final KVM_GET_CPUID2 tables are
equal on every register (kvm_amd owns no field the way pvm does: no mask), and the state read back
afterwards is the same (:data:`PROBES`: XCR0, the APIC base, MISC_ENABLE, IA32_XSS, the ``nent``
KVM_GET_CPUID2 reports, which CPUID-dependent CR4 bits and which XCR0 values the vCPU accepts).

:func:`compare_backends` is the backend-neutral part: any two Vcpu factories, one scenario.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cpuidkit.analysis.agreement import (
    Result,
    Step,
    compare,
    random_scenario,
    run_steps,
    scripted_scenarios,
    vendor_masks,
)
from cpuidkit.core.hosts import HostProfile
from cpuidkit.errors import KvmError
from cpuidkit.kvm.interface import MSR_IA32_APICBASE, MSR_IA32_MISC_ENABLE, MSR_IA32_XSS
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.lab import KernelLab, LabVcpu

__all__ = [
    "PROBES",
    "Probe",
    "CaseOutcome",
    "lab_host_profile",
    "lab_model",
    "probe",
    "compare_backends",
    "lab_agreement",
]

# CR4 bits whose legality KVM derives from CPUID (plus CET and LAM_SUP, unknown to 6.1/6.12: reserved)
CR4_PROBE_BITS = (11, 12, 13, 16, 17, 18, 20, 21, 22, 23, 28)
# XCR0 values across __kvm_set_xcr's rules: x87 missing, AVX without SSE, MPX pair, AVX-512 trio, AMX pair, PKRU
XCR0_PROBES = (0x1, 0x3, 0x7, 0x5, 0x0, 0x207, 0xE7, 0x27, 0x60007, 0x20007, 0x1F, 0x2E7)


@dataclass(frozen=True)
class Probe:
    """One read-back after a scenario: a Vcpu call whose answer (value, or errno) both backends must share."""

    name: str
    method: str
    args: tuple = ()


PROBES: tuple[Probe, ...] = (
    Probe("XCR0", "get_xcr0"),
    Probe("IA32_APIC_BASE", "get_msr", (MSR_IA32_APICBASE,)),
    Probe("IA32_MISC_ENABLE", "get_msr", (MSR_IA32_MISC_ENABLE,)),
    Probe("IA32_XSS", "get_msr", (MSR_IA32_XSS,)),
    Probe("KVM_GET_CPUID2 nent (asked with 256)", "get_cpuid2_nent", (256,)),
    *(Probe(f"CR4 bit {b} accepted", "set_cr4", (1 << b,)) for b in CR4_PROBE_BITS),
    *(Probe(f"XCR0 {v:#x} accepted", "set_xcr0", (v,)) for v in XCR0_PROBES),
)


def probe(vcpu, probes: Iterable[Probe] = PROBES) -> list[tuple[object, str | None]]:
    """Each probe's (value, errno) on ``vcpu``, in order (a LabVcpu answers them all in one round trip)."""
    calls = [(p.method, p.args) for p in probes]
    if isinstance(vcpu, LabVcpu):
        return vcpu.batch(calls)
    out: list[tuple[object, str | None]] = []
    for method, args in calls:
        try:
            out.append((getattr(vcpu, method)(*args), None))
        except KvmError as e:
            out.append((None, e.errno_name))
    return out


def lab_host_profile(lab: KernelLab) -> HostProfile:
    """The host the lab kernel's KVM runs on, for the model: QEMU's CPU model as the guest kernel sees it.

    ``cpuid`` is what the CPUID instruction returns in the lab guest, ``supported`` the lab kernel's
    KVM_GET_SUPPORTED_CPUID, the XSAVE permissions and KVM_X86_XCOMP_GUEST_SUPP those of the agent
    process, IA32_MISC_ENABLE after reset read from a fresh vCPU; vendor module ``svm`` (kvm_amd).
    """
    perms = lab.xfeature_permissions()
    with lab.vcpu() as v:
        misc = v.get_msr(MSR_IA32_MISC_ENABLE)
    return HostProfile(
        name=f"lab {lab.series}",
        cpuid=lab.guest_cpuid(),
        source=f"the kernel lab: {lab.label} ({lab.kernel_release}), QEMU TCG -cpu {lab.cpu}",
        description=f"QEMU's {lab.cpu} CPU model under TCG, as the lab guest kernel sees it",
        tdp=True,
        supported=lab.supported_cpuid(),
        guest_perm_xcr0=perms.get("guest"),
        supported_xcr0=perms.get("kvm_guest_supp"),
        vendor_module=lab.vendor,
        reset_misc_enable=misc,
    )


def lab_model(lab: KernelLab, host: HostProfile | None = None) -> Callable[[], SimulatedVcpu]:
    """A factory of the model's vCPUs for the lab's kernel (``X.Y``), vendor and host."""
    host = host if host is not None else lab_host_profile(lab)
    kernel, vendor = lab.kernel, lab.vendor

    def make() -> SimulatedVcpu:
        return SimulatedVcpu(kernel=kernel, vendor=vendor, host=host)

    return make


@dataclass
class CaseOutcome:
    """One scenario on both backends: what each answered, and the differences ([] when they agree)."""

    model: Result
    kernel: Result
    model_probes: list = field(default_factory=list)
    kernel_probes: list = field(default_factory=list)
    diff: list[str] = field(default_factory=list)


def compare_backends(
    model_factory: Callable[[], object],
    kernel_factory: Callable[[], object],
    steps: list[Step],
    masks: dict | None = None,
    probes: Iterable[Probe] = PROBES,
) -> CaseOutcome:
    """Run ``steps`` on a fresh vCPU of each backend, then the read-back probes; compare everything.

    The factories return Vcpu objects (closed here after use).  ``masks`` are the bits the vendor
    module owns (:func:`~cpuidkit.analysis.agreement.vendor_masks`), left out of the table comparison.
    """
    probes = tuple(probes)

    def run_on(factory: Callable[[], object]) -> tuple:
        vcpu = factory()
        try:
            return run_steps(vcpu, steps), probe(vcpu, probes)
        finally:
            vcpu.close()  # type: ignore[attr-defined]

    m, mp = run_on(model_factory)
    k, kp = run_on(kernel_factory)
    diff = compare(m, k, masks or {})
    for p, (mv, me), (kv, ke) in zip(probes, mp, kp):
        if me != ke:
            diff.append(f"probe {p.name}: model {me or 'ok'}, kernel {ke or 'ok'}")
        elif me is None and mv != kv:
            shown = (hex(mv), hex(kv)) if isinstance(mv, int) and isinstance(kv, int) else (mv, kv)
            diff.append(f"probe {p.name}: model {shown[0]}, kernel {shown[1]}")
    return CaseOutcome(m, k, mp, kp, diff)


def _describe(steps: list[Step]) -> list[str]:
    return [str(s) for s in steps]


def lab_agreement(
    lab: KernelLab,
    n: int = 300,
    seed: int = 1,
    *,
    scripted: bool = True,
    host: HostProfile | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep: int = 20,
) -> dict:
    """Agreement of the model with the lab's kernel over ``n`` seeded random scenarios (and every scripted one).

    Returns the figures: ``cases``/``agreed`` (random), ``scripted``/``scripted_agreed``, the kernel's
    answers per step (``kernel_answers``: errno name or ``ok`` → count), per answer how many of those
    steps the model matched (``agreed_answers``), the first differences (``disagreement_kinds``) and up to
    ``keep`` disagreeing scenarios in full (``examples``), the kernel build (``package``,
    ``package_version``, ``kernel_release``, ``cpu``) and the time taken.
    """
    host = host if host is not None else lab_host_profile(lab)
    model_factory = lab_model(lab, host)
    masks = vendor_masks(lab.vendor, host)
    base = host.supported
    assert base is not None  # lab_host_profile measures it
    out: dict = {
        "series": lab.series,
        "kernel": lab.kernel,
        "vendor": lab.vendor,
        "package": lab.package,
        "package_version": lab.package_version,
        "kernel_release": lab.kernel_release,
        "cpu": lab.cpu,
        "seed": seed,
    }
    answers: Counter = Counter()
    agreed_answers: Counter = Counter()
    kinds: Counter = Counter()
    examples: list[dict] = []

    def one(name: str, steps: list[Step]) -> bool:
        case = compare_backends(model_factory, lab.vcpu, steps, masks)
        for a, b in zip(case.model.errnos, case.kernel.errnos):
            answers[b or "ok"] += 1
            agreed_answers[b or "ok"] += a == b
        if case.diff:
            kinds[case.diff[0].split(":")[0].split(" (")[0]] += 1
            if len(examples) < keep:
                examples.append({"case": name, "steps": _describe(steps), "diff": case.diff[:8]})
        return not case.diff

    start = time.perf_counter()
    if scripted:
        names = scripted_scenarios(base)
        out["scripted"] = len(names)
        out["scripted_agreed"] = sum(one(name, steps) for name, steps in names.items())
    t_random = time.perf_counter()
    rng = random.Random(seed)
    agreed = 0
    for i in range(n):
        agreed += one(f"random {i} (seed {seed})", random_scenario(rng, base))
        if progress is not None:
            progress(i + 1, n)
    done = time.perf_counter()
    out.update(
        cases=n,
        agreed=agreed,
        kernel_answers=dict(sorted(answers.items())),
        agreed_answers=dict(sorted(agreed_answers.items())),
        disagreement_kinds=dict(kinds),
        examples=examples,
        seconds=done - start,
        random_seconds=done - t_random,
        ms_per_random_case=1e3 * (done - t_random) / n if n else None,
    )
    return out
