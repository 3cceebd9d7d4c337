"""The review engine: one template on one host, everything cpuidkit says about it, as a :class:`Review`.

Both surfaces use it: ``cpuidkit review`` renders it (Markdown, HTML, JSON) and the course's notebook
(``cpuidkit.ui.course.review``) shows it.
"""

from __future__ import annotations

from collections.abc import Iterable

from cpuidkit.analysis.addressing import guest_maxphyaddr, host_has_five_level_tdp, usable_gpa_bits
from cpuidkit.analysis.figures import feature_bits_svg, xsave_layout_svg
from cpuidkit.analysis.lint import lint_table, summarize
from cpuidkit.analysis.migrate import migrate
from cpuidkit.analysis.review.document import Review, _display
from cpuidkit.analysis.review.facts import (
    _TILEDATA,
    _beyond,
    _booted_state,
    _Ctx,
    _field_value,
    _kvm_pv_unhalt,
)
from cpuidkit.analysis.review.notes import _history_notes, _kernel_notes
from cpuidkit.analysis.review.sections import (
    _address_section,
    _beyond_section,
    _header,
    _kernel_section,
    _lint_section,
    _pool_section,
    _runtime_section,
    _summary,
    _verdict_section,
    _xsave_section,
)
from cpuidkit.analysis.review.template_section import template_data, template_section, template_summary
from cpuidkit.analysis.templates import field_rows
from cpuidkit.core.confirmed import confirmation
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import DEFAULT_KERNEL, kernel_profile
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.templates import AppliedTemplate
from cpuidkit.core.xsave import supported_xcr0
from cpuidkit.kvm.check import check
from cpuidkit.live import resolve_host

__all__ = ["review"]


def review(
    template: CpuidTable,
    host: HostProfile | str | None = None,
    *,
    kernel: str = DEFAULT_KERNEL,
    vendor: str | None = None,
    template_name: str | None = None,
    xfeature_permission: bool = True,
    pool: Iterable[HostProfile | str] = (),
    intended=None,
    applied: AppliedTemplate | None = None,
) -> Review:
    """Review ``template`` on ``host`` for ``kernel`` and ``vendor`` (default: the host's vendor module).

    ``xfeature_permission``: the VMM asks for AMX permission before KVM_SET_CPUID2 when the template enables
    TILEDATA (as Firecracker and QEMU do); the report also says what happens without it.
    ``pool``: hosts a guest with this template may move to from ``host``; when given, an eighth section says
    what ``migrate`` finds for each.  ``intended``: lint findings the VMM means (see
    :func:`cpuidkit.analysis.lint.parse_intended`), reported as such.  ``applied``: the CPU template
    ``template`` came from, applied to the host by its VMM (:func:`cpuidkit.analysis.templates.apply_on_host`);
    a section 0 then says what the template forced, what it left to the host and what KVM does with each field.
    """

    h = resolve_host(host)
    kp = kernel_profile(kernel)
    vend = h.vendor_for(vendor)
    tname = _display(template_name or template.source or "template")
    m0 = supported_xcr0(template)
    wants_amx = bool(m0 & _TILEDATA)
    perm = _TILEDATA if (xfeature_permission and wants_amx) else 0
    out = check(template, kernel=kp.name, vendor=vend, host=h, state={"xfeature_permission": perm})
    without = check(template, kernel=kp.name, vendor=vend, host=h) if perm else None
    gsx = out.derived["guest_supported_xcr0"]
    booted = None
    if out.accepted:
        booted = check(template, kernel=kp.name, vendor=vend, host=h, state=_booted_state(out, template, perm, h))
    mig = migrate(template, h, kernel=kp.name, vendor=vend, guest_name=tname)
    lint = lint_table(template, host=h, intended=intended)
    moves = [
        (d.name, migrate(template, d, source=h, kernel=kp.name, guest_name=tname))
        for d in (resolve_host(x) for x in pool)
    ]

    tdp = h.tdp and vend != "pvm"
    usable = usable_gpa_bits(h.maxphyaddr, tdp=tdp, five_level_tdp=host_has_five_level_tdp(h))
    beyond, synthesized, measured = _beyond(h, out, mig)
    ctx = _Ctx(
        t=template,
        host=h,
        kernel=kp.name,
        vendor=vend,
        outcome=out,
        migration=mig,
        beyond=beyond,
        m0=m0,
        g_maxpa=guest_maxphyaddr(template),
        usable=usable,
        kvm_pv_unhalt=_kvm_pv_unhalt(template),
    )
    specific, general = _kernel_notes(ctx)
    history = _history_notes(ctx)
    figures: dict[str, str] = {}
    header = _header(template, tname, h, kp.name, vend, measured, perm)
    sections = [
        _verdict_section(out, without, perm, gsx),
        _runtime_section(out, booted, template),
        _beyond_section(out, beyond, synthesized, measured),
        _lint_section(lint),
        _xsave_section(template, h, out, mig, kp, booted),
        _address_section(template, h, mig, kp, vend, usable),
        _kernel_section(kp.name, specific, general, history),
    ]
    if moves:
        sections.append(_pool_section(moves, kp.name))
    summary = _summary(out, mig, lint, beyond, synthesized, ctx, specific, booted, template, h, moves)
    sections.insert(0, summary)
    trows = field_rows(applied, out, lint) if applied is not None else []
    if applied is not None:
        summary.blocks.insert(0, ("p", template_summary(applied, trows)))
        sections.insert(1, template_section(applied, trows, rejected=not out.accepted))
    figures["bits"] = feature_bits_svg(template, out, beyond, synthesized)
    figures["xsave"] = xsave_layout_svg(template, h, m0)
    data = {
        "template": tname,
        "host": h.name,
        "kernel": kp.name,
        "vendor": vend,
        "confirmation": confirmation(kp.name, vend).as_dict(),
        "supported_cpuid": "measured" if measured else "derived from the host's CPUID",
        "verdict": out.verdict,
        "errno": out.errno,
        "rule": out.error.rule if out.error else None,
        "verdict_without_permission": (without.verdict if without else None),
        "runtime_fields": [
            {"name": o.field.name, "template": _field_value(template, o), "stored": o.value, "driver": o.driver}
            for o in out.fields
            if o.owner == "runtime"
        ],
        "vendor_fields": [o.field.name for o in out.fields if o.owner == "vendor"],
        "beyond": beyond,
        "synthesized": synthesized,
        "lint": summarize(lint),
        "lint_findings": [f.as_dict() for f in lint],
        "migration": mig.as_dict(),
        "derived": {k: v for k, v in out.derived.items()},
        "kernel_notes": specific,
        "general_kernel_notes": [n["id"] for n in general],
        "history_notes": history,
    }
    if moves:
        data["pool"] = [rep.as_dict() for _, rep in moves]
    if applied is not None:
        data["template_application"] = template_data(applied, trows)
    title = f"CPUID review: {tname} on {h.name}"
    return Review(title=title, header=header, sections=sections, figures=figures, data=data)
