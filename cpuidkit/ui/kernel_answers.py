"""Notebook 08's real kernels: the same question to 6.1, 6.12 and this machine's kernel, beside the model.

By default the kernels' answers are the ones recorded in ``data/kernel-answers.json`` (each names its
Debian package and version, or ``uname -r``), so the notebook runs anywhere, without QEMU or /dev/kvm.
They are asked *now* only on request: the panel's button (``side_by_side_panel``), ``ask_now=True``, or
the environment variable ``CPUIDKIT_ASK_KERNELS=1`` when the notebook runs.  Asking boots each lab kernel
in QEMU (about 10 s each; :mod:`cpuidkit.lab`) and asks this machine's /dev/kvm; a kernel that cannot be
asked here keeps its recorded answer, and the table says which is which.  The model's answer is always
computed now, for the exact kernel release, vendor module and host each real answer came from.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass

from cpuidkit.analysis.kernel_answers import (
    NENT_ASKED,
    QUESTIONS,
    KernelRecord,
    answer_cells,
    ask_lab,
    ask_live,
    differences,
    load_records,
    model_answer,
    row_labels,
)
from cpuidkit.core.confirmed import confirmation
from cpuidkit.core.kernels import behaviour_rows, kernel_profile, named_kernels, parse_version
from cpuidkit.errors import CpuidkitError, InputError, KvmError
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.lab import DEFAULT_CPU, KernelLab, cached_kernels, missing_requirements
from cpuidkit.live import kvm_available
from cpuidkit.ui._theme import VERDICT_COLOURS

__all__ = [
    "ASK_NOW_ENV",
    "LAB_SERIES",
    "lab_status",
    "how_to_get_the_lab",
    "kernel_records",
    "SideBySide",
    "same_question",
    "side_by_side_panel",
    "nent_across_kernels",
    "nent_by_bisection",
]

ASK_NOW_ENV = "CPUIDKIT_ASK_KERNELS"  # "1": ask the real kernels when the notebook runs (boots QEMU)
LAB_SERIES = ("6.1", "6.12")
_asked: dict[str, KernelRecord] = {}  # kernels asked now in this process (a lab boots once per process)
_notes: dict[str, str] = {}  # why a kernel could not be asked now


def _ask_now_from_env() -> bool:
    return os.environ.get(ASK_NOW_ENV, "").strip().lower() in ("1", "yes", "true")


def lab_status() -> dict:
    """What this machine offers: ``lab`` (None, or why QEMU & co are missing), ``kernels`` (cached lab builds),
    ``kvm`` (None, or why /dev/kvm cannot be used)."""
    missing = missing_requirements()
    ok, why = kvm_available()
    return {
        "lab": "; ".join(missing) if missing else None,
        "kernels": [f"{b.package} {b.version}" for s in LAB_SERIES for b in cached_kernels(s)[:1]],
        "kvm": None if ok else why,
    }


def how_to_get_the_lab() -> str:
    """Markdown-free text for the notebook: is the lab here, and if not, how to get it."""
    s = lab_status()
    lines = []
    if s["lab"] is None and len(s["kernels"]) == len(LAB_SERIES):
        lines.append(f"The kernel lab is ready here ({', '.join(s['kernels'])}).")
    elif s["lab"] is None:
        lines.append(
            "QEMU, busybox and cpio are here but not every lab kernel is fetched yet: `make kernels` fetches "
            "Debian's newest 6.1 and 6.12 images with apt (about 20 s and 40 MB the first time)."
        )
    else:
        lines.append(
            f"The kernel lab cannot run here ({s['lab']}). To get it on Debian 12: "
            "`apt-get install qemu-system-x86 busybox-static cpio`, then `make kernels` "
            "(fetches Debian's newest 6.1 and 6.12 kernel images with apt: about 20 s and 40 MB the first time)."
        )
    lines.append(
        "Asking boots each kernel in QEMU (about 10 s on 2 cores, once per Python process), then a question takes "
        "milliseconds. Until then the table shows the answers recorded in data/kernel-answers.json "
        "(`make kernel-answers` records them again)."
    )
    lines.append(
        "This machine's /dev/kvm: " + ("usable." if s["kvm"] is None else f"not usable ({s['kvm']}); recorded answer.")
    )
    return " ".join(lines)


def _ask_lab(series: str, log=None) -> KernelRecord | None:
    if series in _asked:
        return _asked[series]
    try:
        with KernelLab(series, cpu=DEFAULT_CPU, log=log) as lab:
            _asked[series] = ask_lab(lab)
    except CpuidkitError as e:
        _notes[series] = str(e)
        return None
    _notes.pop(series, None)
    return _asked[series]


def _ask_live() -> KernelRecord | None:
    if "live" in _asked:
        return _asked["live"]
    try:
        _asked["live"] = ask_live()
    except CpuidkitError as e:
        _notes["live"] = str(e)
        return None
    _notes.pop("live", None)
    return _asked["live"]


def kernel_records(ask_now: bool | None = None, log=None) -> list[KernelRecord]:
    """One record per real kernel: the recorded ones, or (``ask_now``; default from ``CPUIDKIT_ASK_KERNELS``)
    the lab kernels and this machine's /dev/kvm asked now, each falling back to its recording."""
    recorded = load_records()
    if ask_now is None:
        ask_now = _ask_now_from_env()
    if not ask_now:
        return recorded
    fresh = [r for r in (*(_ask_lab(s, log) for s in LAB_SERIES), _ask_live()) if r is not None]
    keys = {(r.backend, r.series if r.backend == "lab" else "live") for r in fresh}
    kept = [r for r in recorded if (r.backend, r.series if r.backend == "lab" else "live") not in keys]
    order = {"lab": 0, "live": 1}
    return sorted(fresh + kept, key=lambda r: (order.get(r.backend, 2), parse_version(r.series)))


@dataclass
class SideBySide:
    """One question, each real kernel's answer beside the model's for that kernel (shown as an HTML table)."""

    question: str
    records: list[KernelRecord]

    def __post_init__(self) -> None:
        if self.question not in QUESTIONS:
            raise InputError(f"question must be one of {', '.join(QUESTIONS)}, got {self.question!r}", where="question")
        q = QUESTIONS[self.question]
        self.labels = row_labels(q)
        self.model = {r.label: answer_cells(q, r.model_answer(q)) for r in self.records}
        self.kernel = {r.label: answer_cells(q, r.answers[q.name]) for r in self.records}
        self.diffs = {r.label: differences(r.model_answer(q), r.answers[q.name], r.masks()) for r in self.records}

    @property
    def title(self) -> str:
        return QUESTIONS[self.question].title

    def agrees(self, label: str) -> bool:
        """Does the model agree with that kernel: every step, read-back and the stored table's registers?"""
        return not self.diffs[label]

    def rows(self) -> list[dict]:
        """One row per step or read-back: ``asked``, then ``<kernel> model`` / ``<kernel> kernel`` per kernel."""
        out = []
        for i, label in enumerate(self.labels):
            row = {"asked": label}
            for r in self.records:
                row[f"{r.label} model"] = self.model[r.label][i]
                row[f"{r.label} kernel"] = self.kernel[r.label][i]
            out.append(row)
        return out

    def source_line(self, r: KernelRecord) -> str:
        d = r.details
        if r.backend == "lab":
            what = f"{r.build} ({d.get('package', '?')}), kvm_amd on QEMU TCG -cpu {d.get('cpu', '?')}"
        else:
            what = f"this machine's /dev/kvm, {d.get('kernel_release', r.build)} with {r.vendor}"
        verdict = (
            "the model agrees" if self.agrees(r.label) else "the model DISAGREES: " + "; ".join(self.diffs[r.label][:3])
        )
        return f"{r.label}: {what} · {r.when} · model for {r.kernel}: {verdict}"

    def __repr__(self) -> str:
        head = f"{self.title}\n"
        cols = ["asked"] + [f"{r.label} model/kernel" for r in self.records]
        lines = [" | ".join(cols)]
        for i, label in enumerate(self.labels):
            lines.append(
                " | ".join([label] + [f"{self.model[r.label][i]}/{self.kernel[r.label][i]}" for r in self.records])
            )
        return head + "\n".join(lines) + "\n" + "\n".join(self.source_line(r) for r in self.records)

    def _repr_html_(self) -> str:
        bad = VERDICT_COLOURS["rejected"]
        top = "".join(f'<th colspan="2" style="text-align:center">{html.escape(r.label)}</th>' for r in self.records)
        sub = "".join("<th>model</th><th>kernel</th>" for _ in self.records)
        body = []
        for i, label in enumerate(self.labels):
            cells = []
            for r in self.records:
                m, k = self.model[r.label][i], self.kernel[r.label][i]
                style = f' style="color:{bad};font-weight:bold"' if m != k else ""
                cells.append(f"<td>{html.escape(m)}</td><td{style}>{html.escape(k)}</td>")
            body.append(f"<tr><td>{html.escape(label)}</td>{''.join(cells)}</tr>")
        notes = "".join(f"<li>{html.escape(self.source_line(r))}</li>" for r in self.records)
        return (
            f'<div class="cpuidkit-side-by-side"><b>{html.escape(self.title)}</b>'
            f'<table style="font-size:90%"><tr><th rowspan="2">asked</th>{top}</tr><tr>{sub}</tr>{"".join(body)}</table>'
            f'<ul style="font-size:80%;margin:2px 0">{notes}</ul></div>'
        )


def same_question(question: str = "nent", ask_now: bool | None = None) -> SideBySide:
    """``question`` (a key of :data:`~cpuidkit.analysis.kernel_answers.QUESTIONS`) to every real kernel."""
    return SideBySide(question, kernel_records(ask_now))


def side_by_side_panel(question: str = "nent"):
    """A question picker, the side-by-side table, and a button that asks the real kernels now (boots QEMU)."""
    import ipywidgets as W  # heavy: imported on use

    if question not in QUESTIONS:
        raise InputError(f"question must be one of {', '.join(QUESTIONS)}, got {question!r}", where="question")
    picker = W.Dropdown(options=[(q.title, q.name) for q in QUESTIONS.values()], value=question,
                        layout=W.Layout(width="640px"))  # fmt: skip
    button = W.Button(description="ask the real kernels now", icon="play", layout=W.Layout(width="220px"))
    status = W.HTML(f'<span style="font-size:85%">{html.escape(how_to_get_the_lab())}</span>')
    table = W.HTML()
    box = W.VBox([picker, table, W.HBox([button]), status])
    box.add_class("cpuidkit-side-by-side-panel")
    state = {"ask_now": _ask_now_from_env()}

    def show(*_: object) -> None:
        box.result = same_question(picker.value, state["ask_now"])
        table.value = box.result._repr_html_()

    def ask(_b: object) -> None:
        button.disabled = True
        button.description = "asking (booting QEMU)…"
        status.value = "booting each lab kernel (about 10 s each), then asking /dev/kvm…"
        try:
            state["ask_now"] = True
            box.result = SideBySide(picker.value, kernel_records(True))
            table.value = box.result._repr_html_()
            missed = "; ".join(f"{k}: {v}" for k, v in _notes.items())
            status.value = html.escape(
                "asked now" + (f" (not asked, recorded answer shown: {missed})" if missed else "")
            )
        except Exception as e:  # noqa: BLE001 - said on the panel, never raised into the event loop
            status.value = html.escape(f"asking failed: {type(e).__name__}: {e}")
        finally:
            button.disabled = False
            button.description = "ask the real kernels now"

    picker.observe(show, "value")
    button.on_click(ask)
    show()
    return box


# -- the GET_CPUID2 nent quirk -----------------------------------------------------------------------------------


def _nent_kernels() -> list[str]:
    """The named kernels and the edges of ``get_cpuid2_nent_on_success``, oldest first."""
    names = set(named_kernels())
    for b in behaviour_rows("get_cpuid2_nent_on_success"):
        for edge in (b.since, b.until):
            if edge is not None:
                names |= {f"{edge[0]}.{edge[1]}", f"{edge[0]}.{edge[1] - 1}"}
    return sorted((k for k in names if kernel_profile(k).in_modelled_range), key=parse_version)


def nent_across_kernels(records: list[KernelRecord] | None = None) -> list[dict]:
    """KVM_GET_CPUID2 asked with room for 256 entries, per kernel: what the model says the kernel leaves in
    ``nent``, how many entries the vCPU holds, and, where a real kernel of that series was asked, its answers.

    A row with a real kernel uses that kernel's release, vendor module and host for the model; the other rows
    use the first lab record's host (QEMU's EPYC-Rome, kvm_amd).  ``records``: :func:`kernel_records` (recorded,
    or asked now under ``CPUIDKIT_ASK_KERNELS=1``: the kernels the panel already asked, no second boot).
    """
    records = records if records is not None else kernel_records()
    by_series = {r.series: r for r in records}
    base = next((r for r in records if r.backend == "lab"), records[0])
    rows = []
    for k in _nent_kernels():
        real = by_series.get(k)
        ref = real or base
        kernel = real.kernel if real else k
        model = model_answer(QUESTIONS["nent"], kernel, ref.vendor, ref.host)
        rule = kernel_profile(kernel).behaviour("get_cpuid2_nent_on_success")
        row = {
            "kernel": k,
            "rule": f"{rule.value} ({rule.range_text})",
            "model: nent": model.probes[0][0],
            "model: entries held": len(model.final),
        }
        if real is not None:
            answer = real.answers["nent"]
            row["real kernel"] = f"{real.label}, {real.build}"
            row["kernel: nent"] = answer.probes[0][0]
            row["kernel: entries held"] = len(answer.final)
        else:
            row["real kernel"] = "—"
            row["kernel: nent"] = row["kernel: entries held"] = "—"
        row["model checked on a real kernel"] = confirmation(k, ref.vendor).short
        rows.append(row)
    return rows


def nent_by_bisection(kernel: str = "6.1", records: list[KernelRecord] | None = None) -> list[dict]:
    """How ``LiveVcpu.get_cpuid()`` (and so ``LabVcpu``) finds the entry count where KVM does not report it.

    On the model for ``kernel`` (the host of that series' real kernel if one was asked, else the first lab
    record's): first KVM_GET_CPUID2 with room for 256; if ``nent`` comes back unchanged, bisect for the smallest
    ``nent`` KVM accepts (it answers E2BIG exactly when fewer than the stored entries fit).  One row per ioctl.
    """
    records = records if records is not None else kernel_records()
    series = f"{parse_version(kernel)[0]}.{parse_version(kernel)[1]}"
    ref = next((r for r in records if r.series == series), None) or next(r for r in records if r.backend == "lab")
    assert ref.host.supported is not None
    v = SimulatedVcpu(kernel=kernel, vendor=ref.vendor, host=ref.host)
    v.set_cpuid(ref.host.supported)
    rows: list[dict] = []

    def ioctl(nent: int) -> int | None:
        try:
            back = v.get_cpuid2_nent(nent)
        except KvmError as e:  # E2BIG: fewer than the stored entries fit
            rows.append({"ioctl": len(rows) + 1, "nent asked": nent, "kernel answers": e.errno_name, "so": ""})
            return None
        rows.append({"ioctl": len(rows) + 1, "nent asked": nent, "kernel answers": f"ok, nent = {back}", "so": ""})
        return back

    back = ioctl(NENT_ASKED)
    if back is not None and back != NENT_ASKED:
        rows[-1]["so"] = f"the kernel reported the count: {back} entries"
        return rows
    lo, hi = 0, NENT_ASKED
    while lo < hi:
        mid = (lo + hi) // 2
        if ioctl(mid) is None:
            lo = mid + 1
        else:
            hi = mid
    rows[-1]["so"] = f"smallest nent accepted: {lo} entries held"
    return rows
