"""``check()``: KVM's whole answer for one table, as one value a notebook or the CLI can show.

The answer has the verdict (accepted / rejected with errno, rule, explanation
and kernel source), the table KVM_GET_CPUID2 would return, the ownership of
every named field, and the state KVM derived (MAXPHYADDR, reserved GPA bits,
guest_supported_xcr0, CR4 reserved bits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cpuidkit._files import display_name, read_input_text
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.sources._common import load_json
from cpuidkit.core.sources.kvm_json import parse_doc
from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import InputError, KvmError
from cpuidkit.kvm.interface import MSR_IA32_APICBASE, MSR_IA32_MISC_ENABLE, MSR_IA32_XSS
from cpuidkit.kvm.ownership import Ownership, ownership
from cpuidkit.kvm.ownership import as_dicts as ownership_dicts
from cpuidkit.kvm.vcpu import SimulatedVcpu

__all__ = ["VcpuSetup", "Outcome", "check", "load_state"]

_STATE_KEYS = {
    "cr4",
    "xcr0",
    "xss",
    "apic_base",
    "misc_enable",
    "quirks_disabled",
    "hlt_exits_disabled",
    "has_run",
    "previous",
    "xfeature_permission",
}


@dataclass(frozen=True)
class VcpuSetup:
    """The vCPU state a VMM writes after KVM_SET_CPUID2, which a table is checked against (the keys of a
    STATE.json; None: left at its reset value).  The one state type: the CLI's ``--state``, the notebooks'
    Lab and the review all use it."""

    cr4: int | None = None
    xcr0: int | None = None
    xss: int | None = None
    apic_base: int | None = None
    misc_enable: int | None = None
    quirks_disabled: tuple[str, ...] = ()
    hlt_exits_disabled: bool = False
    has_run: bool = False
    previous: CpuidTable | None = None  # the table the vCPU was set with before KVM_RUN
    xfeature_permission: int = 0

    @classmethod
    def from_dict(cls, doc: dict, source: str | None = None) -> VcpuSetup:
        if not isinstance(doc, dict):
            raise InputError("the state must be a JSON object", source=source)
        unknown = sorted(set(doc) - _STATE_KEYS)
        if unknown:
            raise InputError(
                f"unknown state key(s) {', '.join(unknown)}; known: {', '.join(sorted(_STATE_KEYS))}", source=source
            )
        kw: dict = {}
        for key in ("cr4", "xcr0", "xss", "apic_base", "misc_enable", "xfeature_permission"):
            if doc.get(key) is not None:
                kw[key] = _u64(doc[key], key, source)
        for key in ("hlt_exits_disabled", "has_run"):
            if key in doc:
                if not isinstance(doc[key], bool):
                    raise InputError(f"{key} must be true or false", source=source, where=key)
                kw[key] = doc[key]
        if "quirks_disabled" in doc:
            q = doc["quirks_disabled"]
            if not isinstance(q, list) or not all(isinstance(x, str) for x in q):
                raise InputError(
                    "quirks_disabled must be a list of quirk names", source=source, where="quirks_disabled"
                )
            kw["quirks_disabled"] = tuple(q)
        if doc.get("previous") is not None:
            where = f"{source or 'state'}:previous"
            kw["previous"] = CpuidTable(parse_doc(doc["previous"], where), source=where)
        return cls(**kw)


def _u64(v, key, source) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise InputError(f"{key} must be a number", source=source, where=key)
    try:
        n = int(v, 0) if isinstance(v, str) else v
    except ValueError:
        raise InputError(f"{key} must be a number like 0x40000, got {v!r}", source=source, where=key) from None
    if not 0 <= n < 1 << 64:
        raise InputError(f"{key} must fit in 64 bits", source=source, where=key)
    return n


def load_state(path: str | Path) -> VcpuSetup:
    """A STATE.json, read through the one hardened reader."""
    name = display_name(path)
    return VcpuSetup.from_dict(load_json(read_input_text(path), name), source=name)


@dataclass(frozen=True)
class Outcome:
    """KVM's whole answer for one table; immutable (``derived`` is a read-only mapping)."""

    verdict: str  # "accepted" / "rejected"
    error: KvmError | None
    stored: CpuidTable
    fields: tuple[Ownership, ...]
    derived: Mapping[str, Any]
    kernel: str
    vendor: str
    host: str
    state_errors: tuple[dict, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.verdict == "accepted"

    @property
    def errno(self) -> str | None:
        return self.error.errno_name if self.error else None

    def as_dict(self) -> dict:
        err = self.error
        return {
            "verdict": self.verdict,
            "errno": err.errno_name if err else None,
            "rule": err.rule if err else None,
            "explanation": err.explanation if err else "KVM_SET_CPUID2 returns 0: the table is stored",
            "source": err.source if err else None,
            "kernel": self.kernel,
            "vendor": self.vendor,
            "host": self.host,
            "stored": self.stored.as_dicts(),
            "fields": ownership_dicts(self.fields),
            "derived": dict(self.derived),
            "state_errors": list(self.state_errors),
        }


def _apply_state(v: SimulatedVcpu, s: VcpuSetup, errors: list[dict]) -> None:
    steps = [
        ("cr4", lambda x: v.set_cr4(x)),
        ("xcr0", lambda x: v.set_xcr0(x)),
        ("xss", lambda x: v.set_msr(MSR_IA32_XSS, x)),
        ("apic_base", lambda x: v.set_msr(MSR_IA32_APICBASE, x)),
        ("misc_enable", lambda x: v.set_msr(MSR_IA32_MISC_ENABLE, x)),
    ]
    for key, fn in steps:
        val = getattr(s, key)
        if val is None:
            continue
        try:
            fn(val)
        except KvmError as e:
            errors.append({"step": key, **e.as_dict()})


def build_vcpu(kernel=DEFAULT_KERNEL, vendor="vmx", host=None, setup: VcpuSetup | None = None) -> SimulatedVcpu:
    """A SimulatedVcpu with the VM-level setup done (quirks, HLT exits, permissions)."""
    s = setup or VcpuSetup()
    v = SimulatedVcpu(kernel=kernel, vendor=vendor, host=host)
    for q in s.quirks_disabled:
        v.disable_quirk(q)
    if s.hlt_exits_disabled:
        v.disable_hlt_exits()
    if s.xfeature_permission:
        try:
            v.grant_xfeature_permission(s.xfeature_permission)
        except KvmError:
            pass  # the host cannot grant it: KVM_SET_CPUID2 will then answer EPERM, as it would for real
    return v


def check(
    table: CpuidTable,
    kernel: str = DEFAULT_KERNEL,
    vendor: str = "vmx",
    host: HostProfile | str | None = None,
    state: VcpuSetup | dict | None = None,
) -> Outcome:
    """What KVM does with ``table``: verdict, stored table, ownership, derived state.

    Without ``has_run`` the table is the first KVM_SET_CPUID2 of a fresh vCPU,
    followed by the state writes a VMM makes (SREGS, XCRS, MSRS) so the stored
    table shows their runtime effect.  With ``has_run`` the ``previous`` table
    (or the table itself) is set, the state applied, the vCPU run, and the
    table set again: the verdict is the post-run rule's.
    """
    s = state if isinstance(state, VcpuSetup) else VcpuSetup.from_dict(state or {})
    v = build_vcpu(kernel, vendor, host, s)
    errors: list[dict] = []
    error: KvmError | None = None
    if s.has_run:
        try:
            v.set_cpuid(s.previous if s.previous is not None else table)
        except KvmError as e:
            errors.append({"step": "previous", **e.as_dict()})
        _apply_state(v, s, errors)
        try:
            v.run()  # fails where KVM_RUN would (SREGS before 6.13 with MAXPHYADDR < 32; HLT exits off)
        except KvmError as e:
            errors.append({"step": "run", **e.as_dict()})
        try:
            v.set_cpuid(table)
        except KvmError as e:
            error = e
    else:
        try:
            v.set_cpuid(table)
        except KvmError as e:
            error = e
        _apply_state(v, s, errors)
    stored = v.get_cpuid()
    fields = ownership(v, stored)
    derived = v.derived.as_dict()
    # 6.14+: KVM's checks see the guest's capabilities = CPUID ∩ what KVM supports (cpu_caps);
    # before, most checks read the guest CPUID as set.  Known only where KVM's support is measured.
    derived["capabilities"] = (
        "guest CPUID ∩ KVM's capabilities (cpu_caps, 6.14+)"
        if v.kernel_profile.flag("cpu_caps_intersection")
        else "guest CPUID as set (guest_cpuid_has, before 6.14)"
    )
    derived["not_virtualized"] = [o.field.name for o in fields if o.owner == "not-virtualized"]
    return Outcome(
        verdict="rejected" if error else "accepted",
        error=error,
        stored=stored,
        fields=tuple(fields),
        derived=MappingProxyType(derived),
        kernel=v.kernel,
        vendor=v.vendor,
        host=v.host.name,
        state_errors=tuple(errors),
    )
