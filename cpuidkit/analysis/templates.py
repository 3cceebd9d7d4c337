"""CPU templates on hosts: where a template comes from, the base it is applied to, and what each field ends as.

* :func:`load_template` reads a template: a Firecracker custom CPU template file, or ``qemu:MODEL`` (the
  model's expansion asked of the real QEMU binary through QMP; where QEMU is not installed, the expansion
  recorded in ``data/qemu-models.json`` by ``tools/record_qemu_models.py``, and the template says so).
* :func:`apply_on_host` applies it to the host's KVM_GET_SUPPORTED_CPUID (predicted for the kernel and vendor
  module, or measured) as the VMM does (:func:`cpuidkit.core.templates.apply_template`); the VMM asks for
  every XSAVE permission first (Firecracker's ``request_dynamic_xstate_features()``, QEMU for AMX models).
* :func:`field_rows` says, per field of every register the template or the VMM touches: forced by the
  template (to 0, 1 or a value) or left to the host, the value the guest gets, and what KVM does with it
  (its owner in the stored table), and whether a forced 1 is backed by the host (offered by KVM there).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from cpuidkit._files import data_path, display_name, path_exists, read_input_text
from cpuidkit.analysis.migrate import KVM_PROVIDED
from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import XFEATURE_MASK_XTILE_DATA, HostProfile
from cpuidkit.core.sources import firecracker
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.templates import AppliedTemplate, CpuTemplate, apply_template, qemu_template
from cpuidkit.core.xsave import supported_xcr0
from cpuidkit.errors import InputError
from cpuidkit.kvm.check import check
from cpuidkit.lab import LabUnavailable
from cpuidkit.lab.qmp import expand_cpu_model

__all__ = [
    "QEMU_PREFIX",
    "is_template_spec",
    "load_template",
    "parse_template_text",
    "recorded_qemu_models",
    "qemu_model_template",
    "apply_on_host",
    "FieldRow",
    "field_rows",
    "HostRun",
    "TemplateFleet",
    "template_fleet",
    "template_choices",
    "shipped_template",
]

QEMU_PREFIX = "qemu:"
ALL_XFEATURES = (1 << 64) - 1  # the VMM asks for every dynamic XSAVE feature the host has


@functools.cache
def recorded_qemu_models() -> dict:
    """``data/qemu-models.json``: QEMU's expansions of the models the course uses, recorded with the binary."""
    doc = json.loads(data_path("qemu-models.json").read_text(encoding="utf-8"))
    return doc


def qemu_model_template(model: str, *, use_qemu: bool | None = None) -> CpuTemplate:
    """The template of QEMU CPU model ``model``: asked of the real QEMU (``use_qemu`` True), taken from the
    recorded expansions (False), or the real QEMU when it is installed and else the record (None)."""
    exp = None
    if use_qemu is not False:
        try:
            exp = expand_cpu_model(model)
        except LabUnavailable:
            if use_qemu:
                raise
    recorded = False
    if exp is None:
        models = recorded_qemu_models()["models"]
        if model not in models:
            raise InputError(
                f"QEMU is not installed here and no expansion of {model!r} is recorded "
                f"(recorded: {', '.join(sorted(models))})",
                where=QEMU_PREFIX + model,
            )
        exp = models[model]
        recorded = True
    t = qemu_template(model, exp["props"], qemu_version=exp.get("qemu_version", ""))
    label = f"QEMU {exp.get('qemu_version', '')} query-cpu-model-expansion, -accel {exp.get('accel', 'tcg')}" + (
        " (recorded)" if recorded else ""
    )
    return CpuTemplate(
        name=QEMU_PREFIX + model,
        kind="qemu",
        modifiers=t.modifiers,
        source=label,
        notes=t.notes,
        info=dict(t.info),
    )


def is_template_spec(spec: str) -> bool:
    """Whether ``spec`` names a template (``qemu:MODEL`` or a Firecracker custom CPU template file) rather than
    a finished CPUID table."""
    if spec.startswith(QEMU_PREFIX):
        return True
    if not path_exists(spec):
        return False
    try:
        text = read_input_text(spec)
    except InputError:
        return False
    return firecracker.is_template(text)


def parse_template_text(text: str, name: str) -> CpuTemplate:
    """A Firecracker custom CPU template from its text (a file picker's upload, for instance)."""
    if not firecracker.is_template(text):
        raise InputError(
            'expected a Firecracker custom CPU template (a JSON object with "cpuid_modifiers")', source=name
        )
    short = Path(display_name(name)).name  # reports name files without their folders
    return firecracker.parse_template(text, short, short)


def load_template(spec: str, *, use_qemu: bool | None = None) -> CpuTemplate:
    """``qemu:MODEL`` or a Firecracker custom CPU template file."""
    if spec.startswith(QEMU_PREFIX):
        return qemu_model_template(spec[len(QEMU_PREFIX) :], use_qemu=use_qemu)
    text = read_input_text(spec)
    return parse_template_text(text, display_name(spec))


def apply_on_host(
    template: CpuTemplate,
    host: HostProfile,
    *,
    kernel: str,
    vendor: str | None = None,
    base: CpuidTable | None = None,
    base_label: str | None = None,
    vcpus: int = 1,
) -> AppliedTemplate:
    """``template`` applied to ``host``'s KVM_GET_SUPPORTED_CPUID for ``kernel`` and ``vendor`` (or to ``base``)."""
    if base is None:
        base = host.supported_cpuid(xfeature_perm=ALL_XFEATURES, kernel=kernel, vendor=vendor)
        if host.supported is not None:
            label = f"KVM_GET_SUPPORTED_CPUID measured on {host.name}"
        else:
            label = f"KVM_GET_SUPPORTED_CPUID predicted for {host.name}, kernel {kernel}, {host.vendor_for(vendor)}"
    else:
        label = base_label or base.source or "the given base"
    return apply_template(template, base, host_cpuid=host.cpuid, base_label=label, vcpus=vcpus)


@dataclass(frozen=True)
class FieldRow:
    """One field of a register the template or the VMM touches."""

    name: str
    position: str  # "0x7.0.ebx[16]"
    decided_by: str  # template, partly template, vmm, host
    forced: int | None  # the template's value for the field's forced bits, when it forces all of them
    base: int | None  # the base's value (KVM's supported CPUID)
    guest: int | None  # what KVM_SET_CPUID2 is given
    kvm: str  # the field's owner in the stored table: passthrough, runtime, vendor (not-virtualized: measured)
    unbacked: bool  # a forced 1 the base does not offer: not backed by the host
    lint: tuple[str, ...]  # lint rules naming the field

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "position": self.position,
            "decided_by": self.decided_by,
            "forced": self.forced,
            "base": self.base,
            "guest": self.guest,
            "kvm": self.kvm,
            "unbacked": self.unbacked,
            "lint": list(self.lint),
        }


def _value(table: CpuidTable, leaf: int, sub: int, reg: str, mask: int, lo: int) -> int | None:
    for e in table:
        if e.function == leaf and e.index == sub:
            return (e.reg(reg) & mask) >> lo
    return None


def field_rows(applied: AppliedTemplate, outcome=None, lint=()) -> list[FieldRow]:
    """Every catalog field of every register the template forces or the VMM normalises, in position order.

    ``outcome``: KVM's check of ``applied.table`` (:func:`cpuidkit.kvm.check.check`), for the owner column;
    ``lint``: the lint findings on it, named per field."""
    owners: dict[tuple[str, int], str] = {}
    if outcome is not None:
        for o in outcome.fields:
            owners[(o.field.name, o.subleaf)] = o.owner
    by_field: dict[str, list[str]] = {}
    for f in lint:
        for name in f.fields:
            by_field.setdefault(name, []).append(f.rule)
    unbacked = applied.unbacked(KVM_PROVIDED)
    keys = sorted(set(applied.forced) | set(applied.normalised))
    cat = catalog()
    rows = []
    for leaf, sub, reg in keys:
        fmask, fvalue = applied.forced.get((leaf, sub, reg), (0, 0))
        for f in cat.in_register(leaf, sub, reg):
            decided = applied.provenance(leaf, sub, reg, f.mask)
            forced = (fvalue & f.mask) >> f.lo if fmask & f.mask == f.mask else None
            is_unbacked = bool(unbacked.get((leaf, sub, reg), 0) & f.mask)
            kvm = owners.get((f.name, sub), "passthrough")
            rows.append(
                FieldRow(
                    name=f.name,
                    position=f"{leaf:#x}.{sub}.{reg}[{f.bits}]",
                    decided_by=decided,
                    forced=forced if decided in ("template", "partly template") else None,
                    base=_value(applied.base, leaf, sub, reg, f.mask, f.lo),
                    guest=_value(applied.table, leaf, sub, reg, f.mask, f.lo),
                    kvm=kvm,
                    unbacked=is_unbacked,
                    lint=tuple(dict.fromkeys(by_field.get(f.name, ()))),
                )
            )
    return rows


# -- a template across a fleet ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HostRun:
    """One host of a template × fleet answer."""

    host: str
    runs: bool  # the VMM starts, every forced 1 is backed, and KVM accepts the table
    refused: tuple[str, ...]
    unbacked: tuple[str, ...]
    verdict: str  # KVM's verdict on the table (accepted / rejected)
    errno: str | None
    features: frozenset[str]  # feature flags the guest is given

    def as_dict(self) -> dict:
        return {
            "host": self.host,
            "runs": self.runs,
            "refused": list(self.refused),
            "unbacked": list(self.unbacked),
            "verdict": self.verdict,
            "errno": self.errno,
            "features": sorted(self.features),
        }


@dataclass(frozen=True)
class TemplateFleet:
    template: CpuTemplate
    kernel: str
    vendor: str | None
    runs: tuple[HostRun, ...]

    def columns(self) -> list[str]:
        """The features worth a column: those some host's guest gets and another's does not, and every forced
        1 (whether backed or not), in catalog order."""
        every = [r.features for r in self.runs]
        union = frozenset().union(*every) if every else frozenset()
        common = frozenset.intersection(*every) if every else frozenset()
        forced = {n for r in self.runs for n in r.unbacked}
        cat = catalog()
        ones = self.template.forced_ones()
        for (leaf, sub, reg), bits in ones.items():
            for f in cat.in_register(leaf, sub, reg):
                if f.is_flag and bits & f.mask:
                    forced.add(f.name)
        wanted = (union - common) | forced
        order = {f.name: i for i, f in enumerate(cat)}
        return sorted(wanted, key=lambda n: order.get(n, 1 << 30))

    def matrix(self) -> list[list[str]]:
        """One row per host, one cell per :meth:`columns` feature: ``1`` the guest gets it, ``.`` it does not,
        ``!`` forced to 1 but not backed by the host."""
        cols = self.columns()
        return [["!" if c in r.unbacked else ("1" if c in r.features else ".") for c in cols] for r in self.runs]

    def as_dict(self) -> dict:
        return {
            "template": self.template.name,
            "kind": self.template.kind,
            "kernel": self.kernel,
            "vendor": self.vendor,
            "hosts": [r.as_dict() for r in self.runs],
            "columns": self.columns(),
            "matrix": ["".join(row) for row in self.matrix()],
            "runs_on": sum(r.runs for r in self.runs),
        }


def _guest_features(table: CpuidTable) -> frozenset[str]:
    return frozenset(catalog().features(table))


def template_fleet(
    template: CpuTemplate, hosts: list[HostProfile], *, kernel: str, vendor: str | None = None
) -> TemplateFleet:
    """For every host: can ``template`` run there (its VMM starts, every forced 1 backed by the host's
    supported CPUID for ``kernel`` and ``vendor``, KVM accepts the table), and which features the guest gets."""
    out = []
    for h in hosts:
        applied = apply_on_host(template, h, kernel=kernel, vendor=vendor)
        unb = applied.unbacked(KVM_PROVIDED)
        names = [
            f.name
            for (leaf, sub, reg), bits in unb.items()
            for f in catalog().in_register(leaf, sub, reg)
            if f.is_flag and bits & f.mask
        ]
        # the VMM asks for AMX permission before KVM_SET_CPUID2 when the table enables TILEDATA (as review() does)
        perm = XFEATURE_MASK_XTILE_DATA if supported_xcr0(applied.table) & XFEATURE_MASK_XTILE_DATA else 0
        verdict = check(
            applied.table, kernel=kernel, vendor=h.vendor_for(vendor), host=h, state={"xfeature_permission": perm}
        )
        out.append(
            HostRun(
                host=h.name,
                runs=not applied.refused and not names and verdict.accepted,
                refused=applied.refused,
                unbacked=tuple(names),
                verdict=verdict.verdict,
                errno=verdict.errno,
                features=_guest_features(applied.table),
            )
        )
    return TemplateFleet(template=template, kernel=kernel, vendor=vendor, runs=tuple(out))


def template_choices() -> list[str]:
    """The templates shipped in ``data/``: every Firecracker x86 template (file names) and ``qemu:MODEL`` for
    every recorded QEMU model."""
    folder = data_path("firecracker-templates")
    files = sorted(p.name for p in folder.glob("*.json"))
    return files + [QEMU_PREFIX + m for m in sorted(recorded_qemu_models()["models"])]


def shipped_template(name: str, *, use_qemu: bool | None = None) -> CpuTemplate:
    """A template of :func:`template_choices` by its name."""
    if name.startswith(QEMU_PREFIX):
        return qemu_model_template(name[len(QEMU_PREFIX) :], use_qemu=use_qemu)
    if name not in template_choices():
        raise InputError(f"no shipped template {name!r}; choose one of {', '.join(template_choices())}")
    return load_template(str(data_path("firecracker-templates") / name))
