"""The same question to several real kernels, each beside the model's answer for that kernel.

A :class:`Question` is a short scenario on a fresh vCPU, built from the kernel's own
KVM_GET_SUPPORTED_CPUID (KVM_SET_CPUID2 of it, changed the question's way, then what a VMM
does next), followed by read-backs: what KVM_GET_CPUID2 reports and holds.  It is asked of

* a lab kernel (:func:`ask_lab`: Debian's 6.1 or 6.12 with kvm_amd, booted in QEMU),
* this machine's /dev/kvm (:func:`ask_live`: 6.18 with kvm_pvm here),
* and, for each, the model built for that kernel release, vendor module and host.

A :class:`KernelRecord` keeps one kernel's answers *and* the host its KVM ran on (QEMU's CPU
model as the lab guest sees it, or this machine as measured), so the model's answer can be
computed again anywhere.  ``data/kernel-answers.json`` holds records made with
``tools/record_kernel_answers.py`` (``make kernel-answers``), each naming the exact kernel
package and version: notebook 08 shows them where no lab or /dev/kvm is at hand, and a test
checks the model against them without QEMU.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cpuidkit._files import atomic_write_text, data_path, read_input_text
from cpuidkit.analysis.agreement import Result, Step, compare, run_steps, vendor_masks
from cpuidkit.analysis.lab_agreement import Probe, lab_host_profile, probe
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.sources._common import load_json
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import InputError, KvmError
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.lab.agent import raw_get_cpuid2_nent  # the raw ioctl, shared with the lab's guest agent
from cpuidkit.live import LiveVcpu, host_profile

__all__ = [
    "Question",
    "QUESTIONS",
    "Answer",
    "KernelRecord",
    "ask",
    "model_answer",
    "ask_lab",
    "ask_live",
    "save_records",
    "load_records",
    "RECORD_FILE",
    "answer_cells",
    "differences",
]

RECORD_FILE = "kernel-answers.json"  # in data/
FORMAT = 1
NENT_ASKED = 256


@dataclass(frozen=True)
class Question:
    """A scenario (``steps(base)``: the steps for a kernel whose KVM_GET_SUPPORTED_CPUID is ``base``) and
    read-backs.  ``labels`` name the steps as a reader sees them."""

    name: str
    title: str
    labels: tuple[str, ...]
    steps: Callable[[CpuidTable], list[Step]]
    probes: tuple[Probe, ...] = ()


NENT_PROBE = Probe(f"KVM_GET_CPUID2 nent (asked with {NENT_ASKED})", "get_cpuid2_nent", (NENT_ASKED,))

QUESTIONS: dict[str, Question] = {
    q.name: q
    for q in (
        Question(
            "nent",
            "Set the kernel's own supported table, then KVM_GET_CPUID2 with room for 256 entries",
            ("KVM_SET_CPUID2 (the supported table)",),
            lambda base: [Step("set_cpuid", (base,))],
            (NENT_PROBE,),
        ),
        Question(
            "maxphyaddr31",
            "Guest MAXPHYADDR 31, then the VMM's KVM_SET_SREGS with CR4 = 0",
            ("KVM_SET_CPUID2 (MAXPHYADDR 31)", "KVM_SET_SREGS (CR4 = 0)"),
            lambda base: [Step("set_cpuid", (base.set_field("phys_addr_bits", 31),)), Step("set_cr4", (0,))],
            (NENT_PROBE,),
        ),
        Question(
            "post_run",
            "KVM_SET_CPUID2 after KVM_RUN: the table KVM_GET_CPUID2 returned, then the same with one bit changed",
            (
                "KVM_SET_CPUID2",
                "KVM_RUN",
                "KVM_SET_CPUID2 (what KVM_GET_CPUID2 returned)",
                "KVM_SET_CPUID2 (that, leaf 6 bit 0 flipped)",
            ),
            lambda base: [
                Step("set_cpuid", (base,)),
                Step("run"),
                Step("set_cpuid_readback", ("same",)),
                Step("set_cpuid_readback", ("leaf6",)),
            ],
            (NENT_PROBE,),
        ),
    )
}


@dataclass(frozen=True)
class Answer:
    """What one backend answered: the errno of each step (None: ok), each read-back as (value, errno),
    and the table KVM_GET_CPUID2 returned afterwards (exactly the entries held)."""

    errnos: tuple[str | None, ...]
    probes: tuple[tuple[object, str | None], ...]
    final: CpuidTable


def _probe(vcpu, probes: tuple[Probe, ...]) -> list[tuple[object, str | None]]:
    """Read-backs on any backend: LiveVcpu has no ``get_cpuid2_nent``, so that one is the raw ioctl here."""
    if not any(p.method == "get_cpuid2_nent" for p in probes) or hasattr(vcpu, "get_cpuid2_nent"):
        return probe(vcpu, probes)
    out: list[tuple[object, str | None]] = []
    for p in probes:
        try:
            value = (
                raw_get_cpuid2_nent(vcpu, *p.args)
                if p.method == "get_cpuid2_nent"
                else getattr(vcpu, p.method)(*p.args)
            )
            out.append((value, None))
        except KvmError as e:
            out.append((None, e.errno_name))
    return out


def ask(vcpu, question: Question, base: CpuidTable) -> Answer:
    """Ask ``question`` of a fresh ``vcpu`` (any backend), whose kernel supports ``base``; closes it."""
    try:
        res: Result = run_steps(vcpu, question.steps(base))
        probes = _probe(vcpu, question.probes)
        assert res.final is not None  # run_steps always reads the table back
        return Answer(tuple(res.errnos), tuple(probes), res.final)
    finally:
        vcpu.close()


@dataclass
class KernelRecord:
    """One real kernel's answers to :data:`QUESTIONS`, with the host its KVM ran on (for the model).

    ``kernel`` is the release the model is asked for (``6.1.192``: point releases carry stable rows),
    ``series`` its ``X.Y``; ``build`` the exact kernel (Debian package and version, or ``uname -r``);
    ``backend`` ``lab`` or ``live``; ``when`` ``"recorded YYYY-MM-DD"`` or ``"asked now"``.
    """

    series: str
    kernel: str
    vendor: str
    backend: str
    build: str
    host: HostProfile
    answers: dict[str, Answer]
    when: str = "asked now"
    details: dict = field(default_factory=dict)  # package, package_version, kernel_release, cpu …

    @property
    def label(self) -> str:
        """``6.1/svm``"""
        return f"{self.series}/{self.vendor}"

    def model(self) -> SimulatedVcpu:
        return SimulatedVcpu(kernel=self.kernel, vendor=self.vendor, host=self.host)

    def model_answer(self, question: Question | str) -> Answer:
        q = QUESTIONS[question] if isinstance(question, str) else question
        return model_answer(q, self.kernel, self.vendor, self.host)

    def masks(self) -> dict:
        return vendor_masks(self.vendor, self.host)


def model_answer(question: Question, kernel: str, vendor: str, host: HostProfile) -> Answer:
    """The model's answer to ``question`` for ``kernel`` (X.Y or X.Y.Z), ``vendor`` and ``host``."""
    assert host.supported is not None, "the model is asked from a host whose KVM_GET_SUPPORTED_CPUID was measured"
    return ask(SimulatedVcpu(kernel=kernel, vendor=vendor, host=host), question, host.supported)


def _release(text: str) -> str | None:
    m = re.match(r"^(\d+\.\d+\.\d+)", text or "")
    return m[1] if m else None


def ask_lab(lab, questions: Iterable[Question] | None = None) -> KernelRecord:
    """Every question on a booted :class:`~cpuidkit.lab.KernelLab` (a fresh vCPU each)."""
    host = lab_host_profile(lab)
    assert host.supported is not None
    answers = {q.name: ask(lab.vcpu(), q, host.supported) for q in (questions or QUESTIONS.values())}
    return KernelRecord(
        series=lab.kernel,
        kernel=_release(lab.package_version) or lab.kernel,
        vendor=lab.vendor,
        backend="lab",
        build=f"Debian {lab.package_version}",
        host=host,
        answers=answers,
        details={
            "package": lab.package,
            "package_version": lab.package_version,
            "kernel_release": lab.kernel_release,
            "cpu": lab.cpu,
        },
    )


def ask_live(questions: Iterable[Question] | None = None) -> KernelRecord:
    """Every question on this machine's /dev/kvm (``cpuidkit.live``; raises KvmUnavailable without it)."""
    host = host_profile()
    assert host.supported is not None
    release = os.uname().release
    answers = {q.name: ask(LiveVcpu(), q, host.supported) for q in (questions or QUESTIONS.values())}
    with LiveVcpu() as v:
        series, vendor = v.kernel, v.vendor
    return KernelRecord(
        series=series,
        kernel=_release(release) or series,
        vendor=vendor,
        backend="live",
        build=release,
        host=host,
        answers=answers,
        details={"kernel_release": release, "vendor_module": host.vendor_module},
    )


# -- comparing and showing ----------------------------------------------------------------------------


def _text(value: object, errno_name: str | None) -> str:
    if errno_name:
        return errno_name
    return "ok" if value is None else str(value)


def differences(model: Answer, real: Answer, masks: dict | None = None) -> list[str]:
    """Where the two answers differ ([] when they agree): errno per step, read-backs, the stored table
    (every register, except bits the vendor module owns: ``masks``)."""
    out = compare(Result(list(model.errnos), model.final), Result(list(real.errnos), real.final), masks or {})
    for i, (m, k) in enumerate(zip(model.probes, real.probes)):
        if m != k:
            out.append(f"read-back {i}: model {_text(*m)}, kernel {_text(*k)}")
    return out


def answer_cells(question: Question, answer: Answer) -> list[str]:
    """One cell per row of :func:`row_labels`: each step's errno or ok, each read-back, the entries held."""
    cells = [e or "ok" for e in answer.errnos]
    cells += [_text(v, e) for v, e in answer.probes]
    cells.append(str(len(answer.final)))
    return cells


def row_labels(question: Question) -> list[str]:
    return [*question.labels, *(p.name for p in question.probes), "entries KVM_GET_CPUID2 holds (get_cpuid())"]


# -- the record file ----------------------------------------------------------------------------------------


def _rows(table: CpuidTable) -> list[list[str]]:
    return [
        [f"{e.function:#x}", str(e.index), str(e.flags), *(f"{e.reg(r):#010x}" for r in ("eax", "ebx", "ecx", "edx"))]
        for e in table
    ]


def _table(rows: object, where: str) -> CpuidTable:
    if not isinstance(rows, list):
        raise InputError("expected a list of [function, index, flags, eax, ebx, ecx, edx] rows", where=where)
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 7 or not all(isinstance(x, str) for x in row):
            raise InputError("a row is 7 strings: function, index, flags, eax, ebx, ecx, edx", where=f"{where}[{i}]")
        try:
            fn, idx, flags, *regs = (int(x, 0) for x in row)
        except ValueError:
            raise InputError(f"not a number in {row!r}", where=f"{where}[{i}]") from None
        out.append(CpuidEntry(fn, idx, flags, *regs))
    return CpuidTable(out, source=where)


def _host_doc(h: HostProfile) -> dict:
    assert h.supported is not None
    return {
        "name": h.name,
        "source": h.source,
        "description": h.description,
        "tdp": h.tdp,
        "vendor_module": h.vendor_module,
        "guest_perm_xcr0": h.guest_perm_xcr0,
        "supported_xcr0": h.supported_xcr0,
        "reset_misc_enable": h.reset_misc_enable,
        "vendor_rewrite": h.vendor_rewrite,
        "cpuid": _rows(h.cpuid),
        "supported": _rows(h.supported),
    }


def _host(doc: dict, where: str) -> HostProfile:
    return HostProfile(
        name=str(doc["name"]),
        cpuid=_table(doc["cpuid"], f"{where}.cpuid"),
        source=str(doc.get("source", "")),
        description=str(doc.get("description", "")),
        tdp=bool(doc.get("tdp", True)),
        supported=_table(doc["supported"], f"{where}.supported"),
        vendor_rewrite=doc.get("vendor_rewrite"),
        guest_perm_xcr0=doc.get("guest_perm_xcr0"),
        supported_xcr0=doc.get("supported_xcr0"),
        vendor_module=doc.get("vendor_module"),
        reset_misc_enable=int(doc.get("reset_misc_enable") or 0),
    )


def _record_doc(r: KernelRecord, date: str) -> dict:
    return {
        "series": r.series,
        "kernel": r.kernel,
        "vendor": r.vendor,
        "backend": r.backend,
        "build": r.build,
        "recorded": date,
        **r.details,
        "host": _host_doc(r.host),
        "answers": {
            name: {"errnos": list(a.errnos), "probes": [list(p) for p in a.probes], "final": _rows(a.final)}
            for name, a in r.answers.items()
        },
    }


def _dump(doc: dict) -> str:
    """JSON with one table row per line (reviewable diffs), everything else indented."""
    text = json.dumps(doc, indent=1, sort_keys=False)
    # collapse the 7-string table rows onto one line each
    return (
        re.sub(
            r"\[\s*(\"[^\"]*\"),\s*(\"[^\"]*\"),\s*(\"[^\"]*\"),\s*(\"[^\"]*\"),\s*(\"[^\"]*\"),\s*(\"[^\"]*\"),\s*(\"[^\"]*\")\s*\]",
            lambda m: "[" + ", ".join(m.groups()) + "]",
            text,
        )
        + "\n"
    )


def save_records(records: Iterable[KernelRecord], path: str | Path, date: str) -> Path:
    """Write records (one per kernel, in order) to ``path`` atomically.  A record asked now is dated ``date``
    (``YYYY-MM-DD``); one loaded from a file keeps its own date."""
    doc = {
        "format": FORMAT,
        "about": "Real kernels' answers to cpuidkit.analysis.kernel_answers.QUESTIONS, with the host each KVM ran on "
        "(for the model). Regenerate with `make kernel-answers` (tools/record_kernel_answers.py).",
        "kernels": [
            _record_doc(r, r.when.removeprefix("recorded ") if r.when.startswith("recorded ") else date)
            for r in records
        ],
    }
    return atomic_write_text(path, _dump(doc))


def load_records(path: str | Path | None = None) -> list[KernelRecord]:
    """The records of ``path`` (default ``data/kernel-answers.json``), each marked ``recorded <date>``."""
    p = Path(path) if path is not None else data_path(RECORD_FILE)
    name = p.name
    doc = load_json(read_input_text(p), name)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("kernels"), list):
        raise InputError(f'expected {{"format": {FORMAT}, "kernels": [...]}}', source=name)
    out = []
    for i, k in enumerate(doc["kernels"]):
        where = f"kernels[{i}]"
        try:
            unknown = sorted(set(k["answers"]) - set(QUESTIONS))
            if unknown:
                raise InputError(f"unknown question(s) {', '.join(unknown)}", source=name, where=where)
            answers = {
                q: Answer(
                    tuple(a["errnos"]),
                    tuple((v, e) for v, e in a["probes"]),
                    _table(a["final"], f"{where}.answers.{q}.final"),
                )
                for q, a in k["answers"].items()
            }
            details = {
                key: k[key]
                for key in ("package", "package_version", "kernel_release", "cpu", "vendor_module")
                if key in k
            }
            out.append(
                KernelRecord(
                    series=str(k["series"]),
                    kernel=str(k["kernel"]),
                    vendor=str(k["vendor"]),
                    backend=str(k["backend"]),
                    build=str(k["build"]),
                    host=_host(k["host"], f"{where}.host"),
                    answers=answers,
                    when=f"recorded {k.get('recorded', '?')}",
                    details=details,
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed record: {type(e).__name__}: {e}", source=name, where=where) from None
    return out
