"""Section 0 of a review when the input is a CPU template: what the template forces, what it leaves to the host,
what the VMM's normalisation sets, and what KVM does with each field."""

from __future__ import annotations

from cpuidkit.analysis.review.document import Section, _hex, _names, _plural
from cpuidkit.analysis.templates import FieldRow
from cpuidkit.core.templates import AppliedTemplate

__all__ = ["template_section", "template_summary", "template_data"]

_KIND = {"firecracker": "a Firecracker custom CPU template", "qemu": "a QEMU CPU model"}
_DECIDED = {"template": "template", "partly template": "template (part)", "vmm": "VMM", "host": "host"}


def _v(n: int | None) -> str:
    if n is None:
        return "-"
    return str(n) if n < 10 else _hex(n)


def _counts(applied: AppliedTemplate) -> tuple[int, int]:
    zeros = ones = 0
    for mask, value in applied.forced.values():
        ones += bin(mask & value).count("1")
        zeros += bin(mask & ~value).count("1")
    return zeros, ones


def _unbacked_names(rows: list[FieldRow]) -> list[str]:
    return [r.name for r in rows if r.unbacked]


def template_summary(applied: AppliedTemplate, rows: list[FieldRow]) -> str:
    t = applied.template
    vmm = "Firecracker" if t.kind == "firecracker" else "QEMU"
    text = f"**Template `{t.name}`** ({_KIND[t.kind]}) applied to {applied.base_label}"
    if applied.refused:
        text += f": **{vmm} refuses to start** ({applied.refused[0]}" + (
            f", and {len(applied.refused) - 1} more)" if len(applied.refused) > 1 else ")"
        )
    bad = _unbacked_names(rows)
    if bad:
        text += f"; **{_plural(len(bad), 'forced 1')} not backed by the host**: {_names(bad, 8)}"
    elif not applied.refused:
        text += "; every bit it forces to 1 is backed by the host"
    return text


def template_section(applied: AppliedTemplate, rows: list[FieldRow], rejected: bool = False) -> Section:
    t = applied.template
    s = Section("0. The template and the VMM")
    zeros, ones = _counts(applied)
    s.p(
        f"`{t.name}` is {_KIND[t.kind]}" + (f" ({t.source})" if t.source and t.source != t.name else "") + ": "
        f"{_plural(len(applied.forced), 'register')} modified, {ones} bits forced to 1 and {zeros} to 0; "
        f"every other bit is left to the base, {applied.base_label}. "
        + (
            f"The table below is what Firecracker hands KVM_SET_CPUID2 for vCPU 0 of {applied.vcpus}"
            if t.kind == "firecracker"
            else "The table below is the model as QEMU builds it (up to its level and xlevel) before it drops the "
            "bits KVM does not back (listed below; with `enforce` it refuses to start instead)"
        )
        + "; the rest of this review is about that table."
    )
    if t.info:
        s.p("QEMU's expansion: " + ", ".join(f"{k} `{v}`" for k, v in t.info.items()) + ".")
    if applied.refused:
        vmm = "Firecracker" if t.kind == "firecracker" else "QEMU"
        s.p(f"**{vmm} refuses to start on this host** (it never reaches KVM_SET_CPUID2):")
        s.ul(list(applied.refused))
        s.p("The review below is of the table without the refused modifiers, to show what else would follow.")
    bad = [r for r in rows if r.unbacked]
    if bad:
        vmm_does = (
            "Firecracker passes it to KVM, which stores it"
            if t.kind == "firecracker"
            else "QEMU drops it with a warning by default and refuses to start with `enforce`"
        )
        s.p(
            f"**Forced to 1 but not backed by the host** (KVM does not offer it here; {vmm_does}): a guest that "
            "trusts the bit may "
            "use an instruction or state the host cannot give (#UD, or state KVM does not switch), or rely on a "
            "hint or an absence (`*_no`, `no_*`, `*_preferred`) the host does not promise:"
        )
        s.ul([f"`{r.name}` ({r.position})" for r in bad])
    linted = [r for r in rows if r.lint and r.decided_by in ("template", "partly template")]
    if linted:
        s.p("Forced values the lint flags (section 4 explains each rule):")
        s.ul([f"`{r.name}` = {_v(r.guest)}: {', '.join(f'`{x}`' for x in r.lint)}" for r in linted])
    if t.kind == "firecracker":
        s.p(
            "Firecracker's CPUID normalisation runs after the template (docs/cpu_templates/cpuid-normalization.md; "
            "data/firecracker-normalisation.csv). Modelled: "
            + "; ".join(applied.steps_modelled)
            + ". Not modelled (the base's values kept): "
            + ("; ".join(applied.steps_not_modelled) or "none")
            + "."
        )
        if t.msr_modifiers:
            s.p(
                f"{_plural(len(t.msr_modifiers), 'MSR modifier')} ("
                + ", ".join(f"{m.address:#x}" for m in t.msr_modifiers)
                + "): applied by Firecracker with KVM_SET_MSRS after the CPUID; cpuidkit does not model MSRs."
            )
    else:
        s.p("Not modelled: " + "; ".join(applied.steps_not_modelled) + ".")
    for note in t.notes:
        s.p(note[0].upper() + note[1:] + ".")
    shown = [r for r in rows if r.decided_by != "host" or r.guest]
    s.p(
        "Per field (every field of the registers the template or the VMM touches; fields left to the host are "
        "shown when the guest gets a non-zero value). *KVM* is what KVM does with the field: `passthrough` "
        "(stored and shown as given), `runtime` (KVM rewrites it), `vendor` (the vendor module rewrites it), "
        "or `not-virtualized` (a measured host's KVM_GET_SUPPORTED_CPUID lacks it); *backed* says `no` for a "
        "forced 1 the base does not offer (not backed by the host)."
        + (" KVM_SET_CPUID2 rejects this table as a whole (section 1)." if rejected else "")
    )
    s.table(
        ["field", "position", "decided by", "template", "base", "guest", "KVM", "backed", "lint"],
        [
            [
                f"`{r.name}`",
                r.position,
                _DECIDED[r.decided_by],
                _v(r.forced) if r.forced is not None else ("x" if r.decided_by == "host" else "-"),
                _v(r.base),
                _v(r.guest),
                r.kvm,
                "**no**" if r.unbacked else "",
                ", ".join(r.lint) or "",
            ]
            for r in shown
        ],
    )
    return s


def template_data(applied: AppliedTemplate, rows: list[FieldRow]) -> dict:
    t = applied.template
    return {
        "name": t.name,
        "kind": t.kind,
        "source": t.source,
        "base": applied.base_label,
        "vcpus": applied.vcpus,
        "refused": list(applied.refused),
        "unbacked": _unbacked_names(rows),
        "forced": {
            f"{leaf:#x}.{sub}.{reg}": {"mask": mask, "value": value}
            for (leaf, sub, reg), (mask, value) in sorted(applied.forced.items())
        },
        "normalised": {f"{leaf:#x}.{sub}.{reg}": m for (leaf, sub, reg), m in sorted(applied.normalised.items())},
        "steps_modelled": list(applied.steps_modelled),
        "steps_not_modelled": list(applied.steps_not_modelled),
        "msr_modifiers": [{"address": m.address, "mask": m.mask, "value": m.value} for m in t.msr_modifiers],
        "info": dict(t.info),
        "fields": [r.as_dict() for r in rows],
    }
