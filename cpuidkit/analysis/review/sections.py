"""The review's text: the header table, the summary and the numbered sections, built from what the engine
collected (:func:`cpuidkit.analysis.review.engine.review`)."""

from __future__ import annotations

from collections.abc import Sequence

from cpuidkit.analysis.addressing import (
    guest_linear_bits,
    guest_maxphyaddr,
    guest_phys_bits_field,
    host_has_five_level_tdp,
    memslot_limit_check,
)
from cpuidkit.analysis.lint import summarize
from cpuidkit.analysis.migrate import MigrationReport
from cpuidkit.analysis.review.document import Section, _display, _hex, _names, _plural
from cpuidkit.analysis.review.facts import _Ctx, _field_value, _xsave
from cpuidkit.analysis.review.notes import _NEWEST, _OLDEST, _change_text
from cpuidkit.core.addresses import has_la57, linear_width_field
from cpuidkit.core.bits import extract_bits
from cpuidkit.core.confirmed import confirmation
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import named_kernels
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import compacted_size, components_of, mask_names, standard_size, supported_xss


def _cpu_text(t: CpuidTable) -> str:
    parts = [t.vendor or "vendor unknown"]
    e1 = t.get(1)
    if e1 is not None:
        fam, model = extract_bits(e1.eax, 11, 8), extract_bits(e1.eax, 7, 4)
        if fam == 0xF:
            fam += extract_bits(e1.eax, 27, 20)
        if fam in (6, 0xF) or fam > 0xF:
            model |= extract_bits(e1.eax, 19, 16) << 4
        parts.append(f"family {fam:#x} model {model:#x} stepping {extract_bits(e1.eax, 3, 0)}")
    brand = _brand(t)
    if brand:
        parts.append(f"“{brand}”")
    return ", ".join(parts)


def _brand(t: CpuidTable) -> str:
    raw = b""
    for leaf in (0x80000002, 0x80000003, 0x80000004):
        e = t.get(leaf)
        if e is None:
            return ""
        raw += b"".join(v.to_bytes(4, "little") for v in (e.eax, e.ebx, e.ecx, e.edx))
    return " ".join(raw.decode("latin-1").replace("\0", " ").split())


def _header(
    t: CpuidTable, tname: str, h: HostProfile, kernel: str, vendor: str, measured: bool, perm: int
) -> list[tuple[str, str]]:
    src = h.source if h.description else _display(h.source or h.name)
    host = f"`{h.name}`: {_cpu_text(h.cpuid)}; MAXPHYADDR {h.maxphyaddr}, {h.linear_bits}-bit linear"
    if h.description:
        host += f" ({h.description})"
    rows = [
        ("template", f"`{tname}`: {len(t)} entries, {_cpu_text(t)}"),
        ("host", host),
        ("host data", src),
        ("kernel", f"{kernel}" + (f" ({named_kernels()[kernel]['name']})" if kernel in named_kernels() else "")),
        ("vendor module", f"`{vendor}`"),
        ("real kernel", confirmation(kernel, vendor).badge),  # data/kernel-runs.csv
        (
            "KVM's supported CPUID",
            "measured: KVM_GET_SUPPORTED_CPUID recorded on this host"
            if measured
            else "derived from the host's own CPUID (no KVM_GET_SUPPORTED_CPUID was recorded for this host): a feature "
            "the CPU lacks is taken as not virtualized, and bits KVM sets from the host kernel's state (mitigations, microcode, what the vendor module can emulate) "
            "or microcode are not conclusive",
        ),
        (
            "vCPU",
            "fresh; the template is the first KVM_SET_CPUID2"
            + ("; the VMM requested AMX permission first (arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18))" if perm else ""),
        ),
    ]
    return rows


def _summary(
    out,
    mig,
    lint,
    beyond,
    synthesized,
    c: _Ctx,
    specific,
    booted,
    t,
    h,
    pool: Sequence[tuple[str, MigrationReport]] = (),
) -> Section:
    s = Section("Summary")
    items = []
    if out.accepted:
        items.append(
            "**KVM_SET_CPUID2: accepted**"
            + (f"; {_plural(len(out.state_errors), 'later state write')} refused" if out.state_errors else "")
        )
    else:
        items.append(
            f"**KVM_SET_CPUID2: rejected with {out.errno}** (rule `{out.error.rule}`): {out.error.explanation}"
        )
    rt = [o for o in out.fields if o.owner == "runtime"]
    diff_rt = [o.field.name for o in rt if _field_value(t, o) != o.value]
    items.append(
        f"{_plural(len(rt), 'field')} the template sets are KVM's at run time ({_names(o.field.name for o in rt)})"
        + (
            f"; KVM already stores other values than the template in {_names(diff_rt)}"
            if diff_rt
            else "; the template holds their reset values"
        )
    )
    if beyond:
        items.append(
            f"**{_plural(len(beyond), 'feature')} beyond what KVM virtualizes on this host**: {_names(beyond, 12)}"
        )
    else:
        items.append(
            "no feature beyond what KVM virtualizes on this host"
            + (" (apart from bits KVM sets from the host kernel's state)" if synthesized else "")
        )
    n = summarize(lint)
    items.append(f"lint: {n['illegal']} illegal, {n['insane']} insane, {n['info']} info")
    blockers = [f for f in mig.blockers if not f.rule.startswith("feature_")]
    items.append(_xsave_summary(t, h, out))
    mp = [
        f for f in mig.findings if f.rule in ("maxphyaddr", "linear_width", "guest_phys_bits") and f.severity != "info"
    ]
    items.append(
        f"addresses: MAXPHYADDR {c.g_maxpa} on a {h.maxphyaddr}-bit host"
        + (f" ({', '.join(f'{f.severity} `{f.rule}`' for f in mp)})" if mp else " (fine)")
    )
    if blockers:
        items.append(f"other problems on this host: {', '.join(f'`{f.rule}`' for f in blockers)}")
    if mig.findings and any(f.rule == "vendor" for f in mig.findings):
        items.append(f"**vendor mismatch**: the template is {t.vendor}, the host {h.vendor}")
    if pool:
        blocked = [name for name, rep in pool if rep.blockers]
        items.append(
            f"migration to the pool: {len(pool) - len(blocked)} of {_plural(len(pool), 'host')} without a blocker"
            + (f" (**blocked**: {_names(blocked)})" if blocked else "")
        )
    items.append(f"{_plural(len(specific), 'kernel-version note')} for this template")
    return s.ul(items)


def _xsave_summary(t: CpuidTable, h, out) -> str:
    xs = _xsave(t, out)
    if xs.none:
        return "XSAVE: none (the guest has no XSAVE state beyond x87/SSE)"
    x = xs.os_xcr0
    hc = h.xsave_components
    text = f"XSAVE: a guest enables XCR0 {_hex(x)} ({', '.join(mask_names(x))}): {standard_size(hc, x)} bytes"
    d0, d1 = t.get(0xD, 0), out.stored.get(0xD, 1)
    if d1 is not None and d1.eax & 0b1010:
        text += f", {compacted_size(hc, x)} compacted"
    if xs.from_vendor:
        text += f" (the template has no 0xD.0; the `{out.vendor}` module added one after KVM_SET_CPUID2)"
    if d0 is not None and standard_size(hc, d0.eax | d0.edx << 32 | 1) > d0.ecx:
        text += f"; **the template's 0xD.0 ECX ({d0.ecx}) is smaller than this host's area**"
    return text


def _verdict_section(out, without, perm: int, gsx: int) -> Section:
    s = Section("1. KVM's verdict")
    if out.accepted:
        s.p("KVM_SET_CPUID2 returns 0: the table is stored.")
    else:
        e = out.error
        s.p(f"KVM_SET_CPUID2 fails with **{e.errno_name}** (rule `{e.rule}`): {e.explanation}.")
        s.p(f"Source: {e.source}.")
    if perm and without is not None:
        if without.accepted:
            s.p("Without the AMX permission request KVM would accept it too.")
        else:
            e = without.error
            s.p(
                f"Without `arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)` before the vCPU is created, KVM answers "
                f"**{e.errno_name}** (rule `{e.rule}`; {e.source})."
            )
    d = out.derived
    s.table(
        ["derived by KVM", "value"],
        [
            ["MAXPHYADDR", str(d["maxphyaddr"])],
            ["reserved GPA bits", _hex(d["reserved_gpa_bits"])],
            ["guest_supported_xcr0", f"{_hex(gsx)}"],
            ["CR4 bits KVM_SET_SREGS refuses", _hex(d["cr4_reserved_bits"])],
            ["EFER bits a guest may set", _hex(d["efer_allowed"])],
            ["KVM leaf base", _hex(d["kvm_pv_base"])],
            ["KVM's own feature checks read", d["capabilities"]],
        ],
    )
    for e in out.state_errors:
        s.p(f"State write `{e['step']}` refused: {e['errno']}: {e['explanation']}.")
    return s


def _runtime_section(out, booted, t: CpuidTable) -> Section:
    s = Section("2. Fields KVM owns at run time")
    rt = [o for o in out.fields if o.owner == "runtime"]
    if not rt:
        return s.p("The template sets no field KVM rewrites at run time.")
    s.p(
        "KVM recomputes these from vCPU state at KVM_SET_CPUID2 and on every trigger (CR4, XCR0, MSR writes), so "
        "what the template puts there is never what the guest reads; only the reset values avoid a difference "
        "on readback. The third column is a fresh vCPU, the fourth after a guest enabled what it was offered "
        "(CR4.OSXSAVE/PKE and XCR0)."
    )
    after = {(o.field.name, o.subleaf): o.value for o in booted.fields} if booted is not None else {}
    rows = []
    for o in rt:
        f = o.field
        tv = _field_value(t, o)
        rows.append(
            [
                f"`{f.name}`",
                f"{f.leaf:#x}.{o.subleaf}.{f.register}[{f.bits}]",
                _val(tv, f),
                _val(o.value, f),
                _val(after.get((f.name, o.subleaf)), f),
                o.driver or "",
            ]
        )
    s.table(["field", "position", "template", "KVM stores", "after boot", "driven by"], rows)
    vend = [o for o in out.fields if o.owner == "vendor"]
    if vend:
        changed = [o for o in vend if _field_value(t, o) != o.value]
        s.p(
            f"The `{out.vendor}` module decides {_plural(len(vend), 'more field')} after KVM_SET_CPUID2 "
            f"(measured on the host); it stored other values than the template in {_plural(len(changed), 'field')}"
            + (f": {_names((o.field.name for o in changed), 20)}." if changed else ".")
        )
    return s


def _val(v: int | None, f) -> str:
    if v is None:
        return "-"
    return str(v) if v < 1 << 20 else f"{v:#x}"


def _beyond_section(out, beyond, synthesized, measured) -> Section:
    s = Section("3. Features beyond what KVM virtualizes on this host")
    if measured:
        s.p(
            "Compared with KVM_GET_SUPPORTED_CPUID measured on this host: a guest sees these bits, but KVM's "
            "capabilities lack them, so KVM treats the features as absent."
        )
    else:
        s.p(
            "Compared with the host CPU's own CPUID, in the registers KVM offers CPU features in (KVM's "
            "`kvm_set_cpu_caps` words), with the bits KVM provides on any host (x2APIC, TSC deadline, "
            "ARCH_CAPABILITIES …) taken as present. KVM_SET_CPUID2 accepts the bits regardless; a guest that "
            "uses them meets #UD, #GP or different behaviour."
        )
    if beyond:
        s.p(f"**{_plural(len(beyond), 'feature')}**: {_names(beyond)}.")
    else:
        s.p("None.")
    if synthesized:
        s.p(
            f"Not conclusive ({_plural(len(synthesized), 'bit')} KVM sets from the host kernel's "
            f"state, not from raw CPUID): {_names(synthesized)}."
        )
    s.p(f"From 6.14 KVM's own checks read guest CPUID ∩ its capabilities; this kernel: {out.derived['capabilities']}.")
    return s


def _lint_section(lint) -> Section:
    s = Section("4. Lint")
    if not lint:
        return s.p("No findings: nothing illegal, insane or worth a note (host rules included).")
    rows = []
    for f in lint:
        sev = f.severity + (" (intended)" if f.intended else "")
        rows.append([sev, f"`{f.rule}`", ", ".join(f"`{x}`" for x in f.fields), f.detail or ""])
    s.table(["class", "rule", "fields", "detail"], rows)
    seen = []
    for f in lint:
        if f.rule not in seen:
            seen.append(f.rule)
            s.p(
                f"`{f.rule}`: {f.explanation} If ignored: {f.if_ignored} ({f.reference}"
                f"{'; KVM checks this' if f.kvm_checks else ''})."
            )
    return s


def _xsave_section(t: CpuidTable, h, out, mig, kp, booted) -> Section:
    s = Section("5. XSAVE")
    xs = _xsave(t, out)
    m0, gsx, x = xs.template_mask, xs.guest_supported, xs.os_xcr0
    if xs.none:
        why = (
            "The template has no 0xD.0 leaf (or an empty XCR0 mask)"
            if not m0 & ~1
            else f"The template's 0xD.0 allows XCR0 {_hex(m0)}, but the stored table leaves none of it"
        )
        return s.p(f"{why}: the guest has no XSAVE state beyond x87/SSE (guest_supported_xcr0 {_hex(gsx)}).")
    if xs.from_vendor:
        m0 = xs.stored_mask
        s.p(
            f"The template has no 0xD.0 leaf, but the `{out.vendor}` module added its own after KVM_SET_CPUID2: the "
            f"stored 0xD.0 EDX:EAX allows XCR0 {_hex(m0)} ({', '.join(mask_names(m0))}). KVM supports "
            f"{_hex(gsx)} of it (guest_supported_xcr0), so a guest OS enables {_hex(x)}."
        )
    else:
        s.p(
            f"The template's 0xD.0 EDX:EAX allows XCR0 {_hex(m0)} ({', '.join(mask_names(m0))}). On this host and "
            f"kernel KVM supports {_hex(gsx)} of it (guest_supported_xcr0), so a guest OS enables {_hex(x)}."
        )
    lost = m0 & ~(gsx | 1)
    if lost:
        s.p(
            f"**Not supported here**: {', '.join(mask_names(lost))} ({_hex(lost)}): XSETBV with them raises #GP "
            "in the guest, KVM_SET_XCRS fails with EINVAL."
        )
    hc, tc = h.xsave_components, components_of(t)
    d0, d1 = t.get(0xD, 0), t.get(0xD, 1)
    aligned = kp.flag("xstate_compacted_alignment")
    rows = [
        [
            "standard size for all of 0xD.0",
            str(d0.ecx) if d0 else "-",
            str(standard_size(hc, m0 | 1)),
            "0xD.0 ECX (the template's, fixed)",
        ],
        [
            f"standard size for XCR0 {_hex(x)}",
            str(standard_size(tc, x)) if tc else "-",
            str(standard_size(hc, x)),
            "0xD.0 EBX (KVM computes it from the host's offsets)",
        ],
    ]
    if d1 is not None and d1.eax & 0b1010:
        rows.append(
            [
                f"compacted size for XCR0 {_hex(x)}",
                str(compacted_size(tc, x, honour_alignment=aligned)) if tc else "-",
                str(compacted_size(hc, x, honour_alignment=aligned)),
                "0xD.1 EBX (KVM computes it"
                + (", 64-byte alignment honoured)" if aligned else ", alignment flag ignored before 5.17)"),
            ]
        )
    s.table(["", "template's offsets", "this host", "in CPUID"], rows)
    if booted is not None:
        e0, e1 = booted.stored.get(0xD, 0), booted.stored.get(0xD, 1)
        s.p(
            f"After the guest sets XCR0 {_hex(x)}, KVM stores 0xD.0 EBX = {e0.ebx if e0 else '-'}"
            + (f" and 0xD.1 EBX = {e1.ebx}" if e1 is not None and e1.eax & 0b1010 else "")
            + "."
        )
    comp_rows = []
    for bit in sorted(set(tc) | {b for b in hc if (m0 | supported_xss(t)) >> b & 1}):
        a, b = tc.get(bit), hc.get(bit)
        same = a is not None and b is not None and (a.offset, a.size) == (b.offset, b.size)
        comp_rows.append(
            [
                str(bit),
                mask_names(1 << bit)[0],
                _comp(a),
                _comp(b),
                "same" if same else ("**differs**" if a and b else ""),
            ]
        )
    if comp_rows:
        s.table(["bit", "component", "template (size@offset)", "host (size@offset)", ""], comp_rows)
    _migrate_findings(s, mig, ("xcr0_components", "xsave_layout", "amx_permission", "sgx_xfrm", "xsave_size"))
    s.figure("xsave", "XSAVE standard-format layout: the template's 0xD subleaves against the host CPU's")
    return s


def _migrate_findings(s: Section, mig, rules: tuple[str, ...], keep_info: bool = False) -> None:
    hits = [f for f in mig.findings if f.rule in rules and (keep_info or f.severity != "info")]
    if hits:
        s.p("`cpuidkit migrate` of a guest with this template to this host (the destination) says:")
        s.ul([f"{f.severity} `{f.rule}`: {f.explanation}" for f in hits])


def _comp(c) -> str:
    if c is None:
        return "-"
    return f"{c.size}@{c.offset}" if not c.supervisor else f"{c.size} (supervisor)"


def _address_section(t: CpuidTable, h, mig, kp, vendor: str, usable: int) -> Section:
    s = Section("6. Physical and linear address width")
    g = guest_maxphyaddr(t)
    e8 = t.get(0x80000008)
    five = host_has_five_level_tdp(h)
    g57 = has_la57(t)
    h57 = has_la57(h.cpuid)
    lin_field = linear_width_field(t) or 0
    allowed = kp.value("vaddr_width_values").replace(";", ", ")
    rows = [
        ["MAXPHYADDR", f"{g}" + ("" if e8 else " (no 0x80000008 leaf: 36)"), str(h.maxphyaddr)],
        ["GuestPhysBits (0x80000008 EAX[23:16])", str(guest_phys_bits_field(t)), "-"],
        ["guest-physical bits KVM can map", "-", f"{usable}" + ("" if five else " (no LA57: 4-level EPT/NPT)")],
        [
            "linear width (0x80000008 EAX[15:8])",
            f"{lin_field} → {guest_linear_bits(t)}-bit" if lin_field else f"not set → {guest_linear_bits(t)}-bit",
            f"{h.linear_bits}-bit",
        ],
        ["LA57 (7.0 ECX[16])", "yes" if g57 else "no", "yes" if h57 else "no"],
    ]
    s.table(["", "template", "host"], rows)
    s.p(
        f"KVM_SET_CPUID2 accepts a linear width of {allowed} only (rule `vaddr_width_values`); it never checks "
        "MAXPHYADDR against the host."
    )
    _migrate_findings(s, mig, ("maxphyaddr", "guest_phys_bits", "linear_width"), keep_info=True)
    if g > h.maxphyaddr:
        s.p(
            f"Memslots above 2^{h.maxphyaddr} on kernel {kp.name}: {memslot_limit_check(kp.name)} "
            "(rule `memslot_above_host_width`)."
        )
    return s


def _kernel_section(kernel: str, specific: list[dict], general: list[dict], history: list[str]) -> Section:
    s = Section("7. Kernel-version notes")
    s.p(
        f"Rows of `data/kvm-behaviours.csv` whose value changes between {_OLDEST} and {_NEWEST} and that touch "
        f"something this template uses: “in effect” changes are already in {kernel}, the others come with an "
        "upgrade."
    )
    if specific:
        rows = [
            [
                n["version"],
                n["when"],
                f"`{n['id']}`",
                _change_text(n["old"], n["new"]),
                n["why"],
                f"{n['summary']} ({n['source']})",
            ]
            for n in specific
        ]
        s.table(["since", "for " + kernel, "behaviour", "change", "why it matters here", "what and where"], rows)
    else:
        s.p("None specific to this template.")
    if history:
        s.p("What KVM reports in KVM_GET_SUPPORTED_CPUID for this kernel (`data/kvm-feature-history.csv`):")
        s.ul(history)
    if general:
        ids = []
        for n in general:
            if n["id"] not in ids:
                ids.append(n["id"])

        def when(i: str) -> str:
            now = [n["version"] for n in general if n["id"] == i and n["when"] == "in effect"]
            later = [n["version"] for n in general if n["id"] == i and n["when"] != "in effect"]
            return ", ".join(now + ([f"{', '.join(later)} after an upgrade"] if later else []))

        s.p(
            "For every template (setting CPUID again after KVM_RUN, the runtime update): "
            + "; ".join(f"`{i}` ({when(i)})" for i in ids)
            + ". See `docs/model.md`."
        )
    return s


def _pool_section(pool: Sequence[tuple[str, MigrationReport]], kernel: str) -> Section:
    """``pool``: (destination name, ``migrate``'s report) for each host of the pool."""
    s = Section("8. Migration to the pool")
    s.p(
        f"`cpuidkit migrate` of a guest with this template from this host to each host of the pool (kernel {kernel}, "
        "each destination's own vendor module):"
    )
    rows = []
    for name, rep in pool:
        blockers = list(dict.fromkeys(f.rule for f in rep.blockers))
        warnings = list(dict.fromkeys(f.rule for f in rep.findings if f.severity == "warning"))
        rows.append(
            [
                f"`{name}`",
                f"**{rep.verdict}**" if blockers else rep.verdict,
                _names(blockers) or "-",
                _names(warnings) or "-",
            ]
        )
    s.table(["destination", "verdict", "blockers", "warnings"], rows)
    s.ul([f"`{name}`: blocker `{f.rule}`: {f.explanation}" for name, rep in pool for f in rep.blockers])
    return s
