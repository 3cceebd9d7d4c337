"""The course's worked examples, as functions a notebook cell calls in one line.

Each function runs the core (the model, the lint, the migration check) and
returns plain rows or an object a notebook shows (a review, a figure, a
widget), so a cell stays short and a test can check the same answer the
notebook shows.  The design review is the analysis floor's
(:func:`cpuidkit.analysis.review.review`, as ``cpuidkit review``), the figures
are :mod:`cpuidkit.analysis.figures`' (through :mod:`cpuidkit.ui.plots`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cpuidkit._files import data_dir
from cpuidkit.analysis.addressing import host_has_five_level_tdp, usable_gpa_bits
from cpuidkit.analysis.fleet import fleet, load_hosts
from cpuidkit.analysis.lint import guest_ready, guest_template, lint_axes, lint_table
from cpuidkit.analysis.migrate import migrate
from cpuidkit.analysis.review import Review
from cpuidkit.analysis.review import review as analysis_review
from cpuidkit.core.confirmed import confirmation
from cpuidkit.core.history import fingerprint_changes, predicted_present
from cpuidkit.core.hosts import HostProfile, builtin_hosts
from cpuidkit.core.kernels import DEFAULT_KERNEL, named_kernels, parse_version
from cpuidkit.core.sources import load
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import KvmError
from cpuidkit.kvm.check import VcpuSetup, check
from cpuidkit.kvm.interface import CR4_OSXSAVE, CR4_PKE, MSR_IA32_APICBASE
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.live import resolve_host
from cpuidkit.ui import _output
from cpuidkit.ui.plots import fleet_matrix

__all__ = [
    "frame",
    "glossary",
    "life_story",
    "rejection_scenarios",
    "post_run_across_kernels",
    "sgx_xfrm_across_kernels",
    "shared_dumps_dir",
    "firecracker_fingerprints",
    "fingerprint_changes_frame",
    "predicted_matrix",
    "example_template",
    "Review",
    "review",
    "pool_phys_bits",
    "migration_matrix",
    "migration_reasons",
    "AxesExample",
    "axes_examples",
    "axes_rows",
    "axes_grid",
    "IMPOSSIBLE_CELLS",
    "kernels_in_order",
]

RUNTIME_NAMES = ("osxsave", "ospke", "apic", "monitor", "xsave_size_enabled", "xsaves_size_enabled")


MISSING = "—"  # what a table cell shows for "no value" (never pandas' NaN)


def frame(rows, columns=None):
    """Rows (dicts) as a pandas DataFrame; a missing value (None, or a key a row lacks) shows as "—"."""
    import pandas as pd  # heavy: imported on use

    df = pd.DataFrame(list(rows), columns=columns)
    for c in df.columns[df.isna().any()]:
        df[c] = df[c].astype(object).where(df[c].notna(), MISSING)
    return df


def docs_dir() -> Path | None:
    """The repository's docs/ folder (a checkout or an editable install), or None (an installed wheel)."""
    d = Path(__file__).resolve().parents[2] / "docs"
    return d if (d / "glossary.md").is_file() else None


def glossary():
    """docs/glossary.md as a closed accordion a notebook can show (JupyterLab started on notebooks/ cannot
    follow a link to ../docs); where docs/ is not there, a line saying where to read it."""
    import ipywidgets as W  # heavy: imported on use
    from IPython.display import Markdown  # heavy: imported on use

    d = docs_dir()
    if d is None:
        return Markdown("The glossary is docs/glossary.md in the cpuidkit repository.")
    text = (d / "glossary.md").read_text(encoding="utf-8")
    out = W.Output()
    _output.show(out, Markdown(text))  # never `with out:` while a cell runs (cpuidkit.ui._output)
    box = W.Accordion(children=[out], selected_index=None)
    box.set_title(0, f"Glossary: {text.count(chr(10) + '**')} terms (docs/glossary.md) — click to open")
    box.add_class("cpuidkit-glossary")
    return box


def kernels_in_order() -> list[str]:
    """The named kernel profiles, oldest first."""
    return sorted(named_kernels(), key=parse_version)


# -- 04: a vCPU's life -------------------------------------------------------------------------


def _fields(v: SimulatedVcpu) -> dict:
    t = v.get_cpuid()
    out = {}
    for name in RUNTIME_NAMES:
        try:
            out[name] = t.get_field(name)
        except KvmError:
            out[name] = None
    return out


def default_life(
    table: CpuidTable, host: HostProfile, vendor: str
) -> list[tuple[str, Callable[[SimulatedVcpu], object]]]:
    """The events of a typical boot, as (label, function of the vCPU)."""
    gsx = table.get(0xD, 0)
    full = ((gsx.eax | gsx.edx << 32) if gsx else 1) & host.kvm_supported_xcr0(vendor) | 1
    changed = table.set_field("0x6.0.eax[0]", 1 - (table.get_field("0x6.0.eax[0]") or 0))
    return [
        ("KVM_SET_CPUID2", lambda v: v.set_cpuid(table)),
        ("CR4.OSXSAVE=1", lambda v: v.set_cr4(CR4_OSXSAVE)),
        ("XSETBV 0x7", lambda v: v.set_xcr0(0x7)),
        (f"XSETBV {full:#x}", lambda v: v.set_xcr0(full)),
        ("CR4.PKE=1", lambda v: v.set_cr4(CR4_OSXSAVE | CR4_PKE)),
        ("APIC disabled", lambda v: v.set_msr(MSR_IA32_APICBASE, 0xFEE00100)),
        ("APIC enabled", lambda v: v.set_msr(MSR_IA32_APICBASE, 0xFEE00900)),
        ("KVM_RUN", lambda v: v.run()),
        ("re-SET read-back", lambda v: v.set_cpuid(v.get_cpuid())),
        ("re-SET changed", lambda v: v.set_cpuid(changed)),
        ("CR4=0 (reboot)", lambda v: v.set_cr4(0)),
        ("XCR0=1", lambda v: v.set_xcr0(1)),
    ]


def life_story(
    host: HostProfile | str | None = "sapphire-rapids",
    kernel: str = DEFAULT_KERNEL,
    vendor: str = "vmx",
    table: CpuidTable | None = None,
    events=None,
) -> list[dict]:
    """Run a vCPU through ``events`` (default: :func:`default_life`) and record, after each,
    what KVM_GET_CPUID2 shows for the runtime fields, and any error."""
    h = resolve_host(host)
    t = table if table is not None else h.supported_cpuid()
    v = SimulatedVcpu(kernel=kernel, vendor=vendor, host=h)
    story = [{"event": "vCPU created", "fields": {n: None for n in RUNTIME_NAMES}, "error": None}]
    for label, step in events or default_life(t, h, vendor):
        try:
            step(v)
            err = None
        except KvmError as e:
            err = f"{e.errno_name}: {e.explanation}"
        story.append({"event": label, "fields": _fields(v), "error": err})
    return story


def story_rows(story: list[dict]) -> list[dict]:
    """A life story flattened for a table."""
    return [
        {"event": s["event"], **{k: "—" if v is None else v for k, v in s["fields"].items()}, "error": s["error"] or ""}
        for s in story
    ]


# -- 03: what KVM rejects ------------------------------------------------------------------------


def _filler(n: int) -> list[CpuidEntry]:
    return [CpuidEntry(0x40000100 + i) for i in range(max(n, 0))]


def rejection_scenarios(
    host: HostProfile | str | None = "sapphire-rapids", kernel: str = DEFAULT_KERNEL, vendor: str = "vmx"
) -> list[dict]:
    """The short list of what KVM_SET_CPUID2 refuses, and a few things people expect it to refuse.

    Each row: the scenario, what KVM does (model), errno, rule, kernel source.
    """
    h = resolve_host(host)
    base = h.supported_cpuid()
    leaf0, leaf6 = base.get(0), base.get(6)
    assert leaf0 is not None and leaf6 is not None  # every host's supported CPUID has leaves 0 and 6
    amx = base.set_field("0xd.0.eax[17]", 1).set_field("0xd.0.eax[18]", 1)
    cases = [
        ("257 entries", base.appended(*_filler(257 - len(base))), False),
        ("256 entries", base.appended(*_filler(256 - len(base))), False),
        ("linear width 50", base.set_field("virt_addr_bits", 50), False),
        ("linear width 57 (no LA57 check)", base.set_field("virt_addr_bits", 57).set_field("la57", 0), False),
        ("AMX TILEDATA without permission", amx, False),
        (
            "re-SET a changed table after KVM_RUN",
            base.set_field("0x6.0.eax[0]", 1 - (base.get_field("0x6.0.eax[0]") or 0)),
            True,
        ),
        ("re-SET the same table after KVM_RUN", base, True),
        ("MAXPHYADDR 255", base.set_field("phys_addr_bits", 255), False),
        ("a feature the host lacks (avx512_fp16 on, amx off)", base.set_field("avx512_fp16", 1), False),
        ("duplicate leaf 6", base.appended(leaf6.replace(eax=0)), False),
        ("garbage flags on leaf 0", base.replace_at(0, base[0].replace(flags=0xFFFFFFFF)), False),
        (
            "vendor string 'AuthenticAMD' on Intel",
            base.with_entry(leaf0.replace(ebx=0x68747541, edx=0x69746E65, ecx=0x444D4163)),
            False,
        ),
        ("empty table", CpuidTable(), False),
    ]
    rows = []
    for name, table, after_run in cases:
        v = SimulatedVcpu(kernel=kernel, vendor=vendor, host=h)
        err = None
        try:
            if after_run:
                v.set_cpuid(base)
                v.run()
            v.set_cpuid(table)
        except KvmError as e:
            err = e
        rows.append(
            {
                "scenario": name,
                "entries": len(table),
                "verdict": "rejected" if err else "accepted",
                "errno": err.errno_name if err else "",
                "rule": (err.rule or "") if err else "",
                "source": (err.source or "") if err else "",
            }
        )
    return rows


# -- 08: kernel versions -----------------------------------------------------------------------------


def post_run_across_kernels(host: HostProfile | str | None = "sapphire-rapids", vendor: str = "vmx") -> list[dict]:
    """For each named kernel: KVM_SET_CPUID2 after KVM_RUN with the same table, with a changed one."""
    h = resolve_host(host)
    base = h.supported_cpuid()
    changed = base.set_field("0x6.0.eax[0]", 1 - (base.get_field("0x6.0.eax[0]") or 0))
    rows = []
    for k in kernels_in_order():
        out = {"kernel": k}
        for label, table in (("same table", base), ("changed table", changed)):
            v = SimulatedVcpu(kernel=k, vendor=vendor, host=h)
            v.set_cpuid(base)
            v.run()
            try:
                v.set_cpuid(table)
                out[label] = "ok"
            except KvmError as e:
                out[label] = e.errno_name
        out["rule"] = v.kernel_profile.value("post_run_set_cpuid")
        out["source"] = v.kernel_profile.source("post_run_set_cpuid")
        out["real kernel"] = confirmation(k, vendor).short  # confirmed on one, or read from source only
        rows.append(out)
    return rows


def sgx_xfrm_across_kernels(
    host: HostProfile | str | None = "sapphire-rapids",
    xfrm: int = 0x602FF,
    kernels=("5.15", "6.1", "6.4", "6.6", "6.18"),
    vendor: str = "vmx",
) -> list[dict]:
    """Set 0x12.1 ECX (allowed enclave XFRM) wider than the guest's XCR0 support and read it back.

    5.13–6.3 trim it to guest_supported_xcr0 | FP | SSE; from 6.4 KVM stores it as given
    and checks XFRM when it emulates ECREATE instead.
    """
    h = resolve_host(host)
    base = h.supported_cpuid().set_field("sgx", 1).with_entry(CpuidEntry(0x12, 0, 1, eax=0b11))
    guest = base.with_entry(CpuidEntry(0x12, 1, 1, eax=0x36, ecx=xfrm & 0xFFFFFFFF, edx=xfrm >> 32))
    rows = []
    for k in kernels:
        v = SimulatedVcpu(kernel=k, vendor=vendor, host=h)
        v.set_cpuid(guest)
        e = v.get_cpuid().get(0x12, 1)
        assert e is not None  # set just above
        kp = v.kernel_profile
        rows.append(
            {
                "kernel": k,
                "set 0x12.1 ECX": f"{xfrm & 0xFFFFFFFF:#x}",
                "stored 0x12.1 ECX": f"{e.ecx:#x}",
                "guest_supported_xcr0": f"{v.derived.guest_supported_xcr0:#x}",
                "KVM adjusts": kp.value("sgx_xfrm_adjust"),
                "ECREATE checks XFRM": kp.flag("sgx_ecreate_xfrm_check"),
            }
        )
    return rows


def shared_dumps_dir() -> Path | None:
    """The shared reference dumps (``CPUIDKIT_SHARED``, or ``shared/`` beside the checkout), if present."""
    env = os.environ.get("CPUIDKIT_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared")
    for c in candidates:
        d = c / "data" / "cpuid-dumps"
        if d.is_dir():
            return d
    return None


FINGERPRINT_KERNELS = ("5.10", "6.1", "6.18")


def firecracker_fingerprints(cpu: str = "INTEL_SAPPHIRE_RAPIDS") -> dict[str, CpuidTable] | None:
    """Firecracker's guest-CPUID fingerprints of one CPU under host kernels 5.10 / 6.1 / 6.18.

    Read from the copies in ``data/fingerprints`` (made by tools/make_fingerprint_data.py), else from
    the shared dumps; None when neither has this CPU.
    """

    copies = {k: data_dir() / "fingerprints" / f"{cpu}_{k}.json" for k in FINGERPRINT_KERNELS}
    if all(p.exists() for p in copies.values()):
        return {k: load(p) for k, p in copies.items()}
    d = shared_dumps_dir()
    if d is None:
        return None
    paths = {k: d / "firecracker" / f"fingerprint_{cpu}_{k}host.json" for k in FINGERPRINT_KERNELS}
    if not all(p.exists() for p in paths.values()):
        return None
    return {k: load(p) for k, p in paths.items()}


def fingerprint_changes_frame(tables: dict[str, CpuidTable]):
    """Every field that changed between consecutive host kernels, and whether the kernel profiles predict it."""

    verdict = {None: "not predicted", True: "predicted", False: "CONTRADICTS"}
    return frame(
        [
            {
                "kernels": f"{c.old_kernel} → {c.new_kernel}",
                "field": c.field,
                "old": "-" if c.old is None else hex(c.old),
                "new": "-" if c.new is None else hex(c.new),
                "profiles": verdict[c.predicted],
                "note": c.note,
            }
            for c in fingerprint_changes(tables)
        ]
    )


def predicted_matrix(
    fields=("amx_tile", "xcr0_supported_lo", "guest_phys_addr_bits", "shstk", "0xd.18"), kernels=FINGERPRINT_KERNELS
):
    """Whether the kernel profiles say KVM_GET_SUPPORTED_CPUID reports each field, per kernel."""

    rows = []
    for f in fields:
        row = {"field": f}
        for k in kernels:
            p = predicted_present(f, k)
            row[k] = "—" if p is None else ("yes" if p else "no")
        rows.append(row)
    return frame(rows)


# -- 06: MAXPHYADDR across a pool ------------------------------------------------------------------


def pool_phys_bits(hosts) -> int:
    """The guest MAXPHYADDR a migration pool can promise: the smallest host width."""
    return min(resolve_host(h).maxphyaddr for h in hosts)


def _width_findings(g: int, h: HostProfile, kernel: str) -> list:
    guest = h.supported_cpuid().set_field("phys_addr_bits", g)
    return [f for f in migrate(guest, h, kernel=kernel).findings if f.rule == "maxphyaddr"]


def _worst(findings) -> str:
    for severity in ("blocker", "warning"):
        if any(f.severity == severity for f in findings):
            return severity
    return "ok"


def host_column(h: HostProfile) -> str:
    """A destination's column title: its MAXPHYADDR, and the GPA width KVM can map there when that is
    smaller (4-level EPT/NPT only: 48 bits, ``usable_gpa_bits``)."""
    mappable = usable_gpa_bits(h.maxphyaddr, tdp=h.tdp, five_level_tdp=host_has_five_level_tdp(h))
    return f"{h.name} ({h.maxphyaddr})" if mappable >= h.maxphyaddr else f"{h.name} ({h.maxphyaddr}, maps {mappable})"


def migration_matrix(guest_bits, hosts, kernel: str = DEFAULT_KERNEL) -> list[dict]:
    """For each guest MAXPHYADDR and destination host: the migration check's verdict on that width.

    The guest is the destination's own supported CPUID with only MAXPHYADDR changed,
    so the answer is about the width alone (``cpuidkit.analysis.migrate``).  A column names the host's
    MAXPHYADDR and, where KVM can map less (no 5-level EPT/NPT), the mappable width;
    :func:`migration_reasons` gives the reason of every blocker.
    """

    rows = []
    for g in guest_bits:
        row = {"guest MAXPHYADDR": g}
        for name in hosts:
            h = resolve_host(name)
            row[host_column(h)] = _worst(_width_findings(g, h, kernel))
        rows.append(row)
    return rows


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=\.) (?=[A-Z])", text, maxsplit=1)[0]


def migration_reasons(guest_bits, hosts, kernel: str = DEFAULT_KERNEL, severities=("blocker",)) -> list[dict]:
    """Why each cell of :func:`migration_matrix` with one of ``severities`` is what it is: the first
    sentence of the migration check's finding (``cpuidkit.analysis.migrate``), one row per cell."""
    rows = []
    for g in guest_bits:
        for name in hosts:
            h = resolve_host(name)
            fs = _width_findings(g, h, kernel)
            worst = _worst(fs)
            if worst in severities:
                f = next(f for f in fs if f.severity == worst)
                rows.append(
                    {
                        "guest MAXPHYADDR": g,
                        "destination": host_column(h),
                        "verdict": worst,
                        "why": _first_sentence(f.explanation),
                    }
                )
    return rows


# -- 07: three axes ---------------------------------------------------------------------------------------

# (architecture, guest) pairs in the order a grid shows them; the last cannot hold any table
AXIS_COLUMNS = (("legal", "sane"), ("legal", "insane"), ("illegal", "insane"), ("illegal", "sane"))
IMPOSSIBLE_CELLS = {
    ("illegal", "sane"): (
        "cannot exist: illegal means the architecture forbids it or a guest that follows the SDM/APM faults on "
        "it, so no guest can use the table: every illegal table is insane (the lint counts it so)"
    ),
}


@dataclass(frozen=True)
class AxesExample:
    """A table for one cell of the three axes: ``meant`` is the cell it is built for, ``(KVM, architecture,
    guest)``; where it really lands is computed by :func:`axes_rows` (``check()`` and the lint)."""

    name: str
    meant: tuple[str, str, str]
    table: CpuidTable
    how: str
    state: VcpuSetup | None = None


def axes_examples(host: HostProfile | str | None = "sapphire-rapids") -> list[AxesExample]:
    """One or more tables for every cell of accepted/rejected × legal/illegal × sane/insane that can hold
    one, each made from the host's CPUID as a guest template (``guest_template``: no AMX, runtime fields
    at their reset values) by one change.  The rejections are the four KVM has: E2BIG, EPERM (on a host with
    AMX), EINVAL for a table changed after KVM_RUN, EINVAL for the linear width."""
    h = resolve_host(host)
    base = guest_template(h)
    no_avx512_state = base.set_fields({"0xd.0.eax[5]": 0, "0xd.0.eax[6]": 0, "0xd.0.eax[7]": 0})
    examples = [
        AxesExample("host template", ("accepted", "legal", "sane"), base, "the host's CPUID as a guest template"),
        AxesExample(
            "TILECFG without TILEDATA",
            ("accepted", "legal", "insane"),
            base.set_field("0xd.0.eax[17]", 1),
            "0xD.0 EAX enumerates XCR0 bit 17 (TILECFG) but not bit 18 (TILEDATA)",
        ),
        AxesExample(
            "CET_U in 0xD.0",
            ("accepted", "illegal", "insane"),
            base.set_field("0xd.0.eax[11]", 1),
            "0xD.0 EAX lists bit 11 (CET_U), a supervisor component, as a user XCR0 bit",
        ),
        AxesExample(
            "257 entries",
            ("rejected", "legal", "sane"),
            base.appended(*_filler(257 - len(base))),
            f"the template and {257 - len(base)} empty entries in the hypervisor range: one above the limit",
        ),
    ]
    if h.supports_amx:
        amx = guest_ready(h.cpuid)
        examples.append(
            AxesExample(
                "AMX without permission",
                ("rejected", "legal", "sane"),
                amx,
                "the host's own CPUID with AMX; the VMM did not call arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)",
            )
        )
    examples += [
        AxesExample(
            "changed after KVM_RUN",
            ("rejected", "legal", "insane"),
            no_avx512_state,
            "after KVM_RUN, the template again with the AVX-512 XCR0 components cleared (AVX-512F still set)",
            VcpuSetup(has_run=True, previous=base),
        ),
        AxesExample(
            "linear width 52",
            ("rejected", "illegal", "insane"),
            base.set_field("virt_addr_bits", 52),
            "0x80000008.EAX[15:8] = 52: no paging mode has 52-bit linear addresses",
        ),
    ]
    return examples


def axes_rows(
    host: HostProfile | str | None = "sapphire-rapids", kernel: str = DEFAULT_KERNEL, vendor: str = "vmx"
) -> list[dict]:
    """Every example of :func:`axes_examples` placed on the three axes, live: KVM's verdict from
    ``check()`` (with the example's vCPU state), legal/illegal and sane/insane from ``lint_table`` +
    ``lint_axes``; the rule behind each answer."""
    h = resolve_host(host)
    rows = []
    for ex in axes_examples(h):
        out = check(ex.table, kernel=kernel, vendor=vendor, host=h, state=ex.state)
        fs = lint_table(ex.table, host=h)
        legal, sane = lint_axes(fs)
        rows.append(
            {
                "example": ex.name,
                "KVM": out.verdict,
                "errno": out.errno,
                "architecture": legal,
                "guest": sane,
                "KVM rule": out.error.rule if out.error else None,
                "lint findings": ", ".join(dict.fromkeys(f.rule for f in fs if f.severity != "info")) or None,
                "how": ex.how,
                "meant": ex.meant,
            }
        )
    return rows


def axes_grid(rows: list[dict]):
    """The three axes as one grid (rows: KVM's verdict; columns: architecture · guest): the examples of
    :func:`axes_rows` in the cell they landed in, and why a cell that cannot hold a table cannot."""
    out = []
    for verdict in ("accepted", "rejected"):
        row: dict[str, str | None] = {"KVM": verdict}
        for legal, sane in AXIS_COLUMNS:
            names = [r["example"] for r in rows if (r["KVM"], r["architecture"], r["guest"]) == (verdict, legal, sane)]
            why = IMPOSSIBLE_CELLS.get((legal, sane))
            row[f"{legal} · {sane}"] = ", ".join(names) or ("cannot exist" if why else None)
        out.append(row)
    return frame(out).set_index("KVM")


# -- 09: a design review -----------------------------------------------------------------------------


def example_template(host: HostProfile | str | None = "sapphire-rapids") -> tuple[CpuidTable, list[str]]:
    """A VMM's CPU template built the usual way, and the list of its edits.

    Start from KVM_GET_SUPPORTED_CPUID, hide TSX, say "hypervisor", add the KVM
    signature and PV leaves, cap MAXPHYADDR at 46 for the migration pool, and
    copy OSXSAVE=1 from a bare-metal dump (a classic mistake: KVM owns it).
    """
    h = resolve_host(host)
    t = h.supported_cpuid()
    edits = []
    for name in ("hle", "rtm"):
        if t.get_field(name):
            t = t.set_field(name, 0)
            edits.append(f"hide {name} (TSX)")
    t = t.set_field("hypervisor", 1)
    edits.append("set hypervisor (1.ECX[31])")
    t = t.with_entry(CpuidEntry(0x40000000, eax=0x40000001, ebx=0x4B4D564B, ecx=0x564B4D56, edx=0x4D))
    t = t.with_entry(CpuidEntry(0x40000001, eax=(1 << 3) | (1 << 7) | (1 << 24)))
    edits.append("add the KVM signature 0x40000000 and PV features 0x40000001 (CLOCKSOURCE2, PV_UNHALT, STABLE_BIT)")
    t = t.set_field("phys_addr_bits", 46)
    edits.append("MAXPHYADDR 46 (phys-bits of the smallest host in the pool)")
    t = t.set_field("osxsave", 1)
    edits.append("OSXSAVE=1, copied from a bare-metal dump")
    return CpuidTable(t, source=f"example template for {h.name}"), edits


def review(
    table: CpuidTable,
    host: HostProfile | str | None = "sapphire-rapids",
    kernel: str = DEFAULT_KERNEL,
    vendor: str = "vmx",
    pool=(),
    intended=None,
) -> Review:
    """The design review of ``table`` on ``host``: :func:`cpuidkit.analysis.review.review`, the engine behind
    ``cpuidkit review``, with the course's defaults and ``pool`` (``migrate`` to each of those hosts).

    The same findings and sections as the command's report; a notebook shows the Review as the HTML
    report's body, figures included (``render_markdown(r)`` / ``render_html(r)`` give the files).
    """

    return analysis_review(table, host, kernel=kernel, vendor=vendor, pool=pool, intended=intended)


def fleet_hosts() -> tuple[list[HostProfile], str]:
    """The pool for the fleet figure: the 28 shared libvirt dumps when present, else the built-in hosts."""

    d = shared_dumps_dir()
    if d is not None and (d / "libvirt").is_dir():
        return load_hosts(d / "libvirt"), "the 28 libvirt host dumps (shared reference data)"
    hosts = [h for name, h in sorted(builtin_hosts().items()) if name != "live-kvm-epyc"]
    return hosts, "the built-in host profiles (the shared dumps are not on this machine)"


def fleet_panel(kernel: str = DEFAULT_KERNEL):
    """The fleet migration matrix as a widget: a progress bar while it computes, then the figure and a summary."""
    import ipywidgets as W  # heavy: imported on use

    bar = W.IntProgress(value=0, min=0, max=1, description="fleet", layout=W.Layout(width="60%"))
    status = W.HTML()
    out = W.Output()
    box = W.VBox([bar, status, out])
    box.add_class("cpuidkit-fleet")

    def progress(done: int, total: int, stage: str) -> None:
        bar.max, bar.value, bar.description = max(total, 1), done, stage

    hosts, what = fleet_hosts()
    f = fleet(hosts, kernel=kernel, progress=progress)
    s = f.summary()
    status.value = (
        f"{what}: {s['hosts']} hosts, {s['pairs']} ordered pairs: <b>{s['ok']}</b> move cleanly, "
        f"<b>{s['ok_with_warnings']}</b> with warnings, <b>{s['blocked']}</b> blocked (kernel {kernel})"
    )
    fig = fleet_matrix(f)
    _output.show(out, fig)  # never `with out:` while a cell runs: Voilà can hang (cpuidkit.ui._output)
    box.fleet, box.figure = f, fig
    return box
